"""Originality: planted, transposed copies are found with their length and source; a piece never matches itself."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from reprise.data.chorale_grid import grid_to_score
from reprise.evaluation.originality import TrainingIndex
from reprise.evaluation.pieces import Piece, piece_from_score, pieces_from_dataset


@pytest.fixture(scope="module")
def train(jsb_data) -> list[Piece]:
    return pieces_from_dataset(jsb_data, "train")


@pytest.fixture(scope="module")
def index(train) -> TrainingIndex:
    return TrainingIndex(train)


def monophonic(onset: np.ndarray, duration: np.ndarray, pitch: np.ndarray, name: str) -> Piece:
    return Piece(
        name,
        name,
        onset.astype(float),
        duration.astype(float),
        pitch.astype(int),
        np.zeros(len(pitch), dtype=int),
        ["melody"],
    )


def occurs_in(intervals: np.ndarray, piece: Piece) -> bool:
    """Brute force: does ``intervals`` occur in a line (a track's top line or the piece's top line) of ``piece``?"""
    lines = [piece.top_line(t)[1] for t in range(len(piece.track_names))] + [piece.top_line()[1]]
    n = len(intervals)
    return any(np.array_equal(np.diff(p)[i : i + n], intervals) for p in lines for i in range(len(p) - n))


def test_a_transposed_melodic_copy_is_found_with_its_length_place_and_source(train, index) -> None:
    source = train[40]
    onset, pitch, duration = source.top_line(0)  # the soprano
    take = slice(6, 26)  # 20 notes
    start = 32 - onset[take][0]  # the copy starts on the downbeat of bar 3 (bar index 2)
    sample = monophonic(
        np.r_[28, onset[take] + start, onset[take][-1] + start + 8],
        np.r_[4, duration[take], 4],
        np.r_[pitch[take][0] + 5 - 23, pitch[take] + 5, pitch[take][-1] + 5 + 23],  # leaps of 23 into and out of it
        "sample",
    )
    span = index.longest_span(sample)
    assert span.notes == 20 and span.at_bar == 2.0 and span.line == "melody"
    assert span.bars == pytest.approx((onset[take][-1] + duration[take][-1] - onset[take][0]) / 16)
    found = next(p for p in train if p.name == span.train_piece)
    assert occurs_in(np.diff(pitch[take]), found)  # the reported piece has it (another chorale may share the tune)


def test_transposed_whole_bars_are_found(train, index) -> None:
    # three bars of a chorale, a tone up, starting where every voice starts a new note (as it does in the copy)
    grid = next(p.grid for p in train if len(p.grid) >= 96 and (p.grid[31] != p.grid[32]).all())
    copied = np.where(grid[32:80] >= 0, grid[32:80] + 2, -1)
    odd = np.array([[90, 30, 88, 31], [91, 29, 87, 32]] * 8)  # a bar no chorale has
    sample = piece_from_score(grid_to_score(np.concatenate([odd, copied, odd[::-1]])), "sample", "sample")
    bars = index.longest_bars(sample)
    assert bars.bars == 3 and bars.at_bar == 1


def test_a_piece_is_never_matched_with_itself_but_a_copy_under_another_name_is(train, index) -> None:
    piece = train[7]
    assert index.longest_span(piece).train_piece != piece.name
    assert index.longest_bars(piece).train_piece != piece.name
    copy = replace(piece, name="copy", key="elsewhere")
    span = index.longest_span(copy)
    assert span.notes == max(len(piece.top_line(t)[1]) for t in (0, 1, 2, 3, None))
    starting = piece.bar_hashes()[2]  # bars where a note starts; held final chords never match
    assert starting[:-1].all() and index.longest_bars(copy).bars == piece.n_bars - (not starting[-1])


def test_index_finds_the_same_longest_span_as_a_brute_force_search() -> None:
    rng = np.random.default_rng(1)
    corpus = [
        monophonic(np.arange(60) * 4, np.full(60, 4), 60 + rng.integers(0, 3, 60).cumsum() % 12, f"t{i}")
        for i in range(12)
    ]
    index = TrainingIndex(corpus, min_notes=4)
    for query in corpus[:4] + [monophonic(np.arange(40) * 4, np.full(40, 4), 50 + rng.integers(0, 3, 40), "q")]:
        q = np.diff(query.pitch)
        best = 0
        for other in corpus:
            if other.key == query.key:
                continue
            t = np.diff(other.pitch)
            for i in range(len(q)):
                for j in range(len(t)):
                    n = 0
                    while i + n < len(q) and j + n < len(t) and q[i + n] == t[j + n]:
                        n += 1
                    best = max(best, n)
        expected = best + 1 if best + 1 >= 4 else 0
        assert index.longest_span(query).notes == expected, query.name
