"""Musical statistics on hand-made pieces, the KDE overlap, and key finding checked against music21."""

from __future__ import annotations

import numpy as np
import pytest

from reprise.evaluation.music_stats import (
    compare,
    empty_bar_ratio,
    estimate_key,
    in_key,
    interval_histogram,
    ioi_histogram,
    note_density,
    overlap,
    pitch_class_entropy,
    pitch_range,
    polyphony,
)
from reprise.evaluation.pieces import Piece, pieces_from_dataset


def make_piece(notes: list[tuple[float, float, int]], tracks: list[int] | None = None, name: str = "p") -> Piece:
    """Notes as (onset, duration, pitch) in 16th steps."""
    onset, duration, pitch = (np.array(x) for x in zip(*notes))
    track = np.array(tracks if tracks is not None else [0] * len(notes))
    order = np.lexsort((pitch, onset))
    names = [f"t{i}" for i in range(track.max() + 1)]
    return Piece(
        name, name, onset[order].astype(float), duration[order].astype(float), pitch[order], track[order], names
    )


def test_muspy_definitions_on_a_hand_made_piece() -> None:
    # Bar 1: C-E-G arpeggio in quarters over a held C3; bar 2 empty; bar 3: one note, ending on the bar line.
    piece = make_piece([(0, 4, 60), (4, 4, 64), (8, 8, 67), (0, 16, 48), (32, 16, 72)], [0, 0, 0, 1, 0])
    assert pitch_range(piece) == 24
    # pitch classes C x3, E, G: p = (.6, .2, .2)
    assert pitch_class_entropy(piece) == pytest.approx(-(0.6 * np.log2(0.6) + 2 * 0.2 * np.log2(0.2)))
    # two pitches sound for the 16 steps of bar 1, one for the 16 of bar 3
    assert polyphony(piece) == pytest.approx((2 * 16 + 16) / 32)
    assert empty_bar_ratio(piece) == pytest.approx(1 / 3)  # the note ending at step 48 does not open bar 4
    assert note_density(piece) == pytest.approx(5 / 3)
    # top line of track 0: 60 64 67 72 -> +4 +3 +5
    assert np.flatnonzero(interval_histogram(piece)).tolist() == [12 + 3, 12 + 4, 12 + 5]
    # onsets 0, 4, 8, 32: IOIs of a quarter, a quarter and six quarters (nearest class: 24 steps)
    assert ioi_histogram(piece)[[3, 8]] == pytest.approx([2 / 3, 1 / 3])


def test_in_key_counts_notes_outside_the_estimated_scale() -> None:
    scale = [60, 62, 64, 65, 67, 69, 71, 72]
    c_major = make_piece([(4 * i, 4, p) for i, p in enumerate(scale * 2)])
    assert estimate_key(c_major) == (0, "major") and in_key(c_major) == 1.0
    chromatic = make_piece([(4 * i, 4, p) for i, p in enumerate(scale * 2 + [61, 66])])
    assert in_key(chromatic) == pytest.approx(16 / 18)


def test_key_estimate_agrees_with_music21_krumhansl_schmuckler(jsb_data) -> None:
    from music21 import analysis, note, stream

    for piece in pieces_from_dataset(jsb_data, "test")[:6]:
        s = stream.Stream()
        for onset, duration, pitch in zip(piece.onset, piece.duration, piece.pitch):
            s.insert(onset / 4, note.Note(int(pitch), quarterLength=duration / 4))
        theirs = analysis.discrete.KrumhanslSchmuckler().getSolution(s)
        assert estimate_key(piece) == (theirs.tonic.pitchClass, theirs.mode), piece.name


def test_overlap_of_identical_disjoint_and_shifted_sets() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 2000)
    assert overlap(a, a) == pytest.approx(1, abs=1e-6)
    assert overlap(a, a + 50) < 1e-6
    # two unit normals one apart overlap by 2 * Phi(-1/2) = 0.617; the kernels widen both a little
    assert overlap(a, rng.normal(1, 1, 2000)) == pytest.approx(0.617, abs=0.03)
    assert overlap(np.zeros(5), np.zeros(7)) == 1.0
    assert overlap(np.zeros(5), np.ones(5)) < 0.05
    assert np.isnan(overlap(np.array([np.nan]), a))


def test_a_split_against_itself_has_distances_near_zero_and_another_split_does_not(jsb_data) -> None:
    test = pieces_from_dataset(jsb_data, "test")[:24]
    rows = compare(test, test)
    assert {"parallel_fifths", "pitch_class_histogram", "in_key"} <= set(rows)
    assert max(row["distance"] for row in rows.values()) < 1e-5
    shuffled = compare(pieces_from_dataset(jsb_data, "valid")[:24], test)
    assert np.mean([row["distance"] for row in shuffled.values()]) > 0.02


def test_silly_samples_are_far_from_chorales(jsb_data) -> None:
    test = pieces_from_dataset(jsb_data, "test")[:24]
    drones = [make_piece([(16 * b, 16, 30 + b % 3) for b in range(12)], name=f"drone{i}") for i in range(10)]
    rows = compare(drones, test)
    assert "parallel_fifths" not in rows  # the drones have no SATB grid
    for name in ("pitch_range", "polyphony", "note_density", "pitch_class_histogram", "duration_histogram"):
        assert rows[name]["distance"] > 0.9, name
