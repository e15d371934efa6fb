"""The transposition ensemble: its average is the one computed by hand from transposed pieces, cached
decoding writes what uncached decoding writes, checkpoints carry it, and it refuses what it cannot do."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import run
from reprise.data.chorale_grid import ChoraleGrid
from reprise.errors import RepriseError
from reprise.evaluation.nll import nll_of
from reprise.generation.conditional import harmonize
from reprise.generation.generate import generate
from reprise.generation.sampling import SamplingConfig
from reprise.models.checkpoint import load_checkpoint, save_checkpoint
from reprise.models.config import ModelConfig
from reprise.models.lstm import LSTMConfig, LSTMLanguageModel
from reprise.models.transformer import MusicTransformer
from reprise.models.transposition import TranspositionEnsemble, id_transpositions
from reprise.visualization.attention import token_attention

TOKENIZER = ChoraleGrid(pitch_min=40, pitch_max=70)


def untrained(transpositions: int = 0, condition: int = 0) -> MusicTransformer:
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=TOKENIZER.vocab_size, context=64, d_model=32, n_layers=2, n_heads=4, dropout=0.0, frame=4
    )
    config.transpositions, config.condition = transpositions, condition
    return MusicTransformer(config).eval()


def piece(steps: int = 6, seed: int = 0) -> np.ndarray:
    grid = np.random.default_rng(seed).integers(45, 66, size=(steps, 4))
    grid[1, 1] = -1  # a silent alto: silence is no pitch and stays itself
    return TOKENIZER.encode_grid(grid)


def test_a_pitch_moves_within_the_vocabulary_and_everything_else_stays():
    up = id_transpositions(TOKENIZER, 2)
    assert list(up[:4]) == [0, 1, 2, 3]  # PAD, BOS, EOS, SILENCE
    assert up[4] == 6 and up[-3] == TOKENIZER.vocab_size - 1
    assert up[-2] == up[-1] == -1  # the top two pitches have nowhere to go
    down = id_transpositions(TOKENIZER, -1)
    assert down[4] == -1 and down[5] == 4  # the lowest pitch does not become SILENCE


def test_a_fill_in_the_middle_stream_moves_its_pitches_and_keeps_its_markers():
    from reprise.data.fill import FillTokenizer

    fill = FillTokenizer(TOKENIZER)
    up = id_transpositions(fill, 2)
    np.testing.assert_array_equal(up[: TOKENIZER.vocab_size], id_transpositions(TOKENIZER, 2))
    assert list(up[TOKENIZER.vocab_size :]) == [fill.fill_id, fill.middle_id]  # a pitch never becomes FILL
    stream = fill.arrange(piece(40), (16, 20), 10_000)
    moved = fill.transposed(stream, 2)
    np.testing.assert_array_equal(fill.parts(moved)[2], TOKENIZER.transposed(fill.parts(stream)[2], 2))


def test_the_ensemble_is_the_average_of_the_model_on_transposed_pieces():
    model, ids = untrained(), piece()
    ensemble = TranspositionEnsemble(model, TOKENIZER, 2)
    got = ensemble(torch.as_tensor(ids)[None])[0].exp()
    expected = torch.zeros_like(got)
    for shift in range(-2, 3):
        probs = model(torch.as_tensor(TOKENIZER.transposed(ids, shift))[None])[0].softmax(-1)
        for i in range(TOKENIZER.vocab_size):  # the probability of id i is that of i moved by the shift
            j = TOKENIZER.transposed(np.array([i]), shift)[0]
            if 4 <= j < TOKENIZER.vocab_size or i < 4:
                expected[:, i] += probs[:, j] / 5
    expected /= expected.sum(-1, keepdim=True)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got.sum(-1), torch.ones(len(ids)))


def test_no_transposition_is_the_model_itself():
    model, ids = untrained(), torch.as_tensor(piece())[None]
    torch.testing.assert_close(TranspositionEnsemble(model, TOKENIZER, 0)(ids), model(ids).log_softmax(-1))


def test_cached_decoding_writes_what_uncached_decoding_writes():
    ensemble = TranspositionEnsemble(untrained(), TOKENIZER, 1)
    primer = piece(steps=2)
    args = (ensemble, TOKENIZER, primer, 80, 3, SamplingConfig(end=False))  # past the context: a slide
    np.testing.assert_array_equal(generate(*args, seed=4), generate(*args, seed=4, use_cache=False))


def test_harmonising_with_an_ensemble_keeps_the_soprano():
    soprano = np.array([60] * 4 + [62] * 4 + [64] * 8)
    ensemble = TranspositionEnsemble(untrained(), TOKENIZER, 1)
    (ids,) = harmonize(ensemble, TOKENIZER, soprano, num_samples=1, seed=0)
    np.testing.assert_array_equal(TOKENIZER.decode_grid(ids)[:, 0], soprano)


def test_a_checkpoint_that_asks_for_transpositions_loads_as_its_ensemble(tmp_path):
    save_checkpoint(tmp_path / "ckpt", untrained(transpositions=1), TOKENIZER)
    ensemble, tokenizer = load_checkpoint(tmp_path / "ckpt")
    single, _ = load_checkpoint(tmp_path / "ckpt", transpositions=0)
    assert isinstance(ensemble, TranspositionEnsemble) and type(single) is MusicTransformer
    assert ensemble.num_parameters() == single.num_parameters()
    pieces = [piece(seed=s) for s in range(3)]
    scores = [nll_of(m, pieces, 64, frame=4).per_token for m in (ensemble, single)]
    assert scores[0] != pytest.approx(scores[1])  # the ensemble is a different model of the same weights


def test_what_cannot_be_transposed_is_refused_in_one_line(tmp_path):
    with pytest.raises(RepriseError, match="decoder-only"):
        TranspositionEnsemble(LSTMLanguageModel(LSTMConfig(vocab_size=TOKENIZER.vocab_size)), TOKENIZER, 1)
    with pytest.raises(RepriseError, match="without a condition"):
        TranspositionEnsemble(untrained(condition=8), TOKENIZER, 1)
    with pytest.raises(RepriseError, match="transpositions must be 0 or more"):
        ModelConfig(transpositions=-1)


def test_the_commands_take_an_ensemble_of_any_checkpoint_and_refuse_one_they_cannot_build(
    tiny_run, tiny_harmonizer, small_chorales, tmp_path, capsys
):
    scores = []
    for k in ("0", "1"):
        code, out, err = run(
            capsys, "evaluate", "--checkpoint", tiny_run, "--data", small_chorales, "--transpositions", k
        )
        assert code == 0, err
        scores.append(json.loads(out)["nll_per_token"])
    assert scores[0] != scores[1]
    args = ["generate", "--checkpoint", tiny_run, "--length", "16", "--out", tmp_path, "--transpositions", "1"]
    code, out, err = run(capsys, *args)
    assert code == 0 and (tmp_path / "sample-1.mid").is_file(), err
    code, _, err = run(capsys, "harmonize", "--checkpoint", tiny_harmonizer, "--transpositions", "1", "--out", tmp_path)
    assert code == 1 and "decoder-only" in err and len(err.strip().splitlines()) == 1


def test_the_attention_shown_for_an_ensemble_is_its_one_network_reading_the_piece_as_written():
    model, ids = untrained(), piece()
    ensemble = TranspositionEnsemble(model, TOKENIZER, 1)
    np.testing.assert_array_equal(token_attention(ensemble, ids, frame=4), token_attention(model, ids, frame=4))


def test_an_ensemble_stores_as_its_one_network():
    model = untrained()
    held = TranspositionEnsemble(model, TOKENIZER, 2).state_dict()
    assert set(held) == {f"model.{name}" for name in model.state_dict()}  # its id tables are a rule, not weights
