"""Every tokenizer on real music: tokens -> MIDI -> tokens, JSON, augmentation in range."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import symusic

from conftest import SHARED, shared
from reprise.data.augment import Augmentation
from reprise.data.chorale_grid import ChoraleGrid, grid_to_score
from reprise.data.melody_grid import HOLD, REST, MelodyGrid
from reprise.data.miditok_adapter import REMI, TSD, MIDILike
from reprise.data.performance import NOTE_OFF, NOTE_ON, TIME_SHIFT, VELOCITY, Performance
from reprise.data.sources import Item, read_item, select_tracks
from reprise.data.tokenizer import tokenizer_from_json

augment = Augmentation()  # the training default: up to 3 semitones, and time stretches where ids carry time

POP909 = SHARED / "pop909"
ERK = SHARED / "erk" / "erk.zip"


@pytest.fixture(scope="module")
def pop_files():
    shared(POP909)
    return [POP909 / f"{n:03d}.mid" for n in (1, 9, 250)]


@pytest.fixture(scope="module")
def erk_scores() -> list[symusic.Score]:
    shared(ERK)
    with zipfile.ZipFile(ERK) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".krn"))[:6]
        return [read_item(Item(n, "kern", archive.read(n)))[0] for n in names]


def _round_trip(tokenizer, ids, tmp_path) -> np.ndarray:
    path = tmp_path / "piece.mid"
    tokenizer.decode(ids).dump_midi(str(path))
    return tokenizer.encode_midi(path)


def test_performance_round_trips_real_files(pop_files, tmp_path):
    tokenizer = Performance()
    assert tokenizer.vocab_size == 3 + 388
    for path in pop_files:
        ids = tokenizer.encode_score(symusic.Score(str(path)))
        assert ids[0] == tokenizer.bos_id and ids[-1] == tokenizer.eos_id
        np.testing.assert_array_equal(_round_trip(tokenizer, ids, tmp_path), ids[:-1])
        on, off = ((ids >= NOTE_ON) & (ids < NOTE_OFF)).sum(), ((ids >= NOTE_OFF) & (ids < TIME_SHIFT)).sum()
        assert on == off > 500


def test_sustain_pedal_extends_notes_as_magenta_does():
    score = symusic.Score(480)
    score.tempos.append(symusic.Tempo(0, 120.0))  # one tick is 1/960 s
    track = symusic.Track("piano", 0)
    track.notes.extend([symusic.Note(0, 96, 60, 80), symusic.Note(0, 96, 64, 80), symusic.Note(480, 96, 60, 80)])
    track.controls.extend([symusic.ControlChange(48, 64, 127), symusic.ControlChange(1440, 64, 0)])
    score.tracks.append(track)
    notes = Performance().decode(Performance().encode_score(symusic.Score.from_midi(score.dumps_midi())))
    ends = sorted((n.pitch, n.time, n.end) for n in notes.tracks[0].notes)
    # held by the pedal until it lifts at 1.5 s, except where 60 is struck again at 0.5 s
    assert [(p, t / 1000, e / 1000) for p, t, e in ends] == [(60, 0.0, 0.5), (60, 0.5, 1.5), (64, 0.0, 1.5)]


def test_performance_augmentation_transposes_and_stretches(pop_files):
    tokenizer = Performance()
    ids = tokenizer.encode_score(symusic.Score(str(pop_files[0])))[:400]
    shifts, lengths = set(), set()
    for seed in range(30):
        out = augment(ids, tokenizer, np.random.default_rng(seed))
        notes = lambda x: x[(x >= NOTE_ON) & (x < TIME_SHIFT)]  # noqa: E731
        shifts.add(int(notes(out)[0]) - int(notes(ids)[0]))
        assert ((out >= 0) & (out < tokenizer.vocab_size)).all()
        time = lambda x: (x[(x >= TIME_SHIFT) & (x < VELOCITY)] - TIME_SHIFT + 1).sum()  # noqa: E731
        lengths.add(round(40 * time(out) / time(ids)))  # in steps of 2.5 %
    assert shifts == set(range(-3, 4))
    assert lengths == {38, 39, 40, 41, 42}  # 0.95, 0.975, 1, 1.025, 1.05


@pytest.mark.parametrize("cls", [REMI, TSD, MIDILike])
def test_miditok_tokenizers_round_trip_real_files(cls, pop_files, tmp_path):
    tokenizer = cls()
    for path in pop_files:
        ids = tokenizer.encode_score(symusic.Score(str(path)))
        assert ids[0] == tokenizer.bos_id and ids[-1] == tokenizer.eos_id
        np.testing.assert_array_equal(_round_trip(tokenizer, ids, tmp_path), ids[:-1])
    again = tokenizer_from_json(json.loads(json.dumps(tokenizer.to_json())))
    np.testing.assert_array_equal(
        again.encode_score(symusic.Score(str(pop_files[0]))), tokenizer.encode_score(symusic.Score(str(pop_files[0])))
    )


def test_miditok_augmentation_moves_only_pitches(pop_files):
    tokenizer = REMI()
    names = tokenizer.token_names()
    ids = tokenizer.encode_score(symusic.Score(str(pop_files[0])))[:300]
    moved = {augment(ids, tokenizer, np.random.default_rng(seed))[5:].tobytes() for seed in range(10)}
    assert len(moved) > 3
    out = augment(ids, tokenizer, np.random.default_rng(2))
    changed = np.flatnonzero(out != ids)
    assert len(changed) and all(names[ids[i]].startswith("Pitch_") for i in changed)


def test_bpe_compresses_and_still_round_trips(pop_files, tmp_path):
    tokenizer = REMI(bpe_vocab=500)
    base = [tokenizer.encode_score(symusic.Score(str(p))) for p in pop_files]
    tokenizer.fit(base)
    assert tokenizer.vocab_size == 500
    compressed = tokenizer.compress(base[0])
    assert len(compressed) < 0.8 * len(base[0]) and compressed[0] == 1 and compressed[-1] == 2
    np.testing.assert_array_equal(_round_trip(tokenizer, compressed, tmp_path), compressed[:-1])
    again = tokenizer_from_json(json.loads(json.dumps(tokenizer.to_json())))
    np.testing.assert_array_equal(again.compress(base[1]), tokenizer.compress(base[1]))
    out = augment(compressed[:100], tokenizer, np.random.default_rng(0))
    assert out[0] == tokenizer.bos_id and (out < 500).all()


def test_melody_grid_round_trips_essen_songs(erk_scores, tmp_path):
    tokenizer = MelodyGrid()
    for score in erk_scores:
        ids = tokenizer.encode_score(score)
        assert {HOLD, REST} & set(ids.tolist())
        np.testing.assert_array_equal(_round_trip(tokenizer, ids, tmp_path), ids[:-1])
    score = symusic.Score(480)
    track = symusic.Track("m", 0)
    track.notes.extend([symusic.Note(0, 240, 60, 80), symusic.Note(240, 120, 60, 80), symusic.Note(480, 120, 62, 80)])
    score.tracks.append(track)
    names = tokenizer.token_names()
    assert [names[i] for i in tokenizer.encode_score(score)] == [
        "BOS",
        "PITCH_60",
        "HOLD",
        "PITCH_60",
        "REST",
        "PITCH_62",
        "EOS",
    ]


def test_melody_grid_transposes_inside_its_range():
    tokenizer = MelodyGrid(pitch_min=60, pitch_max=72)
    ids = np.array([1, 5 + 10, 3, 5 + 12, 4, 5 + 9])  # pitches 70, 72, 69
    outs = [augment(ids, tokenizer, np.random.default_rng(s)) for s in range(30)]
    assert {int(o[1]) - int(ids[1]) for o in outs} == {-3, -2, -1, 0}
    for out in outs:
        np.testing.assert_array_equal(out[[0, 2, 4]], ids[[0, 2, 4]])


def test_chorale_grid_augmentation_keeps_every_voice_in_range():
    tokenizer = ChoraleGrid(voice_ranges=[(60, 81), (53, 74), (48, 69), (36, 62)])
    grid = np.array([[80, 70, 60, 40], [79, 69, 59, 38]])
    ids = tokenizer.encode_grid(grid)
    for seed in range(20):
        back = tokenizer.decode_grid(augment(ids, tokenizer, np.random.default_rng(seed)))
        shift = back[0, 0] - 80
        assert -3 <= shift <= 1  # the soprano's 80 may rise only to 81
        np.testing.assert_array_equal(back, grid + shift)


def test_chorale_grid_encodes_scores(tmp_path):
    grid = np.array([[72, 67, 64, 48]] * 4 + [[74, 67, 62, 43]] * 4)
    tokenizer = ChoraleGrid()
    np.testing.assert_array_equal(tokenizer.encode_score(grid_to_score(grid)), tokenizer.encode_grid(grid))


def test_track_selection_by_name_and_program(pop_files):
    score = symusic.Score(str(pop_files[0]))
    assert [t.name for t in select_tracks(score, ("melody",)).tracks] == ["MELODY"]
    assert [t.name for t in select_tracks(score, ("MELODY", "PIANO")).tracks] == ["MELODY", "PIANO"]
    assert len(select_tracks(score, ("0",)).tracks) == 3  # all are program 0, piano
    with pytest.raises(Exception, match="no track matches --tracks VIOLIN; it has MELODY"):
        select_tracks(score, ("VIOLIN",))


def test_a_note_never_switched_off_ends_after_five_seconds_and_a_long_closed_one_keeps_its_length():
    ten_seconds = [TIME_SHIFT + 99] * 10
    ids = [1, NOTE_ON + 60, NOTE_ON + 64, *ten_seconds, NOTE_OFF + 64, *ten_seconds, 2]
    duration = {n.pitch: n.duration for n in Performance().decode(np.asarray(ids)).tracks[0].notes}
    assert duration[64] == 2 * duration[60]  # 10 s as written; the unclosed 60 stops at 5 s, not at 20 s


def test_a_key_struck_again_without_a_note_off_ends_the_note_that_sounds():
    half = [TIME_SHIFT + 49]
    ids = [1, NOTE_ON + 60, *half, NOTE_ON + 60, *half, NOTE_ON + 60, *half, NOTE_OFF + 60, 2]
    notes = sorted((n.time, n.duration) for n in Performance().decode(np.asarray(ids)).tracks[0].notes)
    assert len(notes) == 3 and all(duration == notes[0][1] for _, duration in notes)  # no overlapping copies
    assert [time for time, _ in notes] == [0, notes[0][1], 2 * notes[0][1]]
