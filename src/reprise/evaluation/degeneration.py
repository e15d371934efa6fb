"""Degenerate output: pieces that loop on a few bars, or stall in silence or on one held chord.

A sampled piece can have a fine pitch and rhythm histogram and still be the same
two bars over and over, or one chord held for a minute; language models are known
to fall into such loops. These figures are measured per piece, on bars of the
16th-note grid; real music repeats too (a chorale's first phrases are sung twice),
so each figure is read against the same figure for the reference pieces.

* Two bars are *equal* when the same pitches sound and start at the same 16th steps
  (all tracks together). Bars in which no note starts never equal anything: silence
  and a held sound are stalls, not loops.
* ``longest_repeat`` -- the longest run of consecutive bars that occurs twice in the
  piece (the two occurrences may overlap: bar A eight times has a 7-bar repeat).
* ``loop_coverage`` -- the largest share of the piece's bars covered by
  non-overlapping repeats of one pattern of 1 to :data:`MAX_PATTERN_BARS` bars
  occurring at least twice.
* ``longest_silence`` -- the longest time, in bars, in which nothing sounds (before
  the last note ends).
* ``longest_held`` -- the longest time, in bars, in which something sounds but no
  note starts: one held chord.

A sample *loops* when its loop coverage is above the 95th percentile of the
reference's, and *stalls* when its longest silence or held chord is above the 95th
percentile of the reference's, or it has no notes at all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from reprise.evaluation.pieces import Piece

MAX_PATTERN_BARS = 8
PERCENTILE = 95


@dataclass(frozen=True)
class Degeneration:
    """Loop and stall figures of one piece (bars)."""

    bars: int
    longest_repeat: int
    loop_coverage: float
    longest_silence: float
    longest_held: float


def degeneration(piece: Piece) -> Degeneration:
    """The loop and stall figures of ``piece``."""
    ids, _, starting_bars = piece.bar_hashes()
    ids[~starting_bars] = -1 - np.flatnonzero(~starting_bars)  # bars where no note starts equal nothing
    roll, onsets = piece.roll(), piece.onset_roll()
    sounding, starting = roll.any(axis=1), onsets.any(axis=1)
    return Degeneration(
        bars=len(ids),
        longest_repeat=longest_repeat(ids),
        loop_coverage=loop_coverage(ids),
        longest_silence=_longest_run(~sounding) / piece.steps_per_bar,
        longest_held=_longest_run(sounding & ~starting) / piece.steps_per_bar,
    )


def longest_repeat(ids: np.ndarray) -> int:
    """The longest ``L`` with ``ids[i:i+L] == ids[j:j+L]`` for some ``i < j``."""
    best = 0
    for shift in range(1, len(ids)):
        best = max(best, _longest_run(ids[shift:] == ids[:-shift]))
    return best


def loop_coverage(ids: np.ndarray) -> float:
    """Largest share of bars covered by non-overlapping occurrences of one repeated pattern."""
    n, best = len(ids), 0
    for length in range(1, min(MAX_PATTERN_BARS, n // 2) + 1):
        last_end: dict[tuple, int] = {}
        count: dict[tuple, int] = {}
        for i in range(n - length + 1):
            pattern = tuple(ids[i : i + length])
            if min(pattern) < 0 or last_end.get(pattern, -1) > i:
                continue
            last_end[pattern], count[pattern] = i + length, count.get(pattern, 0) + 1
        repeated = [c for c in count.values() if c >= 2]
        best = max(best, max(repeated, default=0) * length)
    return best / n if n else 0.0


def compare_degeneration(samples: list[Piece], reference: list[Piece]) -> dict:
    """Per-piece figures of both sets, their means, the thresholds from the reference, and the flagged shares."""
    a, b = [degeneration(p) for p in samples], [degeneration(p) for p in reference]
    loop_limit = float(np.percentile([d.loop_coverage for d in b], PERCENTILE))
    stall_limit = float(np.percentile([max(d.longest_silence, d.longest_held) for d in b], PERCENTILE))

    def flags(pieces: list[Piece], figures: list[Degeneration]) -> list[dict]:
        return [
            {
                "name": p.name,
                **asdict(d),
                "loops": d.loop_coverage > loop_limit,
                "stalls": len(p.pitch) == 0 or max(d.longest_silence, d.longest_held) > stall_limit,
            }
            for p, d in zip(pieces, figures)
        ]

    result = {"loop_threshold": loop_limit, "stall_threshold_bars": stall_limit}
    for side, pieces, figures in (("samples", samples, a), ("reference", reference, b)):
        rows = flags(pieces, figures)
        result[side] = {
            "pieces": rows,
            "loops": float(np.mean([r["loops"] for r in rows])),
            "stalls": float(np.mean([r["stalls"] for r in rows])),
            **{
                f: float(np.mean([r[f] for r in rows]))
                for f in ("longest_repeat", "loop_coverage", "longest_silence", "longest_held")
            },
        }
    return result


def _longest_run(mask: np.ndarray) -> int:
    """Length of the longest run of True in a 1-D boolean array."""
    if not mask.any():
        return 0
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())
