"""The soprano-ahead chorale grid and harmonising with a decoder-only model: the melody stays as given,
only what the model writes is scored, and a piece may end where the model ends it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import run
from reprise.data.chorale_grid import SILENCE, ChoraleGrid
from reprise.data.dataset import EncodedPiece, TokenDataset, write_dataset
from reprise.evaluation.nll import nll_of
from reprise.generation.conditional import harmonize
from reprise.generation.generate import generate
from reprise.generation.sampling import SamplingConfig
from reprise.models.config import ModelConfig
from reprise.models.transformer import MusicTransformer

RANGES = [(60, 81), (53, 74), (48, 69), (36, 62)]
SOPRANO = np.array([67] * 4 + [69] * 4 + [71] * 8 + [SILENCE] * 2 + [72] * 6 + [71] * 4 + [69] * 4 + [67] * 8)


def tiny_model(context: int = 32) -> MusicTransformer:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=92, context=context, d_model=32, n_layers=2, n_heads=4, dropout=0.0, frame=4)
    return MusicTransformer(config).eval()


def grid(steps: int = 12) -> np.ndarray:
    rng = np.random.default_rng(0)
    out = np.stack([rng.integers(low, high + 1, steps) for low, high in RANGES], axis=1)
    out[3, 2] = SILENCE
    return out


@pytest.mark.parametrize("ahead", [0, 1, 5, 16])
def test_the_soprano_ahead_round_trips_and_puts_each_soprano_ahead_of_its_chord(ahead):
    tokenizer = ChoraleGrid(soprano_ahead=ahead)
    chorale = grid()
    ids = tokenizer.encode_grid(chorale)
    np.testing.assert_array_equal(tokenizer.decode_grid(ids), chorale)
    assert len(ids) == 2 + 4 * (len(chorale) + ahead)
    frames = ids[1:-1].reshape(-1, 4)
    np.testing.assert_array_equal(frames[: len(chorale), 0] - 4 + tokenizer.pitch_min, chorale[:, 0])
    assert (frames[:ahead, 1:] == tokenizer.silence_id).all() and (
        frames[len(chorale) :, 0] == tokenizer.silence_id
    ).all()
    notes = tokenizer.token_notes(ids)
    plain = ChoraleGrid().token_notes(ChoraleGrid().encode_grid(chorale))
    assert sorted(notes[notes >= 0]) == sorted(plain[plain >= 0])  # every step's token still finds its note


def test_only_alto_tenor_bass_and_the_end_are_scored_with_the_soprano_ahead():
    tokenizer = ChoraleGrid(soprano_ahead=3)
    ids = tokenizer.encode_grid(grid(10))
    scored = tokenizer.scored(ids)
    assert scored.sum() == 3 * 10 + 1 and scored[-1] and not scored[0]
    assert not scored[1:-1:4].any()  # no soprano token
    assert ChoraleGrid().scored(ids) is None
    model = tiny_model(64)
    everything = nll_of(model, [ids], 64, frame=4)
    written = nll_of(model, [ids], 64, frame=4, scored=tokenizer.scored)
    assert written.tokens == 31 and everything.tokens == len(ids) - 1


def test_scored_only_batches_read_the_given_soprano_and_never_ask_for_it(tmp_path):
    tokenizer = ChoraleGrid(soprano_ahead=3)
    pieces = [EncodedPiece(f"p{i}", tokenizer.encode_grid(grid(12 + i)), "train") for i in range(4)]
    data = write_dataset(tmp_path / "data", pieces, tokenizer, "random grids", [])
    batch = [TokenDataset(data, "train", only).batch(np.random.default_rng(0), 6, 24) for only in (False, True)]
    (inputs, targets), (inputs_only, targets_only) = batch
    np.testing.assert_array_equal(inputs_only, inputs)  # the soprano is still read
    assert (targets_only == tokenizer.pad_id).sum() > (targets == tokenizer.pad_id).sum()
    for row in range(len(inputs)):  # each window is a crop of a piece: find it and its scored targets
        piece = next(p.ids for p in pieces if _crop_of(p.ids, inputs[row]) is not None)
        start = _crop_of(piece, inputs[row])
        scored = tokenizer.scored(piece)[start + 1 : start + 1 + targets.shape[1]]
        real = targets[row, : len(scored)]
        np.testing.assert_array_equal(targets_only[row, : len(scored)], np.where(scored, real, tokenizer.pad_id))


def _crop_of(piece: np.ndarray, window: np.ndarray) -> int | None:
    """Where ``window`` (padding at its end) starts in ``piece``, or ``None``."""
    real = window[window != 0]
    for start in range(len(piece) - len(real) + 1):
        if np.array_equal(piece[start : start + len(real)], real):
            return start
    return None


def test_a_chorale_grid_translates_between_soprano_offsets_and_refuses_other_pitches():
    plain, ahead = ChoraleGrid(), ChoraleGrid(soprano_ahead=4)
    ids = plain.encode_grid(grid())
    np.testing.assert_array_equal(ahead.translate(ids, plain), ahead.encode_grid(grid()))
    np.testing.assert_array_equal(plain.translate(ahead.translate(ids, plain), ahead), ids)
    assert ChoraleGrid(pitch_min=30).translate(ids, plain) is None


@pytest.mark.parametrize("ahead, order", [(0, "SATB"), (8, "SATB"), (8, "SBAT")])
def test_a_decoder_only_model_harmonises_with_the_soprano_forced_token_for_token(ahead, order):
    tokenizer = ChoraleGrid(voice_ranges=RANGES, soprano_ahead=ahead, voice_order=order)
    chorales = harmonize(tiny_model(), tokenizer, SOPRANO, num_samples=3, seed=1)
    for ids in chorales:
        chorale = tokenizer.decode_grid(ids)
        np.testing.assert_array_equal(chorale[:, 0], SOPRANO)
        assert ids[-1] == tokenizer.eos_id and len(ids) == 2 + 4 * (len(SOPRANO) + ahead)
        for v, (low, high) in enumerate(RANGES[1:], start=1):
            sounding = chorale[:, v][chorale[:, v] != SILENCE]
            assert len(sounding) and ((sounding >= low) & (sounding <= high)).all()
    assert not np.array_equal(chorales[0], chorales[1])
    uncached = harmonize(tiny_model(), tokenizer, SOPRANO, num_samples=3, seed=1, use_cache=False)
    np.testing.assert_array_equal(np.array(chorales), np.array(uncached))


def test_a_piece_may_end_where_the_model_ends_it_and_is_padded_after():
    model, tokenizer = tiny_model(), ChoraleGrid()
    favour_the_end = torch.zeros(tokenizer.vocab_size)
    favour_the_end[tokenizer.eos_id] = 3.0
    model.head.register_forward_hook(lambda module, inputs, logits: logits + favour_the_end)
    ended = generate(model, tokenizer, np.array([tokenizer.bos_id]), 80, 4, SamplingConfig(end=True), seed=0)
    assert ended.shape == (4, 81)
    for row in ended:
        stop = np.flatnonzero(row == tokenizer.eos_id)
        assert len(stop) == 1 and (stop[0] - 1) % 4 == 0  # an end only where a step would begin
        assert (row[stop[0] + 1 :] == tokenizer.pad_id).all()
    fixed = generate(model, tokenizer, np.array([tokenizer.bos_id]), 80, 4, SamplingConfig(), seed=0)
    assert not (fixed == tokenizer.eos_id).any() and not (fixed == tokenizer.pad_id).any()


def test_prepare_evaluate_and_harmonize_with_the_soprano_ahead(capsys, jsb_json, jsb_data, tmp_path):
    code, _, err = run(capsys, "prepare", jsb_json, "--out", tmp_path / "ahead", "--soprano-ahead", "8")
    assert code == 0, err
    ahead = TokenDataset(tmp_path / "ahead", "test")
    assert ahead.tokenizer.soprano_ahead == 8
    args = ["--steps", "2", "--eval-every", "2", "--device", "cpu", "--context", "64", "--d-model", "32"]
    code, _, err = run(capsys, "train", "--data", tmp_path / "ahead", "--run", tmp_path / "run", *args, "--layers", "1")
    assert code == 0, err
    scores = []
    for data in (tmp_path / "ahead", jsb_data):  # the plain grid is translated to the model's
        code, out, err = run(capsys, "evaluate", "--checkpoint", tmp_path / "run", "--data", data, "--split", "test")
        assert code == 0, err
        scores.append(json.loads(out))
    assert scores[0] == scores[1]
    assert scores[0]["tokens"] == sum(int(ahead.tokenizer.scored(ahead.piece(i)).sum()) for i in range(len(ahead)))
    code, _, err = run(
        capsys, "train", "--data", tmp_path / "ahead", "--run", tmp_path / "only", "--scored-only", *args
    )
    assert code == 0, err
    code, _, err = run(capsys, "train", "--data", jsb_data, "--run", tmp_path / "plain", "--scored-only", *args)
    assert code != 0 and "--scored-only needs a stream with given music" in err and str(jsb_data) in err
    harmonise = ["harmonize", "--checkpoint", tmp_path / "run", "--primer-data", jsb_data, "--samples", "1"]
    code, out, err = run(capsys, *harmonise, "--out", tmp_path / "h")
    assert code == 0, err
    assert (tmp_path / "h" / "harmony-1.mid").is_file()
    code, _, err = run(
        capsys, "prepare", jsb_json, "--out", tmp_path / "x", "--tokenizer", "remi", "--soprano-ahead", "4"
    )
    assert code != 0 and "--soprano-ahead works with chorale-grid, not remi" in err
