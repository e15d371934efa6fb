"""``reprise report``: how generated music compares with real music, and whether it was copied."""

from __future__ import annotations

import time
from pathlib import Path

import click

from reprise.cli.models import transpositions_option
from reprise.errors import RepriseError


@click.command()
@click.argument("samples", required=False, type=click.Path(path_type=Path))
@click.option(
    "--samples-split",
    type=click.Choice(["train", "valid", "test"]),
    help="When SAMPLES is a prepared dataset: which split (e.g. to see the test split against itself).",
)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    help="Draw the samples from this run, checkpoint or shipped model (by name) instead of reading SAMPLES.",
)
@click.option(
    "--samples",
    "n_samples",
    type=click.IntRange(1),
    default=20,
    show_default=True,
    help="With --checkpoint: how many pieces to draw.",
)
@click.option(
    "--length",
    help="With --checkpoint: tokens (1024) or bars (16bars) per sample [default: the median "
    "length of the reference pieces, when the reference is a dataset tokenized like the checkpoint].",
)
@click.option(
    "--end/--no-end",
    default=True,
    show_default=True,
    help="With --checkpoint: let the model end a sample before --length, or draw exactly --length.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="With --checkpoint, chorale grid: rule out parallel fifths, octaves and voice crossings as each "
    "voice is chosen (then the report measures the sampler as much as the model).",
)
@click.option(
    "--temperature",
    type=click.FloatRange(0, min_open=True),
    default=1.0,
    show_default=True,
    help="With --checkpoint: below 1 safer choices, above 1 wilder.",
)
@click.option("--top-k", type=click.IntRange(0), default=0, show_default=True, help="With --checkpoint: 0 = off.")
@click.option(
    "--top-p",
    type=click.FloatRange(0, 1, min_open=True),
    default=1.0,
    show_default=True,
    help="With --checkpoint: 1 = off.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="With --checkpoint: same seed, same samples.")
@click.option("--device", default="auto", show_default=True, help="With --checkpoint: auto, cpu, cuda, cuda:1, mps.")
@click.option(
    "--reference",
    type=click.Path(path_type=Path),
    required=True,
    help="Real music to compare with: a prepared dataset (with --reference-split) or a MIDI folder.",
)
@click.option(
    "--reference-split",
    type=click.Choice(["train", "valid", "test"]),
    help="Which split of a prepared --reference dataset.",
)
@click.option(
    "--train",
    type=click.Path(path_type=Path),
    help="The training music, to find what the samples copied: a dataset (with --train-split) or a MIDI folder.",
)
@click.option(
    "--train-split", type=click.Choice(["train", "valid", "test"]), help="Which split of a prepared --train dataset."
)
@transpositions_option
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for report.html and report.json.")
def report(
    samples: Path | None,
    samples_split: str | None,
    checkpoint: Path | None,
    n_samples: int,
    length: str | None,
    end: bool,
    strict: bool,
    temperature: float,
    top_k: int,
    top_p: float,
    seed: int,
    device: str,
    reference: Path,
    reference_split: str | None,
    train: Path | None,
    train_split: str | None,
    transpositions: int | None,
    out: Path,
) -> None:
    """Compare SAMPLES (a folder of MIDI files) with real music: statistics, loops and stalls, copying.

    SAMPLES may also be a prepared dataset, with --samples-split; a piece is never
    compared with itself.

    Writes OUT/report.html (self-contained) and OUT/report.json. Example:
    `reprise report --checkpoint runs/jsb --samples 20 --reference data/jsb --reference-split test
    --train data/jsb --train-split train --out report/`.
    """
    from reprise.evaluation.pieces import load_pieces
    from reprise.report import write_report

    if (samples is None) == (checkpoint is None):
        raise click.UsageError("give either SAMPLES (a MIDI folder) or --checkpoint, not both or neither")
    if train is None and train_split is not None:
        raise click.UsageError("--train-split needs --train")
    started = time.perf_counter()
    reference_pieces = load_pieces(reference, reference_split, "--reference-split")
    train_pieces = load_pieces(train, train_split, "--train-split") if train is not None else None
    if checkpoint is not None:
        sample_pieces = _draw(
            checkpoint,
            n_samples,
            length,
            (temperature, top_k, top_p, end, strict),
            seed,
            device,
            transpositions,
            reference,
            reference_split,
            out / "samples",
        )
        source = f"{checkpoint} ({n_samples} samples, seed {seed}, written to {out / 'samples'})"
    else:
        sample_pieces, source = (
            load_pieces(samples, samples_split, "--samples-split"),
            _describe(samples, samples_split),
        )
    inputs = {"samples": source, "reference": _describe(reference, reference_split)}
    if train is not None:
        inputs["train"] = _describe(train, train_split)
    result = write_report(sample_pieces, reference_pieces, train_pieces, out, inputs)
    for row in result["headline"].values():
        click.echo(f"{row['label']}: samples {row['samples']:.4g}, reference {row['reference']:.4g}")
    click.echo(f"wrote {out / 'report.html'} and {out / 'report.json'} in {time.perf_counter() - started:.1f} s")


def _describe(source: Path, split: str | None) -> str:
    return f"{source} ({split} split)" if split else str(source)


def _draw(
    checkpoint: Path,
    n: int,
    length: str | None,
    sampling: tuple[float, int, float, bool],
    seed: int,
    device: str,
    transpositions: int | None,
    reference: Path,
    reference_split: str | None,
    out: Path,
) -> list:
    """Sample ``n`` pieces with the checkpoint's model, written as MIDI into ``out``."""
    from reprise.cli.common import length_in_tokens
    from reprise.cli.models import checkpoint_or_name
    from reprise.device import pick_device
    from reprise.generation.sampling import SamplingConfig
    from reprise.models.checkpoint import load_checkpoint
    from reprise.report.samples import draw_samples

    model, tokenizer = load_checkpoint(checkpoint_or_name(checkpoint), pick_device(device), transpositions)
    if length:
        n_new = length_in_tokens(length, tokenizer, "--length")
    else:
        n_new = _reference_length(reference, reference_split, tokenizer)
    return draw_samples(model, tokenizer, n, n_new, SamplingConfig(*sampling), seed, out)


def _reference_length(reference: Path, split: str | None, tokenizer) -> int:
    """The median length in tokens (without BOS and EOS) of the reference pieces, if tokenized like the model."""
    import numpy as np

    from reprise.data.dataset import TokenDataset

    if split is None:
        raise RepriseError("--length is needed when the reference is not a prepared dataset")
    dataset = TokenDataset(reference, split)
    if dataset.tokenizer.to_json() != tokenizer.to_json():
        raise RepriseError(f"{reference}: tokenized differently from the checkpoint; give --length")
    median = int(np.median(np.diff(dataset.offsets))) - 2
    return max(tokenizer.frame, median - median % tokenizer.frame)
