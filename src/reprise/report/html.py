"""``report.html``: one self-contained page (plots inline as base64 PNG, no scripts, no network).

The page reads top to bottom: the headline table, then each statistic with its
plot (samples against reference), then loops and stalls, then the longest spans
found in the training set. Numbers are the ones in ``report.json``, formatted by
:func:`fmt`.
"""

from __future__ import annotations

import base64
import io
import math
from html import escape

import numpy as np
from matplotlib.figure import Figure

from reprise.evaluation.music_stats import densities
from reprise.evaluation.originality import MIN_NOTES

SAMPLES_COLOUR, REFERENCE_COLOUR = "#d62728", "#1f77b4"
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; } td, th { padding: .25rem .6rem; border-bottom: 1px solid #ddd; }
th { text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.plots { display: flex; flex-wrap: wrap; gap: .5rem; } .plots figure { margin: 0; }
figcaption { font-size: .85rem; color: #555; } p.note { color: #555; font-size: .9rem; }
"""


def fmt(value: float | str | None) -> str:
    """How a number appears on the page (and so how tests find it): 4 significant digits, ``-`` for none.

    Numbers under 5e-5 print as 0: a set compared with itself has distances of 1e-8 from rounding.
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, str):
        return value
    return "0" if abs(value) < 5e-5 else f"{value:.4g}"


def render(report: dict, inputs: dict[str, str]) -> str:
    """The report page for ``report`` (from :func:`~reprise.report.build.build_report`)."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>reprise report</title>",
        f"<style>{STYLE}</style></head><body><h1>How the samples compare with real music</h1>",
        _inputs(inputs, report),
        "<h2>Headline</h2>",
        _table(
            ["figure", "samples", "reference"],
            [[row["label"], row["samples"], row["reference"]] for row in report["headline"].values()],
        ),
        _statistics(report["statistics"]),
        _degeneration(report["degeneration"]),
    ]
    if "originality" in report:
        parts.append(_originality(report["originality"]))
    parts.append("</body></html>")
    return "\n".join(parts)


def _inputs(inputs: dict[str, str], report: dict) -> str:
    rows = [
        [name, f"{value} ({report['counts'][name]} pieces)"]
        for name, value in inputs.items()
        if report["counts"].get(name) is not None
    ]
    return _table(["input", "source"], rows) + f"<p class='note'>computed in {report['seconds']:.1f} s</p>"


def _statistics(stats: dict) -> str:
    rows, plots = [], []
    for name, row in stats.items():
        if row["histogram"]:
            rows.append([row["label"], "histogram", "histogram", row["overlap"], row["distance"]])
        else:
            a, b = row["samples"], row["reference"]
            rows.append(
                [
                    row["label"],
                    f"{fmt(a['mean'])} ± {fmt(a['std'])}",
                    f"{fmt(b['mean'])} ± {fmt(b['std'])}",
                    row["overlap"],
                    row["distance"],
                ]
            )
        plots.append(
            f"<figure><img alt='{escape(name)}' src='data:image/png;base64,{_plot(row)}'>"
            f"<figcaption>{escape(row['label'])}: distance {fmt(row['distance'])}</figcaption></figure>"
        )
    return (
        "<h2>Musical statistics</h2><p class='note'>Mean ± standard deviation over pieces. Overlap: overlapping "
        "area of the two sets' kernel density estimates (Yang &amp; Lerch 2020); for histograms, of the "
        "distances between a sample and a reference piece against those between two reference pieces. "
        "Distance = 1 - overlap.</p>"
        + _table(["statistic", "samples", "reference", "overlap", "distance"], rows)
        + f"<div class='plots'>{''.join(plots)}</div>"
    )


def _degeneration(table: dict) -> str:
    figures = ("longest_repeat", "loop_coverage", "longest_silence", "longest_held", "loops", "stalls")
    labels = (
        "longest repeated run of bars (mean)",
        "share covered by one repeated pattern (mean)",
        "longest silence, bars (mean)",
        "longest held sound without a new note, bars (mean)",
        "share of pieces that loop",
        "share of pieces that stall",
    )
    rows = [[label, table["samples"][f], table["reference"][f]] for f, label in zip(figures, labels)]
    flagged = [
        [
            p["name"],
            "loops" if p["loops"] else "",
            "stalls" if p["stalls"] else "",
            p["loop_coverage"],
            max(p["longest_silence"], p["longest_held"]),
        ]
        for p in table["samples"]["pieces"]
        if p["loops"] or p["stalls"]
    ]
    return (
        "<h2>Loops and stalls</h2>"
        f"<p class='note'>A piece loops when more than {fmt(table['loop_threshold'])} of its bars are repeats "
        f"of one pattern, and stalls when it is silent or holds one sound without a new note for more than "
        f"{fmt(table['stall_threshold_bars'])} bars (the reference's 95th percentiles), or has no notes.</p>"
        + _table(["figure", "samples", "reference"], rows)
        + (
            "<h3>Flagged samples</h3>" + _table(["sample", "", "", "loop coverage", "longest stall (bars)"], flagged)
            if flagged
            else ""
        )
    )


def _originality(table: dict) -> str:
    summary = [
        ("median longest melodic span (notes)", "median_notes"),
        ("longest melodic span (notes)", "max_notes"),
        (f"share with a span of {MIN_NOTES}+ notes", "share_with_span"),
        ("median longest run of whole bars", "median_full_bars"),
        ("longest run of whole bars", "max_full_bars"),
        ("share with 2+ whole bars", "share_with_full_bars"),
    ]
    rows = [[label, table["samples"][key], table["reference"][key]] for label, key in summary]
    longest = sorted(table["samples"]["pieces"], key=lambda p: (-p["span"]["notes"], -p["full_bars"]["bars"]))
    detail = [
        [
            p["name"],
            p["span"]["notes"],
            p["span"]["bars"],
            p["span"]["at_bar"],
            f"{p['span']['line']} ~ {p['span']['train_piece']} {p['span']['train_line']}".strip(" ~"),
            p["full_bars"]["bars"],
            p["full_bars"]["train_piece"],
        ]
        for p in longest
    ]
    return (
        "<h2>Copying from the training set</h2><p class='note'>Melodic span: the longest run of notes of "
        "one line (each track's highest note per onset, and the top line of all tracks) whose intervals "
        "occur in a line of a training piece, in any key. Whole bars: the longest run of bars, all tracks, "
        "found transposed in a training piece. The reference column is the held-out reference against "
        "the same training set: real music shares material too.</p>"
        + _table(["figure", "samples", "reference (held out)"], rows)
        + "<h3>Each sample</h3>"
        + _table(
            [
                "sample",
                "span (notes)",
                "span (bars)",
                "starts after (bars)",
                "line ~ training piece",
                "whole bars",
                "training piece",
            ],
            detail,
        )
    )


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td class='n'>{fmt(c)}</td>" if not isinstance(c, str) else f"<td>{escape(c)}</td>" for c in row)
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _plot(row: dict) -> str:
    """A small PNG, base64: the two mean histograms as bars, or the two sets' value distributions.

    A bare ``Figure``, not pyplot: no GUI backend, no global figure state to close.
    """
    fig = Figure(figsize=(3.6, 2.4), dpi=80)
    ax = fig.subplots()
    if row["histogram"]:
        x = np.arange(len(row["bins"]))
        for shift, side, colour in ((-0.2, "samples", SAMPLES_COLOUR), (0.2, "reference", REFERENCE_COLOUR)):
            if row[side]:
                ax.bar(x + shift, row[side], width=0.4, color=colour, label=side)
        step = max(1, len(x) // 8)
        ax.set_xticks(x[::step], row["bins"][::step], fontsize=7)
    else:
        estimate = densities(row["values"]["samples"], row["values"]["reference"])
        if estimate is not None:
            grid, *curves = (x[:: max(1, len(x) // 512)] for x in estimate)
            for curve, side, colour in zip(curves, ("samples", "reference"), (SAMPLES_COLOUR, REFERENCE_COLOUR)):
                ax.fill_between(grid, curve, alpha=0.35, color=colour, label=side)
        else:
            ax.text(0.5, 0.5, "every piece: " + fmt(_first_finite(row["values"])), ha="center", transform=ax.transAxes)
    ax.tick_params(labelsize=7)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _first_finite(values: dict[str, list[float]]) -> float | None:
    finite = [v for side in values.values() for v in side if v is not None and math.isfinite(v)]
    return finite[0] if finite else None
