"""The baselines: a Witten-Bell n-gram chain and an LSTM, through the same interfaces as the transformer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reprise.data.chorale_grid import ChoraleGrid
from reprise.data.dataset import TokenDataset
from reprise.evaluation.nll import nll_of
from reprise.generation.generate import generate
from reprise.models.checkpoint import load_checkpoint, save_checkpoint
from reprise.models.lstm import LSTMConfig, LSTMLanguageModel
from reprise.models.markov import MarkovChain, MarkovConfig


def test_witten_bell_matches_a_hand_computation():
    chain = MarkovChain(MarkovConfig(vocab_size=4, order=1))
    chain.fit([np.array([1, 2, 2, 3])])  # bigrams (1,2) (2,2) (2,3); unigrams 2, 2, 3
    uniform = np.full(4, 0.25)
    unigram = (np.array([0, 0, 2, 1]) + 2 * uniform) / (3 + 2)  # 2 distinct tokens seen
    after_2 = (np.array([0, 0, 1, 1]) + 2 * unigram) / (2 + 2)
    np.testing.assert_allclose(chain.distribution((2,)), after_2)
    np.testing.assert_allclose(chain.distribution((0,)), unigram)  # unseen history backs off
    assert chain.distribution((1, 2)).sum() == pytest.approx(1.0)


def test_markov_chain_scores_cached_like_full_and_survives_a_checkpoint(jsb_data, tmp_path):
    train = TokenDataset(jsb_data, "train")
    chain = MarkovChain(MarkovConfig(vocab_size=train.tokenizer.vocab_size, order=4))
    chain.fit(train.piece(i) for i in range(len(train)))
    ids = torch.from_numpy(train.piece(0)[:40])[None]
    full = chain(ids)
    caches = chain.new_caches(1, 64)
    stepwise = torch.cat([chain(ids[:, :5], caches)] + [chain(ids[:, t : t + 1], caches) for t in range(5, 40)], 1)
    torch.testing.assert_close(stepwise, full)
    torch.testing.assert_close(full.exp().sum(-1), torch.ones(1, 40))
    save_checkpoint(tmp_path / "markov", chain, train.tokenizer)
    loaded, _ = load_checkpoint(tmp_path / "markov")
    torch.testing.assert_close(loaded(ids), full, rtol=0, atol=0)
    valid = [TokenDataset(jsb_data, "valid").piece(i) for i in range(10)]
    unigram = MarkovChain(MarkovConfig(vocab_size=train.tokenizer.vocab_size, order=0))
    unigram.fit(train.piece(i) for i in range(len(train)))
    assert nll_of(chain, valid, 1024).per_token < 0.5 * nll_of(unigram, valid, 1024).per_token


def test_lstm_is_causal_caches_its_state_and_survives_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = LSTMLanguageModel(LSTMConfig(vocab_size=92, d_embed=16, hidden=32, n_layers=2)).eval()
    ids = torch.randint(4, 92, (2, 24))
    altered = ids.clone()
    altered[:, 10:] = 5
    with torch.no_grad():
        full = model(ids)
        assert torch.equal(model(altered)[:, :10], full[:, :10])
        caches = model.new_caches(2, 24)
        stepwise = torch.cat([model(ids[:, :7], caches)] + [model(ids[:, t : t + 1], caches) for t in range(7, 24)], 1)
    torch.testing.assert_close(stepwise, full, rtol=1e-5, atol=1e-5)
    save_checkpoint(tmp_path / "lstm", model, ChoraleGrid())
    loaded, _ = load_checkpoint(tmp_path / "lstm")
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), full, rtol=0, atol=0)
    tokenizer = ChoraleGrid()
    fast = generate(model, tokenizer, np.array([tokenizer.bos_id]), 12, num_samples=2, seed=4)
    slow = generate(model, tokenizer, np.array([tokenizer.bos_id]), 12, num_samples=2, seed=4, use_cache=False)
    np.testing.assert_array_equal(fast, slow)
