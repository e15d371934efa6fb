"""The report's numbers: statistics, degeneration and originality of samples, each beside the reference's.

:func:`build_report` computes everything that ``report.json`` holds;
:func:`headline` just the handful of figures that tell models apart, for a
benchmark table. Every figure comes with the same figure for real music, since
none of them means much alone (real chorales loop, and copy, too).
"""

from __future__ import annotations

import time

import numpy as np

from reprise.errors import RepriseError
from reprise.evaluation.degeneration import compare_degeneration
from reprise.evaluation.music_stats import compare
from reprise.evaluation.originality import MIN_NOTES, TrainingIndex, originality
from reprise.evaluation.pieces import Piece

BASELINE_SEED = 0


def build_report(samples: list[Piece], reference: list[Piece], train: list[Piece] | None = None) -> dict:
    """Statistics, degeneration and (with ``train``) originality of ``samples`` against ``reference``.

    The reference column of the headline's distances is a noise floor: a random
    subset of the reference as large as the samples, against the rest of it.
    """
    for side, pieces in (("samples", samples), ("reference", reference)):
        if not pieces:
            raise RepriseError(f"the report needs {side}: none were given")
    started = time.perf_counter()
    report: dict = {
        "counts": {
            "samples": len(samples),
            "reference": len(reference),
            "train": len(train) if train is not None else None,
        }
    }
    report["statistics"] = compare(samples, reference)
    report["baseline_statistics"] = _noise_floor(reference, len(samples))
    report["degeneration"] = compare_degeneration(samples, reference)
    if train is not None:
        index = TrainingIndex(train)
        report["originality"] = {"samples": originality(samples, index), "reference": originality(reference, index)}
    report["headline"] = _headline(report)
    report["seconds"] = time.perf_counter() - started
    return report


def headline(samples: list[Piece], reference: list[Piece], train: list[Piece] | None = None) -> dict:
    """The headline figures, ``{name: {"label", "samples", "reference"}}``, e.g. for a benchmark row."""
    return build_report(samples, reference, train)["headline"]


def _noise_floor(reference: list[Piece], size: int) -> dict[str, dict] | None:
    """Distances between a random same-size subset of the reference and the rest (None if too few pieces)."""
    size = min(size, len(reference) // 2)
    if size < 2:
        return None
    chosen = np.random.default_rng(BASELINE_SEED).permutation(len(reference))
    subset, rest = [reference[i] for i in chosen[:size]], [reference[i] for i in chosen[size:]]
    return compare(subset, rest)


def _headline(report: dict) -> dict[str, dict]:
    stats, floor = report["statistics"], report["baseline_statistics"]
    rows: dict[str, dict] = {}

    def add(name: str, label: str, samples: float, reference: float) -> None:
        rows[name] = {"label": label, "samples": float(samples), "reference": float(reference)}

    def distances(table: dict | None) -> list[float]:
        return [row["distance"] for row in (table or {}).values() if np.isfinite(row["distance"])]

    add(
        "distance_mean",
        "mean distance of all statistics (1 - overlap; reference: a subset of the same size against the rest)",
        np.mean(distances(stats)),
        np.mean(distances(floor) or [np.nan]),
    )
    add("distance_max", "largest distance of one statistic", max(distances(stats)), max(distances(floor) or [np.nan]))
    for name in ("in_key", "pitch_class_entropy", "note_density"):
        add(name, f"{stats[name]['label']} (mean)", stats[name]["samples"]["mean"], stats[name]["reference"]["mean"])
    if "parallel_fifths" in stats:
        add(
            "parallels",
            "parallel fifths and octaves per sonority change (mean)",
            *(
                stats["parallel_fifths"][s]["mean"] + stats["parallel_octaves"][s]["mean"]
                for s in ("samples", "reference")
            ),
        )
    degeneration = report["degeneration"]
    add("loops", "share of pieces that loop", degeneration["samples"]["loops"], degeneration["reference"]["loops"])
    add("stalls", "share of pieces that stall", degeneration["samples"]["stalls"], degeneration["reference"]["stalls"])
    if "originality" in report:
        copied = report["originality"]
        add(
            "copied_notes",
            f"median longest melodic span found in a training piece (notes; 0 = under {MIN_NOTES})",
            copied["samples"]["median_notes"],
            copied["reference"]["median_notes"],
        )
        add(
            "copied_bars",
            "share of pieces with 2 or more whole bars found in a training piece",
            copied["samples"]["share_with_full_bars"],
            copied["reference"]["share_with_full_bars"],
        )
    return rows
