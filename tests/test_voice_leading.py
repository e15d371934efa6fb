"""Voice-leading measures on hand-made SATB grids whose answers can be counted by eye."""

from __future__ import annotations

import numpy as np
import pytest

from reprise.errors import RepriseError
from reprise.evaluation.voice_leading import voice_leading

# C major triad in close-ish SATB spacing, then D minor: S and B move up a step each.
C_CHORD = [72, 67, 64, 48]  # C5 G4 E4 C3
D_CHORD = [74, 69, 65, 50]  # D5 A4 F4 D3


def test_parallel_octaves_and_fifths_between_all_moving_pairs() -> None:
    # S-B: C5/C3 -> D5/D3, octave class both, both up: 1 parallel octave.
    # A-B: G4/C3 -> A4/D3, fifth class both, both up: 1 parallel fifth.
    # S-A: C5/G4 is a 4th; S-T: C5/E4 (8 = m6 class) -> D5/F4 (9); A-T: 3rd; T-B: 4 -> 3.
    vl = voice_leading(np.array([C_CHORD, C_CHORD, D_CHORD, D_CHORD]))
    assert (vl.parallel_fifths, vl.parallel_octaves, vl.transitions) == (1, 1, 1)
    assert vl.parallel_fifths_rate == 1.0


def test_contrary_motion_and_held_voice_are_not_parallel() -> None:
    # S-B octave C5/C3 -> unison C4/C4: the soprano falls, the bass rises (contrary motion).
    contrary = np.array([[72, 67, 64, 48], [60, 67, 64, 60]])
    held = np.array([[72, 67, 64, 48], [74, 67, 64, 48]])  # only the soprano moves
    assert voice_leading(contrary).parallel_octaves == 0
    assert voice_leading(held).parallel_octaves == 0 and voice_leading(held).parallel_fifths == 0


def test_silence_breaks_parallels_and_repeated_rows_are_one_sonority() -> None:
    silent_bass = np.array([C_CHORD, [74, 69, 65, -1]])
    assert voice_leading(silent_bass).parallel_octaves == 0
    assert voice_leading(silent_bass).parallel_fifths == 0
    vl = voice_leading(np.array([C_CHORD] * 5 + [D_CHORD] * 3))
    assert vl.transitions == 1


def test_compound_fifths_count() -> None:
    # Tenor/bass a twelfth apart (19 semitones) moving up a step together.
    grid = np.array([[72, 67, 67, 48], [74, 69, 69, 50]])
    vl = voice_leading(grid)
    # S-B octave class both (1 octave), A-B and T-B twelfths (2 fifths), A-T unison class (1 octave).
    assert (vl.parallel_fifths, vl.parallel_octaves) == (2, 2)


def test_voice_crossings_counted_per_step() -> None:
    grid = np.array([C_CHORD, [72, 67, 69, 48], [72, 67, 69, 48], [-1, -1, -1, 48]])
    vl = voice_leading(grid)
    assert vl.crossing_steps == 2  # tenor A4 above alto G4 twice
    assert vl.polyphonic_steps == 3  # the last step has only the bass
    assert vl.crossing_rate == pytest.approx(2 / 3)


def test_out_of_range_per_note_not_per_step() -> None:
    # Soprano holds A5 (81 > G5) for three steps: one note; bass D2 (38 < E2) once.
    grid = np.array([[81, 67, 64, 48]] * 3 + [[72, 67, 64, 38]])
    vl = voice_leading(grid)
    assert vl.out_of_range_by_voice == (1, 0, 0, 1)
    assert vl.notes == 2 + 1 + 1 + 2
    assert vl.out_of_range_rate == pytest.approx(2 / 6)


def test_empty_grid_has_zero_rates_and_bad_shape_is_an_error() -> None:
    vl = voice_leading(np.zeros((0, 4), dtype=int))
    assert vl.transitions == 0 and set(vl.rates().values()) == {0.0}
    with pytest.raises(RepriseError, match="SATB grid"):
        voice_leading(np.zeros((5, 3), dtype=int))
