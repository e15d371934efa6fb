"""A melody given by a user: one pitch per 16th step, or a refusal that says where and what fixes it."""

from __future__ import annotations

import numpy as np
import pytest
import symusic

from reprise.data.chorale_grid import SILENCE, ChoraleGrid
from reprise.data.given_melody import fit_soprano, melody_line
from reprise.errors import RepriseError


def melody_score(notes: list[tuple[int, int, int]], tpq: int = 480) -> symusic.Score:
    """(start, length, pitch) in 16th steps."""
    score = symusic.Score(tpq)
    track = symusic.Track("Melody")
    step = tpq // 4
    for start, length, pitch in notes:
        track.notes.append(symusic.Note(start * step, length * step, pitch, 80))
    score.tracks.append(track)
    return score


def test_a_given_melody_becomes_one_pitch_per_step_or_a_clear_refusal():
    steps = melody_line(melody_score([(0, 4, 67), (4, 2, 69), (8, 8, 71)]))
    np.testing.assert_array_equal(steps, [67] * 4 + [69] * 2 + [SILENCE] * 2 + [71] * 8)
    chord = melody_score([(0, 4, 67), (0, 4, 71)])
    with pytest.raises(RepriseError, match="not one voice: MIDI pitches 67 and 71 sound together at bar 1, beat 1"):
        melody_line(chord)
    with pytest.raises(RepriseError, match="not one voice"):
        melody_line(chord, quantize=True)  # a chord is no rounding error
    swung = melody_score([(0, 4, 67), (4, 4, 69)])
    swung.tracks[0].notes[1].time += 40  # a third of a 16th late
    with pytest.raises(RepriseError, match=r"bar 1, beat 2\.08 .*off the 16th-note grid; --quantize"):
        melody_line(swung)
    np.testing.assert_array_equal(melody_line(swung, quantize=True), [67] * 4 + [69] * 4)
    legato = melody_score([(0, 5, 67), (4, 4, 69)])
    with pytest.raises(RepriseError, match="at bar 1, beat 2"):
        melody_line(legato)
    np.testing.assert_array_equal(melody_line(legato, quantize=True), [67] * 4 + [69] * 4)


def test_a_melody_out_of_the_soprano_range_is_refused_with_a_transposition_that_fits():
    tokenizer = ChoraleGrid(voice_ranges=[(60, 81), (53, 74), (48, 69), (36, 62)])
    fit_soprano(np.array([60, 72, SILENCE, 81]), tokenizer)
    with pytest.raises(RepriseError, match=r"48\.\.60, outside the soprano range .*\(60\.\.81\); --transpose 12 fits"):
        fit_soprano(np.array([48, 55, 60]), tokenizer)
    with pytest.raises(RepriseError, match="spans more than that range"):
        fit_soprano(np.array([40, 90]), tokenizer)
