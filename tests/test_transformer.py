"""The decoder: causality, cached decoding, checkpoints, sampling filters."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reprise.data.chorale_grid import ChoraleGrid
from reprise.generation.generate import generate
from reprise.generation.sampling import SamplingConfig, filter_logits
from reprise.models.checkpoint import load_checkpoint, save_checkpoint
from reprise.models.config import ModelConfig
from reprise.models.transformer import MusicTransformer

POSITIONS = ["learned", "sinusoidal", "frame", "none"]


def tiny_model(positions: str = "learned", device="cpu", **overrides) -> MusicTransformer:
    torch.manual_seed(0)
    overrides.setdefault("frame", 4)
    config = ModelConfig(
        vocab_size=92, context=32, d_model=32, n_layers=2, n_heads=4, dropout=0.0, positions=positions, **overrides
    )
    return MusicTransformer(config).to(device).eval()


@pytest.mark.parametrize("positions", POSITIONS)
def test_changing_future_tokens_never_changes_earlier_logits(device, positions):
    model = tiny_model(positions, device)
    ids = torch.randint(4, 92, (2, 32), device=device)
    cut = 13
    altered = ids.clone()
    altered[:, cut:] = torch.randint(4, 92, (2, 32 - cut), device=device)
    with torch.no_grad():
        a, b = model(ids), model(altered)
    torch.testing.assert_close(a[:, :cut], b[:, :cut], rtol=0, atol=0)
    assert not torch.allclose(a[:, cut:], b[:, cut:])


@pytest.mark.parametrize("positions", POSITIONS)
def test_cached_decoding_equals_full_forward(device, positions):
    model = tiny_model(positions, device)
    ids = torch.randint(4, 92, (3, 30), device=device)
    with torch.no_grad():
        full = model(ids)
        caches = model.new_caches(3, 32)
        pieces = [model(ids[:, :10], caches)]  # prefill a primer, then one token at a time
        pieces += [model(ids[:, t : t + 1], caches) for t in range(10, 30)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)


def test_frame_positions_tell_a_token_its_place_in_the_step_and_nothing_else():
    model = tiny_model("frame")
    signal = model.positions(start=6, length=10)  # positions 6..15: places 2, 3, 0, 1, 2, ...
    torch.testing.assert_close(signal, model.positions.table.weight[torch.arange(6, 16) % 4])
    same = torch.full((1, 8), 50)  # one token over and over: only positions can tell the voices apart
    with torch.no_grad():
        blind, framed = tiny_model("none")(same), model(same)
    torch.testing.assert_close(blind[0, 1], blind[0, 0])
    assert not torch.allclose(framed[0, 1], framed[0, 0], atol=1e-3)


def test_cached_and_uncached_sampling_choose_the_same_tokens():
    model = tiny_model("learned")
    tokenizer = ChoraleGrid()
    primer = tokenizer.encode_grid(np.array([[72, 67, 64, 48]] * 2), eos=False)
    # 60 new tokens overflow the 32-token context: the window slides in both paths
    fast = generate(model, tokenizer, primer, 60, num_samples=2, seed=3)
    slow = generate(model, tokenizer, primer, 60, num_samples=2, seed=3, use_cache=False)
    np.testing.assert_array_equal(fast, slow)
    assert fast.shape == (2, len(primer) + 60)


def test_sampling_keeps_the_four_voice_structure():
    model = tiny_model("learned")
    ranges = [(60, 81), (53, 74), (48, 69), (36, 62)]
    tokenizer = ChoraleGrid(voice_ranges=ranges)
    ids = generate(
        model,
        tokenizer,
        np.array([tokenizer.bos_id]),
        64,
        num_samples=4,
        sampling=SamplingConfig(temperature=2.0),
        seed=1,
    )
    assert (ids[:, 1:] >= tokenizer.silence_id).all()  # no specials in the body
    grid = tokenizer.decode_grid(ids[0])
    assert grid.shape == (16, 4)
    for v, (low, high) in enumerate(ranges):
        sounding = grid[:, v][grid[:, v] >= 0]
        assert ((sounding >= low) & (sounding <= high)).all()


def test_top_k_and_top_p_keep_only_the_likeliest_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.15, 0.1]]))
    kept = lambda config: torch.isfinite(filter_logits(logits, config)).squeeze(0).tolist()  # noqa: E731
    assert kept(SamplingConfig(top_k=2)) == [True, True, False, False]
    assert kept(SamplingConfig(top_p=0.5)) == [True, False, False, False]
    assert kept(SamplingConfig(top_p=0.7)) == [True, True, False, False]
    assert kept(SamplingConfig(top_p=0.8)) == [True, True, True, False]
    cold = filter_logits(logits, SamplingConfig(temperature=0.5)).softmax(-1)
    assert cold[0, 0] > 0.5


def test_save_then_load_gives_identical_logits(device, tmp_path):
    model = tiny_model("sinusoidal", device)
    tokenizer = ChoraleGrid()
    save_checkpoint(tmp_path / "ckpt", model, tokenizer)
    loaded, loaded_tokenizer = load_checkpoint(tmp_path / "ckpt", device)
    ids = torch.randint(4, 92, (2, 32), device=device)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), model(ids), rtol=0, atol=0)
    assert loaded_tokenizer == tokenizer
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == ["model.json", "model.safetensors", "tokenizer.json"]
    assert json.loads((tmp_path / "ckpt" / "model.json").read_text())["config"]["positions"] == "sinusoidal"
    assert loaded.head.weight.data_ptr() == loaded.embed.weight.data_ptr()  # tying survives the round-trip


def test_bad_model_options_are_refused():
    from reprise.errors import RepriseError

    with pytest.raises(RepriseError, match="unknown attention 'nope'"):
        ModelConfig(attention="nope")
    with pytest.raises(RepriseError, match="not divisible"):
        ModelConfig(d_model=30, n_heads=4)
    with pytest.raises(RepriseError, match="frame must be at least 1 token, not 0"):
        ModelConfig(positions="frame", frame=0)
