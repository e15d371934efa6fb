"""``reprise demo``: from nothing to three generated chorales, on a laptop CPU, in minutes."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import click
import numpy as np

from reprise.api import generate, load, prepare, write_samples
from reprise.data.dataset import TokenDataset
from reprise.training.presets import preset
from reprise.training.trainer import train

PRIMER_BARS = 2
NEW_BARS = 6


def run_demo(out: Path, minutes: float) -> None:
    """Prepare music21's chorales, train ``tiny`` for ``minutes``, sample 3 continuations of validation pieces."""
    out = Path(out)
    data = out / "data"
    if not (data / "manifest.json").is_file():
        click.echo("preparing the Bach chorales that ship with music21 ...")
        prepare("bach", data)
    valid = TokenDataset(data, "valid")
    tokenizer = valid.tokenizer
    click.echo(
        f"data: {data} ({TokenDataset(data, 'train').n_tokens():,} training tokens, {len(valid)} validation chorales)"
    )

    click.echo(f"training the tiny model for {minutes:g} minutes ...")
    demo = preset("demo")
    model_config = demo.model_config(vocab_size=tokenizer.vocab_size)
    train_config = demo.train_config(max_minutes=minutes)
    shutil.rmtree(out / "run", ignore_errors=True)  # a demo always starts a fresh run
    result = train(out / "run", data, model_config, train_config)

    model, tokenizer = load(result.run_dir, "cpu")
    per_bar = tokenizer.tokens_per_bar()
    primers = np.stack([valid.piece(i)[: 1 + PRIMER_BARS * per_bar] for i in range(3)])
    started = time.perf_counter()
    samples = generate(model, tokenizer, primers, NEW_BARS * per_bar, num_samples=3, temperature=0.9)
    rate = 3 * NEW_BARS * per_bar / (time.perf_counter() - started)
    paths = write_samples(samples, tokenizer, out / "samples", "chorale")

    click.echo(
        f"\nvalidation NLL: {result.best_val_nll:.4f} nats/token; "
        f"training ran at {result.tokens_per_second:,.0f} tokens/s"
    )
    click.echo(
        f"generated 3 chorales ({PRIMER_BARS} bars of a validation chorale + {NEW_BARS} new bars) "
        f"at {rate:,.0f} tokens/s:"
    )
    for path in paths:
        click.echo(f"  {path}")
    click.echo(f"checkpoints: {result.run_dir}/best (try: reprise generate --checkpoint {result.run_dir})")
