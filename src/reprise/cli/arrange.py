"""``reprise harmonize``, ``accompany``, ``infill`` and ``prepare-pairs``: arranging with the encoder-decoder.

Each command loads a model trained with ``reprise train --model encoder-decoder
--task TASK`` (``harmonize`` also any decoder-only chorale-grid model, best one trained with the
soprano ahead: docs/quality.md), reads the music it is given, samples, and writes MIDI files with
a piano roll beside each (the given part grey and hatched, or the generated span
shaded) and, with ``--wav``, audio.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from reprise.cli.common import parse_split
from reprise.cli.models import chosen_model, model_options, transpositions_option
from reprise.data.pairs import TASKS
from reprise.errors import RepriseError, named

if TYPE_CHECKING:
    from reprise.training.presets import Preset

SPLITS = click.Choice(["train", "valid", "test"])


def sampling_options(command: Callable) -> Callable:
    """The options every arranging command shares: the model (``--checkpoint`` of an encoder-decoder trained
    for this task, or ``--model NAME``), output, sampling, seed, audio, device."""
    options = [
        model_options,
        transpositions_option,
        click.option(
            "--out",
            type=click.Path(path_type=Path),
            default=Path("samples"),
            show_default=True,
            help="Folder for the MIDI files and piano rolls.",
        ),
        click.option("--samples", type=click.IntRange(1), default=3, show_default=True, help="How many to sample."),
        click.option(
            "--temperature",
            type=click.FloatRange(0, min_open=True),
            default=1.0,
            show_default=True,
            help="Below 1: safer choices; above 1: wilder.",
        ),
        click.option("--top-k", type=click.IntRange(0), default=0, show_default=True, help="0 = off."),
        click.option(
            "--top-p", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True, help="1 = off."
        ),
        click.option(
            "--strict",
            is_flag=True,
            help="Decoder-only chorale-grid models: rule out parallel fifths, octaves and voice crossings "
            "as each voice is chosen (hides what the model would write).",
        ),
        click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same samples."),
        click.option(
            "--no-cache", is_flag=True, help="Recompute the whole window at each step (slow; for comparison)."
        ),
        click.option("--wav", is_flag=True, help="Also render each sample to WAV beside it."),
        click.option("--musicxml", is_flag=True, help="Also write each sample as MusicXML (for notation programs)."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command()
@click.argument("melody", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--melody-track",
    "melody_track_name",
    help="The MIDI track that holds the melody, by name or program number [default: the only track with notes].",
)
@click.option(
    "--primer-data",
    type=click.Path(path_type=Path),
    help="Instead of MELODY: take the soprano of a chorale of this prepared dataset...",
)
@click.option("--primer-piece", type=click.IntRange(0), default=0, show_default=True, help="...piece number...")
@click.option("--primer-split", type=SPLITS, default="test", show_default=True, help="...of this split.")
@click.option("--transpose", type=int, default=0, show_default=True, help="Move the melody by this many semitones.")
@click.option(
    "--quantize",
    is_flag=True,
    help="Round notes off the 16th-note grid to it and cut notes that overlap the next, instead of refusing them.",
)
@sampling_options
def harmonize(
    melody: Path | None,
    melody_track_name: str | None,
    primer_data: Path | None,
    primer_piece: int,
    primer_split: str,
    transpose: int,
    quantize: bool,
    **options,
) -> None:
    """Harmonise a melody as a four-part chorale: the melody is the soprano, kept as given; the model writes
    alto, tenor and bass on the 16th-note grid. Writes harmony-N.mid (and .png, .wav).

    MELODY is a MIDI file with one voice (a chord, or a note off the 16th grid, is refused, saying where;
    --quantize rounds them instead), inside the soprano range of the training chorales (--transpose moves it).
    """
    from reprise.data.given_melody import melody_line
    from reprise.generation.conditional import fitted_soprano, melody_track
    from reprise.generation.conditional import harmonize as run_harmonize

    model, tokenizer = _load(options, "harmonize")
    if primer_data is not None:
        steps = tokenizer.decode_grid(_dataset_piece(primer_data, primer_split, primer_piece, melody))[:, 0]
    else:
        steps = _given(melody, "MELODY", lambda score: melody_line(melody_track(score, melody_track_name), quantize))
    soprano = named(melody or "", lambda: fitted_soprano(steps, tokenizer, transpose))
    chorales = run_harmonize(model, tokenizer, soprano, **_sampling(options))
    _write([tokenizer.decode(ids) for ids in chorales], options, "harmony", given=(0,))


@click.command()
@click.argument("song", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--melody-track",
    "melody_track_name",
    help="The MIDI track that holds the melody, by name or program number [default: the only track with "
    "notes, or the one named MELODY, as in POP909].",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(1),
    default=8192,
    show_default=True,
    help="Stop an accompaniment after this many events (else it ends with the melody).",
)
@sampling_options
def accompany(song: Path, melody_track_name: str, max_tokens: int, **options) -> None:
    """Write an accompaniment under the melody of SONG (a MIDI file). Writes accompaniment-N.mid with two
    tracks, the melody as given and the accompaniment (and .png, .wav)."""
    from reprise.data.pairs import Task
    from reprise.generation.conditional import accompanied, melody_events
    from reprise.generation.conditional import accompany as run_accompany

    model, tokenizer = _load(options, "accompany")
    melody = _given(song, "SONG", lambda score: melody_events(score, melody_track_name))
    parts = run_accompany(model, Task("accompany", tokenizer), melody, max_tokens, **_sampling(options))
    _write([accompanied(melody, part) for part in parts], options, "accompaniment", given=(0,))


@click.command()
@click.argument("piece", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--bars",
    required=True,
    help="The bars to write anew, e.g. 5-8: bars of 16 grid steps (4/4), counted from 1 at the piece's first step.",
)
@click.option(
    "--primer-data", type=click.Path(path_type=Path), help="Instead of PIECE: a piece of this prepared dataset..."
)
@click.option("--primer-piece", type=click.IntRange(0), default=0, show_default=True, help="...piece number...")
@click.option("--primer-split", type=SPLITS, default="test", show_default=True, help="...of this split.")
@sampling_options
def infill(
    piece: Path | None, bars: str, primer_data: Path | None, primer_piece: int, primer_split: str, **options
) -> None:
    """Fill bars of a piece (chorale grid: a four-voice MIDI file; melody grid: a melody), keeping every
    other note; the new bars join the old at both ends. Writes infill-N.mid (and .png, .wav).

    The model is an encoder-decoder trained with --task infill, or a decoder-only model trained with
    `reprise train --task infill` (fill in the middle: it reads the bars before and after, then writes the gap).

    --bars counts bars of the grid: 16 sixteenth-note steps from the first step (the grids have no time
    signature, so a pickup or a 3/4 piece shifts them). Other tokenizers have no bars to fill yet.
    """
    from reprise.data.pairs import STEPS_PER_BAR, Task
    from reprise.generation.conditional import bar_span
    from reprise.generation.conditional import infill as run_infill

    model, tokenizer = _load(options, "infill")
    task = Task("infill", getattr(tokenizer, "base", tokenizer))  # a fill-in-the-middle model's grid
    if primer_data is not None:
        ids = _dataset_piece(primer_data, primer_split, primer_piece, piece)
    else:
        ids = _given(piece, "PIECE", lambda score: tokenizer.encode_score(score))
    span = bar_span(bars, task, ids)
    pieces = run_infill(model, task, ids, span, **_sampling(options))
    _write(
        [tokenizer.decode(p) for p in pieces],
        options,
        "infill",
        generated_span=(span[0] / STEPS_PER_BAR, span[1] / STEPS_PER_BAR),
    )


@click.command("prepare-pairs")
@click.argument("source")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder to write source/ and target/ in.")
@click.option(
    "--source-tracks", default="MELODY", show_default=True, help="Tracks the model is given (names or programs)."
)
@click.option("--target-tracks", default="PIANO", show_default=True, help="Tracks the model learns to write.")
@click.option("--split", default="0.8,0.1,0.1", show_default=True, help="Train,valid,test fractions (by piece).")
@click.option("--workers", type=click.IntRange(1), default=None, help="Parallel readers [default: CPU count, max 4].")
def prepare_pairs(
    source: str, out: Path, source_tracks: str, target_tracks: str, split: str, workers: int | None
) -> None:
    """Prepare SOURCE twice, as the tracks given and the tracks to write, for accompaniment.

    SOURCE is a folder or zip of multi-track MIDI files, e.g. ../shared/data/pop909; OUT then holds
    source/ and target/ datasets for `reprise train --model encoder-decoder --task accompany --data OUT`.
    Pieces pair up by name, within their split; both sides are performance events, on the file's own clock."""
    from reprise.data.pairs import write_pair_manifest
    from reprise.data.prepare import prepare

    _, valid, test = parse_split(split)
    for side, tracks in (("source", source_tracks), ("target", target_tracks)):
        chosen = tuple(t for t in tracks.split(",") if t.strip())
        prepare(source, out / side, "performance", valid, test, workers, chosen)
    write_pair_manifest(out, "accompany", source, (source_tracks, target_tracks))
    click.echo(f"wrote {out}: {(out / 'pairs.json').read_text()}")


