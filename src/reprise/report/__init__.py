"""The generated-music report: how samples compare with real music, and whether they copy it.

``write_report`` computes :func:`~reprise.report.build.build_report` and writes
``report.json`` (every number) and ``report.html`` (the same, readable, with
plots) into a folder; :func:`headline` gives just the headline figures.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from reprise.evaluation.pieces import Piece
from reprise.report.build import build_report, headline
from reprise.report.html import render

__all__ = ["build_report", "headline", "write_report"]


def write_report(
    samples: list[Piece], reference: list[Piece], train: list[Piece] | None, out: Path, inputs: dict[str, str]
) -> dict:
    """Compute the report and write ``OUT/report.json`` and ``OUT/report.html``; return the report.

    ``inputs`` names where the samples, reference and train pieces came from, for the page.
    """
    report = build_report(samples, reference, train)
    report["inputs"] = inputs
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "report.json", json.dumps(_jsonable(report), indent=1, allow_nan=False))
    _write(out / "report.html", render(report, inputs))
    return report


def _write(path: Path, text: str) -> None:
    """Write whole or not at all: a failed write leaves any earlier file in place."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _jsonable(value):
    """numpy scalars and arrays as plain numbers and lists; NaN as null."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
