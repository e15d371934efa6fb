"""The ``reprise`` command: prepare, train, generate, evaluate, demo.

Commands are thin: they parse options into the library's config dataclasses and
call one function of the pipeline stage they name. Mistakes in the input (a
missing file, a bad option) are reported as one line and a non-zero exit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from reprise.cli.arrange import accompany, harmonize, infill, prepare_pairs
from reprise.cli.benchmark import benchmark
from reprise.cli.common import length_in_tokens, parse_split, refuse_arranger
from reprise.cli.models import chosen_model, export, model_options, models, transpositions_option
from reprise.cli.plot import plot, render
from reprise.cli.report import report
from reprise.cli.studio import studio
from reprise.cli.train import train
from reprise.data.prepare import Limits
from reprise.errors import RepriseError

_LIMITS = Limits()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="reprise")
def cli() -> None:
    """Train, sample and evaluate Music Transformers on symbolic music.

    A typical session: `reprise prepare bach --out data/bach`, then
    `reprise train --data data/bach --run runs/bach`, then
    `reprise generate --checkpoint runs/bach --out samples/`.
    """


@cli.command()
@click.argument("source")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Dataset directory to write.")
@click.option(
    "--tokenizer",
    help="performance, remi, tsd, midilike, melody-grid or chorale-grid "
    "[default: chorale-grid for chorales, melody-grid for **kern/ABC, performance for MIDI].",
)
@click.option("--split", default="0.8,0.1,0.1", show_default=True, help="Train,valid,test fractions (by piece).")
@click.option("--workers", type=click.IntRange(1), default=None, help="Parallel readers [default: CPU count, max 4].")
@click.option("--tracks", default="", help="Keep only these tracks, by name or program: MELODY,PIANO or 0,33.")
@click.option("--bpe", type=click.IntRange(1), help="Learn BPE up to this vocabulary size (remi, tsd, midilike).")
@click.option(
    "--soprano-ahead",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Chorale grid: put the soprano this many 16th steps ahead of the other voices, for a harmoniser "
    "(docs/quality.md).",
)
@click.option(
    "--voice-order",
    default="SATB",
    show_default=True,
    help="Chorale grid: the order the voices are written in at each step, soprano first; SBAT writes the "
    "outer voices first (docs/quality.md).",
)
@click.option(
    "--max-file-mb",
    type=click.FloatRange(0, min_open=True),
    default=_LIMITS.max_file_mb,
    show_default=True,
    help="Skip files (or zip members) larger than this.",
)
@click.option(
    "--max-minutes",
    type=click.FloatRange(0, min_open=True),
    default=_LIMITS.max_minutes,
    show_default=True,
    help="Skip pieces that last longer than this.",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(1),
    default=_LIMITS.max_tokens,
    show_default=True,
    help="Skip pieces that take more tokens than this.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    default=_LIMITS.timeout,
    show_default=True,
    help="Seconds to read one file; a parser still busy then is stopped and the file skipped.",
)
def prepare(
    source: str,
    out: Path,
    tokenizer: str | None,
    split: str,
    workers: int | None,
    tracks: str,
    bpe: int | None,
    soprano_ahead: int,
    voice_order: str,
    **limits: float,
) -> None:
    """Turn SOURCE into a dataset directory of token arrays.

    SOURCE is a folder (searched recursively) or zip of MIDI or **kern files; the
    path of a JSB Chorales JSON file (`Jsb16thSeparated.json`, which keeps its own
    train/valid/test split); `bach` (the four-part chorales that ship with
    music21); or another music21 collection (`essen`, `ryansMammoth`, ...).
    Unusable files are skipped and listed, with the reason, in manifest.json.
    """
    from reprise.data.dataset import read_manifest
    from reprise.data.prepare import prepare as run_prepare

    _, valid, test = parse_split(split)
    chosen = tuple(t for t in tracks.split(",") if t.strip())
    directory = run_prepare(
        source, out, tokenizer, valid, test, workers, chosen, bpe, Limits(**limits), soprano_ahead, voice_order
    )
    manifest = read_manifest(directory)
    counts = ", ".join(f"{s}: {c['pieces']} pieces / {c['tokens']:,} tokens" for s, c in manifest["counts"].items())
    click.echo(f"wrote {directory} ({counts}); skipped {len(manifest['skipped'])} (see manifest.json)")


@cli.command()
@model_options
@transpositions_option
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("samples"),
    show_default=True,
    help="Folder for the MIDI files and piano rolls.",
)
@click.option("--primer-midi", type=click.Path(path_type=Path, dir_okay=False), help="Continue this MIDI file.")
@click.option("--primer-data", type=click.Path(path_type=Path), help="Take the primer from this dataset...")
@click.option("--primer-piece", type=click.IntRange(0), default=0, show_default=True, help="...piece number...")
@click.option("--primer-split", default="valid", show_default=True, help="...of this split.")
@click.option("--primer-length", default="2bars", show_default=True, help="Primer length: tokens (64) or bars (2bars).")
@click.option("--length", default="8bars", show_default=True, help="New material: tokens (512) or bars (8bars).")
@click.option(
    "--end/--no-end",
    default=True,
    show_default=True,
    help="Let the model end a piece before --length (at a final cadence), or write exactly --length.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Chorale grid: rule out parallel fifths, octaves and voice crossings as each voice is chosen "
    "(hides what the model would write; see docs/quality.md).",
)
@click.option("--samples", type=click.IntRange(1), default=3, show_default=True, help="How many pieces to sample.")
@click.option(
    "--temperature",
    type=click.FloatRange(0, min_open=True),
    default=1.0,
    show_default=True,
    help="Below 1: safer choices; above 1: wilder.",
)
@click.option("--top-k", type=click.IntRange(0), default=0, show_default=True, help="0 = off.")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True, help="1 = off.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same samples.")
@click.option("--no-cache", is_flag=True, help="Recompute the whole window at each step (slow; for comparison).")
@click.option("--wav", is_flag=True, help="Also render each sample to WAV beside it (see `reprise render`).")
@click.option("--musicxml", is_flag=True, help="Also write each sample as MusicXML (for MuseScore and other notation).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps.")
def generate(
    checkpoint: Path | None,
    model_name: str | None,
    out: Path,
    primer_midi,
    primer_data,
    primer_piece,
    primer_split,
    primer_length,
    length,
    end,
    strict,
    samples,
    temperature,
    top_k,
    top_p,
    seed,
    no_cache,
    wav,
    musicxml,
    device,
    transpositions,
) -> None:
    """Sample new music from a trained model, continuing a primer; writes MIDI, piano rolls (and WAV, MusicXML)."""
    import time

    from reprise.api import load, write_samples
    from reprise.generation.generate import generate as run_generate
    from reprise.generation.sampling import SamplingConfig

    model, tokenizer = load(chosen_model(checkpoint, model_name), device, transpositions)
    refuse_arranger(model, checkpoint or model_name)
    primer = _primer(tokenizer, primer_midi, primer_data, primer_piece, primer_split, primer_length)
    n_new = length_in_tokens(length, tokenizer, "--length")
    started = time.perf_counter()
    ids = run_generate(
        model,
        tokenizer,
        primer,
        n_new,
        samples,
        SamplingConfig(temperature, top_k, top_p, end, strict),
        seed,
        use_cache=not no_cache,
    )
    rate = samples * n_new / (time.perf_counter() - started)
    for path in write_samples(ids, tokenizer, out, "sample", wav=wav, musicxml=musicxml):
        click.echo(path)
    click.echo(f"generated {samples} x {n_new} tokens at {rate:,.0f} tokens/s")


@cli.command()
@model_options
@transpositions_option
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Prepared dataset directory.")
@click.option(
    "--split",
    type=click.Choice(["train", "valid", "test"]),
    default="valid",
    show_default=True,
    help="Which part of the dataset to score.",
)
@click.option("--stride", type=click.IntRange(1), help="Sliding-window stride for long pieces [default: context/2].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, mps.")
def evaluate(
    checkpoint: Path | None,
    model_name: str | None,
    data: Path,
    split: str,
    stride: int | None,
    device: str,
    transpositions: int | None,
) -> None:
    """Mean negative log-likelihood per token (nats) and perplexity on a split."""
    from reprise.api import load, score
    from reprise.training.splits import open_split

    model, tokenizer = load(chosen_model(checkpoint, model_name), device, transpositions)
    nll = score(model, tokenizer, data, split, stride)
    click.echo(
        json.dumps(
            {
                "split": split,
                "nll_per_token": round(nll.per_token, 5),
                "perplexity": round(nll.perplexity, 4),
                "tokens": nll.tokens,
                "pieces": len(open_split(data, split, model.config)),
            }
        )
    )


@cli.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("reprise-demo"),
    show_default=True,
    help="Folder for the data, the run and the samples.",
)
@click.option("--minutes", type=click.FloatRange(0.1), default=5.0, show_default=True, help="Training time.")
def demo(out: Path, minutes: float) -> None:
    """Prepare the music21 chorales, train `tiny`, and generate three chorales into --out."""
    from reprise.cli.demo import run_demo

    run_demo(out, minutes)


def _primer(tokenizer, midi: Path | None, data: Path | None, piece: int, split: str, length: str):
    """The primer ids: from a MIDI file, a dataset piece, or just ``BOS``."""
    import numpy as np

    if midi is not None and data is not None:
        raise click.UsageError("give --primer-midi or --primer-data, not both")
    if midi is not None:
        if not midi.is_file():
            raise RepriseError(f"{midi}: no such file")
        ids = tokenizer.encode_midi(midi)
    elif data is not None:
        from reprise.data.dataset import TokenDataset

        dataset = TokenDataset(data, split)
        if piece >= len(dataset):
            raise RepriseError(
                f"{data}: the {split} split has {len(dataset)} pieces; --primer-piece {piece} is out of range"
            )
        ids = dataset.piece(piece)
    else:
        return np.array([tokenizer.bos_id])
    body = ids[ids > tokenizer.eos_id]
    return np.concatenate([[tokenizer.bos_id], body[: length_in_tokens(length, tokenizer, "--primer-length")]])


cli.add_command(train)
cli.add_command(benchmark)
cli.add_command(export)
cli.add_command(models)
cli.add_command(prepare_pairs)
cli.add_command(harmonize)
cli.add_command(accompany)
cli.add_command(infill)
cli.add_command(plot)
cli.add_command(render)
cli.add_command(studio)
cli.add_command(report)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the command; report user errors as one line on stderr."""
    try:
        cli.main(args=argv, prog_name="reprise", standalone_mode=False)
    except click.exceptions.Exit as exit_:
        return exit_.exit_code
    except click.ClickException as err:
        where = f"{err.ctx.command_path}: " if getattr(err, "ctx", None) else "reprise: "
        click.echo(f"{where}error: {err.format_message()} (see --help)", err=True)
        return err.exit_code
    except click.Abort:
        click.echo("reprise: aborted", err=True)
        return 130
    except RepriseError as err:
        click.echo(f"reprise: error: {err}", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
