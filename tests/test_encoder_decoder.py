"""The encoder-decoder and the non-causal attention its encoder uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reprise.data.chorale_grid import ChoraleGrid
from reprise.errors import RepriseError
from reprise.models.attention import build_attention
from reprise.models.checkpoint import load_checkpoint, save_checkpoint
from reprise.models.config import ModelConfig
from reprise.models.encoder_decoder import EncoderDecoder, EncoderDecoderConfig

ENCODER_KINDS = ["full", "relative", "rope", "alibi", "local", "fourier"]


def attention(kind: str, causal: bool = False, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    config = ModelConfig(d_model=32, n_heads=4, context=40, dropout=0.0, block_size=8, attention=kind, **overrides)
    return build_attention(config, kind, causal).eval()


@pytest.mark.parametrize("kind", ENCODER_KINDS)
def test_non_causal_attention_lets_early_positions_see_late_ones(kind):
    module = attention(kind)
    x = torch.randn(2, 24, 32)
    altered = x.clone()
    altered[:, 12] += 1.0  # a token in block 1 (of 8): seen by blocks 0..2
    with torch.no_grad():
        a, b = module(x), module(altered)
    assert not torch.allclose(a[:, 4], b[:, 4], atol=1e-6)  # an earlier position (block 0) moves


@pytest.mark.parametrize("kind", ENCODER_KINDS)
def test_padding_keys_change_nothing_for_real_positions(kind):
    module = attention(kind)
    x = torch.randn(1, 19, 32)
    padded = torch.cat([x, torch.randn(1, 7, 32)], 1)  # 7 junk positions, masked out
    key_mask = torch.arange(26)[None, :] < 19
    with torch.no_grad():
        alone, batched = module(x), module(padded, key_mask=key_mask)
    assert torch.isfinite(batched).all()
    torch.testing.assert_close(batched[:, :19], alone, rtol=1e-5, atol=1e-5)


def test_non_causal_local_attention_sees_the_next_block_and_no_further():
    module = attention("local")
    mask = module.pair_mask(24, torch.device("cpu"))
    assert mask[0, 15] and not mask[0, 16]  # block 0 sees block 1, not block 2
    assert not mask[16, 7] and mask[16, 8]  # block 2 sees block 1, not block 0
    x = torch.randn(1, 24, 32)
    far = x.clone()
    far[:, 20] += 1.0  # block 2
    with torch.no_grad():
        torch.testing.assert_close(module(x)[:, :8], module(far)[:, :8], rtol=0, atol=0)


def test_non_causal_alibi_penalises_distance_both_ways():
    module = attention("alibi")
    bias = module.position_bias(torch.zeros(1, 4, 5, 8), 5)
    torch.testing.assert_close(bias, bias.transpose(-1, -2))
    assert (bias[:, 2, 4] < bias[:, 2, 3]).all()


def test_encoders_have_no_cache():
    with pytest.raises(RepriseError, match="no decoding cache"):
        attention("rope").new_cache(1, 8, "cpu", torch.float32)


def tiny(attention: str = "rope", encoder_attention: str = "rope", device="cpu", **overrides) -> EncoderDecoder:
    torch.manual_seed(0)
    shape = {
        "vocab_size": 92,
        "source_vocab_size": 92,
        "context": 24,
        "source_context": 20,
        "d_model": 32,
        "encoder_layers": 2,
        "n_layers": 2,
        "n_heads": 4,
        "dropout": 0.0,
        "block_size": 8,
    }
    config = EncoderDecoderConfig(attention=attention, encoder_attention=encoder_attention, **{**shape, **overrides})
    return EncoderDecoder(config).to(device).eval()


def where(batch: int, length: int, frame: int, start: int = 0) -> torch.Tensor:
    """(time step, slot) of ``length`` tokens at ``frame`` tokens per step."""
    index = torch.arange(start, start + length)
    return torch.stack([index // frame, index % frame], -1).expand(batch, length, 2)


def pair(batch: int = 2, source: int = 20, target: int = 24, device="cpu"):
    torch.manual_seed(1)
    tensors = torch.randint(3, 41, (batch, source)), where(batch, source, 1)
    tensors += torch.randint(3, 40, (batch, target)), where(batch, target, 3)
    return tuple(t.to(device) for t in tensors)


@pytest.mark.parametrize("encoder_attention", ENCODER_KINDS)
def test_the_encoder_sees_the_whole_source_and_the_decoder_no_future_target(encoder_attention, device):
    model = tiny(encoder_attention=encoder_attention, device=device)
    source, source_where, ids, target_where = pair(device=device)
    late_source = source.clone()
    late_source[:, -1] = (late_source[:, -1] + 1 - 3) % 38 + 3  # the last source token only
    future = ids.clone()
    future[:, 10:] = torch.randint(3, 40, (2, 14), device=device)
    with torch.no_grad():
        base = model(source, source_where, ids, target_where)
        moved = model(late_source, source_where, ids, target_where)
        masked = model(source, source_where, future, target_where)
    assert not torch.allclose(base[:, 0], moved[:, 0], atol=1e-6)  # the first target token feels the last source token
    with torch.no_grad():  # ... and not only through cross-attention: the first source position feels it too
        first, first_moved = (model.encode(s, source_where).states[:, 0] for s in (source, late_source))
    assert not torch.allclose(first, first_moved, atol=1e-6)
    torch.testing.assert_close(masked[:, :10], base[:, :10], rtol=0, atol=0)
    assert not torch.allclose(masked[:, 10:], base[:, 10:])


@pytest.mark.parametrize("attention", ["rope", "full", "alibi", "local", "fourier", "relative"])
def test_cached_decoding_equals_the_full_forward_cross_attention_included(attention, device):
    model = tiny(attention=attention, device=device)
    source, source_where, ids, target_where = pair(device=device)
    with torch.no_grad():
        full = model(source, source_where, ids, target_where)
        memory = model.encode(source, source_where)
        caches = model.new_caches(2, 24)
        steps = [model.decode(memory, ids[:, :7], target_where[:, :7], caches)]  # prefill, then token by token
        steps += [model.decode(memory, ids[:, t : t + 1], target_where[:, t : t + 1], caches) for t in range(7, 24)]
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-5)
    assert caches[0].cross.keys is not None and caches[0].cross.keys.shape[-2] == 20  # the memory's, computed once


def test_a_padded_batch_scores_each_pair_as_it_would_alone(device):
    model = tiny(device=device)
    source, source_where, ids, target_where = pair(device=device)
    short = source[1:, :13]
    padded = source.clone()
    padded[1, 13:] = 0  # PAD
    with torch.no_grad():
        batched = model(padded, source_where, ids, target_where)
        alone = model(short, source_where[1:, :13], ids[1:], target_where[1:])
    torch.testing.assert_close(batched[1:], alone, rtol=1e-5, atol=1e-5)


def test_save_then_load_gives_identical_logits(tmp_path):
    model = tiny(task="infill")
    save_checkpoint(tmp_path / "ckpt", model, ChoraleGrid())
    loaded, _ = load_checkpoint(tmp_path / "ckpt")
    assert isinstance(loaded, EncoderDecoder) and loaded.config == model.config
    with torch.no_grad():
        torch.testing.assert_close(loaded(*pair()), model(*pair()), rtol=0, atol=0)


def test_bad_encoder_decoder_options_are_refused():
    with pytest.raises(RepriseError, match="unknown task 'sing'"):
        EncoderDecoderConfig(task="sing")
    with pytest.raises(RepriseError, match="unknown attention 'nope'"):
        EncoderDecoderConfig(encoder_attention="nope")


def test_the_decoder_learns_to_read_the_source_at_its_own_time_step():
    """A/T/B = the soprano minus 5, 12 and 17 semitones: only finding the source at the same step predicts the alto."""
    from reprise.data.pairs import Pair, Task, collate, decoder_window

    task = Task("harmonize", ChoraleGrid())
    model = tiny(context=48, n_layers=1, encoder_layers=1).train()
    optimizer = torch.optim.AdamW(model.parameters(), 3e-3)
    rng = np.random.default_rng(0)
    for _ in range(250):
        windows = []
        for _ in range(8):
            soprano = rng.integers(40, 80, 40) - 17
            target = np.stack([soprano - 5, soprano - 12, soprano - 17], 1).reshape(-1)
            start = 3 * int(rng.integers(0, 24))
            windows.append(
                decoder_window(Pair("x", np.r_[1, soprano, 2], np.r_[1, target, 2]), task, start, start + 49, 20, 0.25)
            )
        inputs, targets = collate(windows, 0)
        logits = model(*(torch.from_numpy(x) for x in inputs))
        loss = F.cross_entropy(logits.flatten(0, 1), torch.from_numpy(targets).flatten(), ignore_index=0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.3  # guessing the alto (1 of 40 pitches) alone would cost ln(40) / 3 = 1.23
