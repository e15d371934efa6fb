"""``reprise studio``: serve the local web page (see :mod:`reprise.studio`)."""

from __future__ import annotations

from pathlib import Path

import click

_FOLDER = click.Path(path_type=Path, file_okay=False, exists=True)


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; 127.0.0.1 keeps the page private to this computer.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--runs", type=_FOLDER, help="Also offer the runs (and model folders) in this folder.")
@click.option(
    "--data",
    "datasets",
    type=_FOLDER,
    multiple=True,
    help="A prepared dataset whose validation pieces can start a piece (repeatable).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Keep the results here [default: a temporary folder].",
)
def studio(host: str, port: int, runs: Path | None, datasets: tuple[Path, ...], out: Path | None) -> None:
    """A local web page to generate, hear, look inside and download music from shipped models and your runs."""
    import uvicorn

    from reprise.studio.app import create_app

    app = create_app(runs, list(datasets), out)
    click.echo(f"reprise studio on http://{host}:{port}/ (Ctrl+C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
