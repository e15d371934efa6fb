"""``reprise plot ...`` and ``reprise render``: look at and listen to music and training runs.

Each command reads one input, writes its picture, page or sound beside it
(unless ``--out`` says where) and prints the paths it wrote.
"""

from __future__ import annotations

from pathlib import Path

import click

from reprise.audio import SYNTHS
from reprise.cli.models import chosen_model, model_options

_FILE = click.Path(path_type=Path, dir_okay=False)


@click.group()
def plot() -> None:
    """Pictures: piano rolls, attention arcs, training curves."""


@plot.command()
@click.argument("midi", type=_FILE)
@click.option("--out", type=_FILE, help="PNG to write [default: MIDI with .png].")
def pianoroll(midi: Path, out: Path | None) -> None:
    """Draw MIDI as a piano roll: pitch against bars, one colour per track."""
    from reprise.visualization.pianoroll import plot_pianoroll

    click.echo(plot_pianoroll(midi, out or midi.with_suffix(".png")))


@plot.command()
@click.argument("midi", type=_FILE)
@model_options
@click.option(
    "--note",
    type=int,
    default=-1,
    show_default=True,
    help="Which note looks back: its number in reading order (0 = first, -1 = last).",
)
@click.option("--layer", default="all", show_default=True, help="all (a panel each), mean, or a number from 1.")
@click.option("--head", default="all", show_default=True, help="all (a colour each), mean, or a number from 1.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for MIDI.attention.png and .html [default: beside MIDI].",
)
def attention(
    midi: Path, checkpoint: Path | None, model_name: str | None, note: int, layer: str, head: str, out: Path | None
) -> None:
    """Arcs from a note of MIDI to the earlier notes the model attends to, as PNG and interactive HTML.

    The piece is read with the checkpoint's tokenizer; in the HTML page, hovering
    any note shows its arcs.
    """
    from reprise.cli.common import refuse_arranger
    from reprise.models.checkpoint import load_checkpoint
    from reprise.visualization.attention import note_attention, plot_attention
    from reprise.visualization.attention_html import write_attention_html

    source = chosen_model(checkpoint, model_name)
    model, tokenizer = load_checkpoint(source)
    refuse_arranger(model, source)
    result = note_attention(model, tokenizer, tokenizer.encode_midi(midi))
    if result.caveat:
        click.echo(f"note: the piece is too long to show whole; showing {result.caveat}", err=True)
    query = result.pick(note)
    folder = out or midi.parent
    click.echo(
        plot_attention(result, query, folder / f"{midi.stem}.attention.png", layer, head, title=f"{midi.name}: ")
    )
    click.echo(
        write_attention_html(result, folder / f"{midi.stem}.attention.html", f"{midi.name}: attention under {source}")
    )


@plot.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--out", type=_FILE, help="PNG to write [default: RUN_DIR/curves.png].")
def curves(run_dir: Path, out: Path | None) -> None:
    """Training and validation loss of a run against step and against wall-clock time."""
    from reprise.visualization.curves import plot_curves

    click.echo(plot_curves(run_dir, out or run_dir / "curves.png"))


@click.command()
@click.argument("midi", type=_FILE)
@click.option("--out", type=_FILE, help="WAV to write [default: MIDI with .wav].")
@click.option("--soundfont", type=_FILE, help="SF2 SoundFont [default: TimGM6mb.sf2 from pretty_midi].")
@click.option(
    "--synth",
    type=click.Choice(SYNTHS),
    default="auto",
    show_default=True,
    help="auto = the first present of fluidsynth, tinysoundfont, midirenderer (docs/audio.md).",
)
def render(midi: Path, out: Path | None, soundfont: Path | None, synth: str) -> None:
    """Render MIDI to a WAV file through a General MIDI SoundFont."""
    from reprise.audio import render_wav

    click.echo(render_wav(midi, out or midi.with_suffix(".wav"), soundfont, synth))