def encoder_decoder_config(
    data: Path, task: str | None, preset: Preset, shape: dict[str, Any], encoder: dict[str, Any]
) -> Any:
    """The encoder-decoder config for ``task`` on ``data``: the preset's shape (not its positions) for the
    decoder, half as many blocks for the encoder, RoPE on both, unless the options say otherwise."""
    from reprise.data.pairs import PairedDataset
    from reprise.models.encoder_decoder import EncoderDecoderConfig

    if task is None:
        raise click.UsageError(f"--model encoder-decoder needs --task ({', '.join(TASKS)})")
    pairs = PairedDataset(data, "train", task)
    base = {k: v for k, v in preset.model.items() if k not in ("positions", "frame")}
    base = {"attention": "rope", **base, **{k: v for k, v in shape.items() if v is not None}}
    return EncoderDecoderConfig(
        **base,
        task=task,
        vocab_size=pairs.tokenizer.vocab_size,
        source_vocab_size=pairs.task.source_vocab_size,
        encoder_layers=encoder["encoder_layers"] or max(1, base["n_layers"] // 2),
        encoder_attention=encoder["encoder_attention"] or "rope",
        source_context=encoder["source_context"] or base["context"],
        source_offset=0.5 if task == "infill" else 0.25,
    )


def _load(options: dict, task: str):
    """The model and tokenizer of ``--checkpoint`` or ``--model``, refused unless trained for ``task``."""
    from reprise.api import load
    from reprise.data.chorale_grid import ChoraleGrid
    from reprise.data.fill import FillTokenizer
    from reprise.models.encoder_decoder import EncoderDecoder

    checkpoint = chosen_model(options["checkpoint"], options["model_name"])
    model, tokenizer = load(checkpoint, options["device"], options["transpositions"])
    if task == "harmonize" and not isinstance(model, EncoderDecoder) and isinstance(tokenizer, ChoraleGrid):
        return model, tokenizer  # a chorale model harmonises with the soprano forced
    if task == "infill" and isinstance(tokenizer, FillTokenizer):
        return model, tokenizer  # a decoder-only model of fill-in-the-middle streams
    if task == "accompany" and tokenizer.task == "accompany" and not isinstance(model, EncoderDecoder):
        return model, tokenizer  # a decoder-only accompanist: the melody forced in ahead, or beside each token
    if not isinstance(model, EncoderDecoder) or model.config.task != task:
        trained = model.config.task if isinstance(model, EncoderDecoder) else "continue music (decoder-only)"
        raise RepriseError(
            f"{checkpoint}: this model was trained to {trained}, not to {task}; "
            f"train one with `reprise train {'--model encoder-decoder ' if task == 'harmonize' else ''}--task {task}`"
        )
    return model, tokenizer


def _sampling(options: dict) -> dict[str, Any]:
    from reprise.generation.sampling import SamplingConfig

    return {
        "num_samples": options["samples"],
        "seed": options["seed"],
        "use_cache": not options["no_cache"],
        "sampling": SamplingConfig(
            options["temperature"], options["top_k"], options["top_p"], strict=options["strict"]
        ),
    }


def _given(path: Path | None, what: str, read: Callable) -> Any:
    """``read(score)`` of the MIDI file ``path``; its errors name the file."""
    from reprise.data.midi import read_midi

    if path is None:
        raise click.UsageError(f"give {what} (a MIDI file) or --primer-data")
    score = read_midi(path)
    return named(path, lambda: read(score))


def _dataset_piece(data: Path, split: str, index: int, given: Path | None) -> np.ndarray:
    from reprise.data.dataset import TokenDataset

    if given is not None:
        raise click.UsageError("give a MIDI file or --primer-data, not both")
    dataset = TokenDataset(data, split)
    if index >= len(dataset):
        raise RepriseError(
            f"{data}: the {split} split has {len(dataset)} pieces; --primer-piece {index} is out of range"
        )
    return dataset.piece(index)


def _write(scores: list, options: dict, stem: str, **drawing) -> None:
    from reprise.api import write_scores

    for path in write_scores(scores, options["out"], stem, options["wav"], options["musicxml"], **drawing):
        click.echo(path)
