"""The chorale grid and the chorale corpora: round-trips on real chorales, splits, structure."""

from __future__ import annotations

import json

import numpy as np
import pytest
import symusic

from reprise.data.chorale_grid import SILENCE, ChoraleGrid, grid_to_score, score_to_grid
from reprise.data.chorales import _read_chorale, _satb_parts, load_jsb_json, split_of
from reprise.errors import RepriseError


@pytest.fixture(scope="module")
def music21_grids() -> list[np.ndarray]:
    from music21 import corpus

    paths = [corpus.getWork(name) for name in ("bwv1.6", "bwv66.6", "bwv269")]
    return [_read_chorale(str(p)) for p in paths]


def test_music21_chorales_read_as_four_voice_grids(music21_grids):
    for grid in music21_grids:
        assert grid.ndim == 2 and grid.shape[1] == 4 and len(grid) > 32
        sounding = grid[grid != SILENCE].reshape(-1)
        assert 30 < sounding.min() and sounding.max() < 90
        # soprano above bass on average: the voices are in S, A, T, B order
        assert grid[:, 0][grid[:, 0] > 0].mean() > grid[:, 3][grid[:, 3] > 0].mean() + 12


def test_instrumental_parts_are_left_out():
    from music21 import corpus

    score = corpus.parse("bach/bwv1.6")  # has a horn part besides the four voices
    assert len(score.parts) == 5
    assert [p.partName for p in _satb_parts(score)] == ["Soprano", "Alto", "Tenor", "Bass"]


def test_tokens_round_trip_on_real_chorales(music21_grids):
    tokenizer = ChoraleGrid()
    for grid in music21_grids:
        ids = tokenizer.encode_grid(grid)
        assert ids[0] == tokenizer.bos_id and ids[-1] == tokenizer.eos_id
        assert len(ids) == 4 * len(grid) + 2
        np.testing.assert_array_equal(tokenizer.decode_grid(ids), grid)


def test_midi_round_trip_merges_held_notes(music21_grids, tmp_path):
    tokenizer = ChoraleGrid()
    grid = music21_grids[1]
    path = tmp_path / "chorale.mid"
    score = tokenizer.decode(tokenizer.encode_grid(grid))
    score.dump_midi(str(path))
    # a held note is one MIDI note, not one per 16th: one note per run of equal pitch
    assert [len(t.notes) for t in score.tracks] == [_sounding_runs(grid[:, v]) for v in range(4)]
    assert sum(len(t.notes) for t in score.tracks) < (grid != SILENCE).sum() / 2
    back = score_to_grid(symusic.Score(str(path)))
    np.testing.assert_array_equal(back[: len(grid)], grid)
    np.testing.assert_array_equal(tokenizer.encode_midi(path), tokenizer.encode_grid(grid, eos=False))


def _sounding_runs(column: np.ndarray) -> int:
    starts = np.r_[True, column[1:] != column[:-1]]
    return int(np.sum(starts & (column != SILENCE)))


def test_jsb_benchmark_split_sizes(jsb_json):
    pieces = load_jsb_json(jsb_json)
    counts = {s: sum(p.split == s for p in pieces) for s in ("train", "valid", "test")}
    assert counts == {"train": 229, "valid": 76, "test": 77}
    tokenizer = ChoraleGrid()
    for piece in pieces[:20]:
        np.testing.assert_array_equal(tokenizer.decode_grid(tokenizer.encode_grid(piece.grid)), piece.grid)


@pytest.mark.parametrize(
    "content, message",
    [("not json", "not a JSON file"), (json.dumps({"train": []}), "expected keys train, valid and test")],
)
def test_bad_jsb_files_are_named_in_the_error(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(RepriseError, match=message) as err:
        load_jsb_json(path)
    assert str(path) in str(err.value)
    with pytest.raises(RepriseError, match="no such file"):
        load_jsb_json(tmp_path / "missing.json")


def test_split_is_deterministic_and_roughly_as_asked():
    names = [f"bach/bwv{i}" for i in range(2000)]
    splits = [split_of(n) for n in names]
    assert splits == [split_of(n) for n in names]
    assert 0.75 < splits.count("train") / 2000 < 0.85
    assert 0.07 < splits.count("test") / 2000 < 0.13


def test_allowed_next_keeps_each_voice_in_its_range():
    tokenizer = ChoraleGrid(voice_ranges=[(60, 81), (53, 74), (48, 69), (36, 62)])
    names = tokenizer.token_names()
    assert tokenizer.allowed_next(0).nonzero()[0].tolist() == [tokenizer.bos_id]
    for position in range(1, 9):
        allowed = {names[i] for i in tokenizer.allowed_next(position).nonzero()[0]}
        low, high = tokenizer.voice_ranges[(position - 1) % 4]
        pitches = {int(n.split("_")[1]) for n in allowed if n.startswith("PITCH")}
        assert pitches == set(range(low, high + 1))
        assert "SILENCE" in allowed
        assert ("EOS" in allowed) == ((position - 1) % 4 == 0)


def test_out_of_range_pitches_are_refused():
    with pytest.raises(RepriseError, match="outside the vocabulary"):
        ChoraleGrid(pitch_min=40, pitch_max=80).encode_grid(np.array([[90, 60, 50, 40]]))
    with pytest.raises(RepriseError, match="4 voices"):
        ChoraleGrid().encode_grid(np.zeros((3, 3), dtype=int))


def test_tokenizer_json_round_trip():
    from reprise.data.tokenizer import tokenizer_from_json

    tokenizer = ChoraleGrid(voice_ranges=[(60, 81), (53, 74), (48, 69), (36, 62)])
    again = tokenizer_from_json(json.loads(json.dumps(tokenizer.to_json())))
    assert again == tokenizer
    grid = grid_to_score(np.array([[60, 55, 52, 48]] * 4))
    assert [len(t.notes) for t in grid.tracks] == [1, 1, 1, 1]
