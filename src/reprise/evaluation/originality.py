"""Originality: the longest stretch of a piece that also occurs in a training piece, in any key.

Two kinds of *span*, both transposition-invariant and both found through an index
of the training pieces' n-grams (never by scanning every pair of pieces):

* **Melodic span** -- notes. Every track of a piece is read as its *line*: the
  highest note at each onset of the track; pieces with several tracks also get a
  *top line*, the highest note at each onset of all tracks together. A line is its
  sequence of melodic intervals (semitones), which a transposition leaves alone.
  The span is the longest run of consecutive notes of one of the piece's lines whose
  intervals occur, consecutively, in some line of a training piece (a sample's bass
  copying a training tenor counts). Rhythm is not compared. Reported in notes, and
  in bars of the piece's own time.
* **Full-bar span** -- bars, all tracks together. A bar is its piano roll (which
  pitches sound and which start at each 16th step) moved down to its lowest
  sounding pitch; two runs of bars are equal when their bars are equal and the
  lowest pitch moves by the same steps from bar to bar, i.e. the one is the other
  transposed. Bars in which no note starts (silence, a held sound) never match;
  matches are bar-aligned.

A piece is never matched with itself: training pieces whose ``key`` (source) equals
the query's are skipped, so a split checked against itself finds only what its
pieces share with *other* pieces. Spans shorter than :data:`MIN_NOTES` notes or 2
bars are not reported (0).

The index maps the hash of every ``k`` consecutive elements (``k`` = the shortest
reportable span) of every training sequence to where they occur; a query looks up
each of its own ``k``-grams and extends each hit as far as both sequences agree,
starting only from hits that do not continue an earlier hit on the same diagonal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from reprise.evaluation.pieces import Piece, mix64

MIN_NOTES = 8
_BREAK = np.uint64(2**64 - 1)  # separates training sequences; never equals a query element
_NO_MATCH = np.uint64(2**64 - 2)  # a query element that matches nothing (a bar where no note starts)
_BASE = np.uint64(1_000_003)


@dataclass(frozen=True)
class Span:
    """The longest shared stretch of one piece: how long, where, and which training piece has it."""

    notes: int = 0
    bars: float = 0.0
    at_bar: float = 0.0  # where it starts in the piece, in bars from the start (0 = first downbeat)
    line: str = ""
    train_piece: str = ""
    train_line: str = ""


class _NgramIndex:
    """Training sequences of uint64 elements, and where each k-gram of them occurs."""

    def __init__(self, sequences: list[np.ndarray], k: int):
        self.k = k
        lengths = [len(s) + 1 for s in sequences]
        self.starts = np.cumsum([0] + lengths)[:-1]
        self.flat = np.concatenate([np.r_[s.astype(np.uint64), _BREAK] for s in sequences] or [np.array([_BREAK])])
        keys = _kgram_keys(self.flat, k)
        broken = np.convolve(self.flat == _BREAK, np.ones(k, dtype=int), "valid") > 0
        positions = np.flatnonzero(~broken)
        order = np.argsort(keys[positions], kind="stable")
        self.positions, self.keys = positions[order], keys[positions][order]

    def longest(self, query: np.ndarray, allowed: np.ndarray) -> tuple[int, int, int]:
        """(length, query start, sequence number) of the longest stretch of ``query`` found in an allowed sequence."""
        query = query.astype(np.uint64)
        if len(query) < self.k:
            return 0, 0, -1
        qkeys = _kgram_keys(query, self.k)
        lo, hi = np.searchsorted(self.keys, qkeys, "left"), np.searchsorted(self.keys, qkeys, "right")
        counts = hi - lo
        if not counts.any():
            return 0, 0, -1
        q_at = np.repeat(np.arange(len(qkeys)), counts)
        p_at = self.positions[np.repeat(lo - np.cumsum(np.r_[0, counts[:-1]]), counts) + np.arange(counts.sum())]
        sequence = np.searchsorted(self.starts, p_at, "right") - 1
        keep = allowed[sequence]
        keep &= (q_at == 0) | (p_at == 0) | (query[np.maximum(q_at - 1, 0)] != self.flat[np.maximum(p_at - 1, 0)])
        q_at, p_at, sequence = q_at[keep], p_at[keep], sequence[keep]
        length = _extend(query, self.flat, q_at, p_at)
        if not len(length) or length.max() < self.k:
            return 0, 0, -1
        best = int(np.argmax(length))
        return int(length[best]), int(q_at[best]), int(sequence[best])


class TrainingIndex:
    """The training pieces' lines and bars, indexed for :meth:`longest_span` and :meth:`longest_bars`."""

    def __init__(self, train: list[Piece], min_notes: int = MIN_NOTES):
        self.train = train
        self.min_notes = min_notes
        lines = [(i, name, intervals) for i, piece in enumerate(train) for name, intervals, _ in _lines(piece)]
        self._line_owner = np.array([i for i, _, _ in lines], dtype=np.int64)
        self._line_names = [name for _, name, _ in lines]
        self._lines = _NgramIndex([intervals for _, _, intervals in lines], min_notes - 1)
        self._bars = _NgramIndex([_bar_transitions(piece, _BREAK) for piece in train], 1)

    def longest_span(self, piece: Piece) -> Span:
        """The longest melodic span of ``piece`` that occurs in another training piece (``Span()`` if none)."""
        allowed = self._allowed(piece)[self._line_owner]
        best = Span()
        for name, intervals, (onset, duration) in _lines(piece):
            length, start, line = self._lines.longest(intervals, allowed)
            if length + 1 > best.notes and line >= 0:
                end = onset[start + length] + duration[start + length]
                best = Span(
                    length + 1,
                    (end - onset[start]) / piece.steps_per_bar,
                    onset[start] / piece.steps_per_bar,
                    name,
                    self.train[self._line_owner[line]].name,
                    self._line_names[line],
                )
        return best

    def longest_bars(self, piece: Piece) -> Span:
        """The longest run of whole bars of ``piece``, all tracks, found transposed in another training piece."""
        length, start, owner = self._bars.longest(_bar_transitions(piece, _NO_MATCH), self._allowed(piece))
        if owner < 0:
            return Span()
        return Span(
            bars=float(length + 1),
            at_bar=float(start),
            line="all tracks",
            train_piece=self.train[owner].name,
            train_line="all tracks",
        )

    def _allowed(self, piece: Piece) -> np.ndarray:
        """Which training pieces ``piece`` may be matched with: all but itself."""
        return np.array([p.key != piece.key for p in self.train], dtype=bool)


