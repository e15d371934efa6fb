"""``reprise benchmark``: reproducible comparisons that write JSON, a markdown table and a plot."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def benchmark() -> None:
    """Compare architectures on a standard dataset under equal budgets."""


@benchmark.command()
@click.option(
    "--data",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The JSB Chorales JSON (Jsb16thSeparated.json).",
)
@click.option(
    "--budget-minutes",
    type=click.FloatRange(0, min_open=True),
    default=60.0,
    show_default=True,
    help="Wall-clock training time for each entry.",
)
@click.option("--only", multiple=True, help="Run just this entry (repeatable); other rows of an earlier run are kept.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("benchmark-jsb"),
    show_default=True,
    help="Folder for the runs, results.json, results.md and results.png.",
)
@click.option(
    "--report-samples",
    type=click.IntRange(0),
    default=20,
    show_default=True,
    help="Chorales sampled from each entry's best checkpoint for the report's headline figures (0: none).",
)
def jsb(data: Path, budget_minutes: float, only: tuple[str, ...], out: Path, report_samples: int) -> None:
    """Train every architecture on JSB Chorales, score valid/test NLL per token, and report what each writes."""
    from reprise.benchmark.jsb import run_benchmark

    rows = run_benchmark(data, out, budget_minutes, list(only) or None, report_samples)
    for row in rows:
        click.echo(f"{row['name']:>18}: valid {row['valid_nll']:.4f}  test {row['test_nll']:.4f} nats/token")
    click.echo(f"table: {out / 'results.md'}; plot: {out / 'results.png'}")
