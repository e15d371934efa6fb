"""Loops and stalls: hand-made degenerate pieces are flagged against real chorales; real ones mostly are not."""

from __future__ import annotations

import numpy as np
import pytest

from reprise.evaluation.degeneration import compare_degeneration, degeneration, longest_repeat, loop_coverage
from reprise.evaluation.pieces import Piece, pieces_from_dataset


def piece_of_bars(bars: list[list[tuple[int, int, int]]], name: str = "p") -> Piece:
    """Bars of (onset in bar, duration, pitch) notes, 16 steps each; an empty list is an empty bar."""
    notes = [(16 * b + o, d, p) for b, bar in enumerate(bars) for o, d, p in bar]
    onset, duration, pitch = (np.array(x, dtype=float) for x in zip(*notes))
    return Piece(name, name, onset, duration, pitch.astype(int), np.zeros(len(notes), dtype=int), ["t"])


A = [(0, 4, 60), (4, 4, 62), (8, 8, 64)]
B = [(0, 8, 67), (8, 8, 65)]
C = [(0, 16, 59)]


def test_longest_repeat_and_coverage_of_bar_sequences() -> None:
    assert longest_repeat(np.array([1, 2, 3, 1, 2, 3, 4])) == 3
    assert longest_repeat(np.array([5] * 8)) == 7  # overlapping occurrences count
    assert longest_repeat(np.array([1, 2, 3, 4])) == 0
    assert loop_coverage(np.array([1, 2, 1, 2, 1, 2, 9, 8])) == pytest.approx(6 / 8)
    assert loop_coverage(np.array([-1, -2, -3, -4])) == 0  # empty bars never repeat


def test_a_piece_looping_one_bar_is_flagged_and_a_song_with_some_repeats_is_not(jsb_data) -> None:
    reference = pieces_from_dataset(jsb_data, "test")
    loop = piece_of_bars([A] * 12, "loop")
    song = piece_of_bars([A, B, C, B, A, C, [(0, 4, 72)], B], "song")
    figures = degeneration(loop)
    assert (figures.bars, figures.longest_repeat, figures.loop_coverage) == (12, 11, 1.0)
    result = compare_degeneration([loop, song], reference)
    flags = {p["name"]: (p["loops"], p["stalls"]) for p in result["samples"]["pieces"]}
    assert flags == {"loop": (True, False), "song": (False, False)}
    assert 0 < result["loop_threshold"] < 1  # chorales repeat their opening phrases, but not most of their bars


def test_silence_and_a_held_chord_are_stalls(jsb_data) -> None:
    reference = pieces_from_dataset(jsb_data, "test")
    silent = piece_of_bars([A, [], [], [], B], "silent")
    held = piece_of_bars([A, [(0, 64, 60), (0, 64, 64), (0, 64, 67)], [], [], [], B], "held")
    assert degeneration(silent).longest_silence == pytest.approx(3.0)
    assert degeneration(held).longest_held == pytest.approx(4 - 1 / 16)  # the chord's first step is an onset
    assert degeneration(held).longest_silence == 0
    result = compare_degeneration([silent, held], reference)
    assert [p["stalls"] for p in result["samples"]["pieces"]] == [True, True]