def originality(pieces: list[Piece], index: TrainingIndex) -> dict:
    """Each piece's longest melodic and full-bar spans found in the training set, and their summary."""
    rows = [
        {"name": p.name, "span": asdict(index.longest_span(p)), "full_bars": asdict(index.longest_bars(p))}
        for p in pieces
    ]
    notes = np.array([r["span"]["notes"] for r in rows])
    bars = np.array([r["full_bars"]["bars"] for r in rows])
    return {
        "pieces": rows,
        "median_notes": float(np.median(notes)),
        "max_notes": int(notes.max()),
        "share_with_span": float((notes >= index.min_notes).mean()),
        "median_full_bars": float(np.median(bars)),
        "max_full_bars": float(bars.max()),
        "share_with_full_bars": float((bars >= 2).mean()),
    }


def _lines(piece: Piece) -> list[tuple[str, np.ndarray, tuple[np.ndarray, np.ndarray]]]:
    """(name, intervals as uint64, (onsets, durations)) of each track's line, plus the top line of several tracks."""
    chosen = [(name, t) for t, name in enumerate(piece.track_names)]
    chosen += [("top line", None)] if len(chosen) > 1 else []
    lines = []
    for name, track in chosen:
        onset, pitch, duration = piece.top_line(track)
        lines.append((name, (np.diff(pitch) + 256).astype(np.uint64), (onset, duration)))
    return lines


def _bar_transitions(piece: Piece, empty: np.uint64) -> np.ndarray:
    """One element per pair of consecutive bars: both bars' shapes and the step between their lowest pitches."""
    shape, lowest, starting = piece.bar_hashes(relative=True)
    shape = shape.astype(np.uint64)
    step = (lowest[1:] - lowest[:-1] + 128).astype(np.uint64)
    both = (shape[:-1] * np.uint64(0x9E3779B97F4A7C15) + shape[1:]) * np.uint64(0xC2B2AE3D27D4EB4F) + step
    return np.where(starting[:-1] & starting[1:], mix64(both).astype(np.uint64), empty)


def _kgram_keys(values: np.ndarray, k: int) -> np.ndarray:
    """Polynomial hash (mod 2**64) of each window of ``k`` consecutive values."""
    n = len(values) - k + 1
    keys = np.zeros(max(n, 0), dtype=np.uint64)
    for j in range(k):
        keys = keys * _BASE + values[j : j + n]
    return keys


def _extend(query: np.ndarray, flat: np.ndarray, q_at: np.ndarray, p_at: np.ndarray) -> np.ndarray:
    """How far each (query, training) start pair agrees; ``flat`` ends with a break, so every run stops."""
    length = np.zeros(len(q_at), dtype=np.int64)
    active = np.arange(len(q_at))
    while len(active):
        i, p = q_at[active] + length[active], p_at[active] + length[active]
        inside = i < len(query)
        same = np.zeros(len(active), dtype=bool)
        same[inside] = query[i[inside]] == flat[p[inside]]
        active = active[same]
        length[active] += 1
    return length
