"""The attention family: each kind against an independent reference, causality, caching, gradients, bf16.

Model tests run on the ``device`` fixture ($REPRISE_TEST_DEVICE, cpu by default).
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from reprise.errors import RepriseError
from reprise.models.attention import ATTENTION_KINDS, build_attention, relative
from reprise.models.attention.fourier import causal_convolution, fnet_mixing
from reprise.models.attention.full import FullAttention
from reprise.models.attention.relative import RelativeEmbedding, relative_attention
from reprise.models.attention.relative_shaw import ShawRelativeEmbedding
from reprise.models.attention.rope import rotate
from reprise.models.cache import LocalCache
from reprise.models.config import ModelConfig
from reprise.models.positions import angles, frequencies
from reprise.models.transformer import MusicTransformer

# every kind, and the variants that take another code path
VARIANTS = {
    "full": {},
    "relative": {},
    "relative-shared": {"attention": "relative", "relative_shared_heads": True, "max_relative_distance": 5},
    "relative-shaw": {},
    "local": {"block_size": 6},
    "local-relative": {"attention": "local", "block_size": 6, "local_relative": True},
    "fourier": {},
    "rope": {},
    "alibi": {},
    "hybrid": {"attention": "fourier,rope"},  # one kind per block
}


def config(variant: str, **overrides) -> ModelConfig:
    options = {
        "vocab_size": 24,
        "context": 32,
        "d_model": 24,
        "n_layers": 2,
        "n_heads": 3,
        "dropout": 0.0,
        "positions": "none",
        "attention": variant,
        **VARIANTS[variant],
        **overrides,
    }
    return ModelConfig(**options)


def model(variant: str, dtype=torch.float64, device="cpu", **overrides) -> MusicTransformer:
    torch.manual_seed(0)
    return MusicTransformer(config(variant, **overrides)).to(device, dtype).eval()


def random_ids(batch: int, length: int, seed: int, device="cpu") -> torch.Tensor:
    return torch.randint(0, 24, (batch, length), generator=torch.Generator().manual_seed(seed)).to(device)


@pytest.fixture
def small_chunks(monkeypatch):
    """Relative attention in chunks of 16 queries, so that short test sequences take several."""
    monkeypatch.setattr(relative, "CHUNK_ROWS", 16)
    monkeypatch.setattr(relative, "GPU_CHUNK_ROWS", 16)


def test_every_kind_is_tested():
    assert {k for v in VARIANTS for k in VARIANTS[v].get("attention", v).split(",")} == set(ATTENTION_KINDS)


def shaw_reference(
    q: torch.Tensor, table: torch.Tensor, n_keys: int, after: torch.Tensor | None = None
) -> torch.Tensor:
    """Shaw et al.'s relative logits by explicit loops over query/key pairs (no code shared with reprise).

    Causal without ``after`` (embeddings of keys after the query), else over every pair.
    """
    b, h, t, d = q.shape
    out = torch.zeros(b, h, t, n_keys, dtype=q.dtype, device=q.device)
    for i in range(t):
        for k in range(n_keys if after is not None else n_keys - t + i + 1):
            distance = n_keys - t + i - k
            row = (
                table[:, min(distance, table.shape[1] - 1)]
                if distance >= 0
                else after[:, min(-distance, after.shape[1]) - 1]
            )
            out[:, :, i, k] = (q[:, :, i] * row).sum(-1) / d**0.5
    return out


@pytest.mark.parametrize("heads,groups", [(1, 1), (4, 4), (4, 1)])
@pytest.mark.parametrize(
    "queries,keys,causal",
    [
        (1, 1, True),
        (5, 5, True),
        (9, 9, True),
        (3, 11, True),
        (1, 8, True),
        (1, 1, False),
        (5, 5, False),
        (9, 9, False),
    ],
)
@pytest.mark.parametrize("max_distance", [1, 3, 20])
def test_skewed_and_shaw_logits_equal_the_definition(heads, groups, queries, keys, causal, max_distance):
    torch.manual_seed(0)
    skewed = RelativeEmbedding(groups, 6, max_distance, causal).double()
    shaw = ShawRelativeEmbedding(groups, 6, max_distance, causal).double()
    shaw.load_state_dict(skewed.state_dict())
    q = torch.randn(2, heads, queries, 6, dtype=torch.float64)
    visible = torch.ones(queries, keys, dtype=torch.bool).tril(keys - queries if causal else keys)
    after = None if causal else skewed.table_after.detach()
    expected = shaw_reference(q, skewed.table.detach(), keys, after)
    torch.testing.assert_close(skewed(q, keys)[..., visible], expected[..., visible], rtol=0, atol=1e-12)
    torch.testing.assert_close(shaw(q, keys)[..., visible], expected[..., visible], rtol=0, atol=1e-12)


@pytest.mark.parametrize("shared", [False, True])
def test_skewed_gradients_equal_shaw_gradients(shared):
    torch.manual_seed(1)
    groups = 1 if shared else 4
    skewed, shaw = RelativeEmbedding(groups, 5, 6).double(), ShawRelativeEmbedding(groups, 5, 6).double()
    shaw.load_state_dict(skewed.state_dict())
    q = torch.randn(2, 4, 10, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 4, 10, 10, dtype=torch.float64).tril()  # only visible pairs count
    grads = [torch.autograd.grad((m(q, 10) * weight).sum(), [q, m.table]) for m in (skewed, shaw)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_shaw_backward_passes_gradcheck():
    torch.manual_seed(2)
    shaw = ShawRelativeEmbedding(2, 3, 4).double()
    q = torch.randn(2, 2, 5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda q, table: shaw.__class__.forward(_with_table(shaw, table), q, 7),
        (q, shaw.table.detach().clone().requires_grad_()),
        fast_mode=True,
    )


def _with_table(module: RelativeEmbedding, table: torch.Tensor) -> RelativeEmbedding:
    clone = module.__class__(table.shape[0], table.shape[2], table.shape[1] - 1).double()
    del clone.table
    clone.table = table
    return clone


@pytest.mark.parametrize("causal,queries,keys", [(True, 20, 20), (True, 18, 25), (True, 1, 9), (False, 20, 20)])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_relative_attention_passes_gradcheck(small_chunks, causal, queries, keys, groups, dropout):
    torch.manual_seed(3)
    q = torch.randn(2, 2, queries, 3, dtype=torch.float64, requires_grad=True)
    k, v = (torch.randn(2, 2, keys, 3, dtype=torch.float64, requires_grad=True) for _ in range(2))
    embeddings = torch.randn(groups, keys if causal else 2 * keys - 1, 3, dtype=torch.float64, requires_grad=True)

    def attention(*inputs: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(4)  # the same dropout masks at every call
        return relative_attention(*inputs, causal=causal, dropout=dropout)

    assert torch.autograd.gradcheck(attention, (q, k, v, embeddings), fast_mode=True)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("length", [7, 33])
def test_relative_equals_shaw_values_and_gradients(small_chunks, device, causal, shared, length):
    cfg = config("relative", relative_shared_heads=shared, max_relative_distance=9)
    torch.manual_seed(5)
    fast = build_attention(cfg, "relative", causal).to(device, torch.float64)
    shaw = build_attention(cfg, "relative-shaw", causal).to(device, torch.float64)
    shaw.load_state_dict(fast.state_dict())
    x = torch.randn(2, length, cfg.d_model, dtype=torch.float64, device=device)
    outputs = []
    for layer in (fast, shaw):
        y = layer(x)
        (y * torch.linspace(-1, 1, cfg.d_model, dtype=y.dtype, device=device)).sum().backward()
        outputs.append((y, {n: p.grad for n, p in layer.named_parameters()}))
    torch.testing.assert_close(outputs[0][0], outputs[1][0], rtol=0, atol=1e-12)
    for name, grad in outputs[0][1].items():
        torch.testing.assert_close(grad, outputs[1][1][name], rtol=0, atol=1e-12, msg=name)


@pytest.mark.parametrize("kind", ["relative", "relative-shaw"])
def test_non_causal_relative_attention_sees_both_ways(device, kind):
    torch.manual_seed(6)
    layer = build_attention(config(kind), kind, causal=False).to(device, torch.float64)
    x = torch.randn(1, 12, 24, dtype=torch.float64, device=device)
    later, earlier = x.clone(), x.clone()
    later[:, 8] += 1
    earlier[:, 2] += 1
    assert (layer(later) - layer(x))[:, :8].abs().min() > 0  # every position reads the future
    assert (layer(earlier) - layer(x))[:, 3:].abs().min() > 0  # and the past
    assert set(layer.state_dict()) == {
        "qkv.weight",
        "qkv.bias",
        "proj.weight",
        "proj.bias",
        "position_bias.table",
        "position_bias.table_after",
    }


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_future_leak(device, variant):
    m = model(variant, device=device)
    ids = random_ids(2, 30, 0, device)
    changed = ids.clone()
    changed[:, 17:] = (changed[:, 17:] + 5) % 24
    before, after = m(ids), m(changed)
    torch.testing.assert_close(before[:, :17], after[:, :17], rtol=0, atol=1e-12)
    assert (before[:, 17:] - after[:, 17:]).abs().max() > 1e-3  # the model does read its input


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_decoding_equals_full_forward(device, variant):
    m = model(variant, device=device)
    ids = random_ids(2, 31, 1, device)
    caches = m.new_caches(2, 32)
    pieces = [m(ids[:, :9], caches), m(ids[:, 9:13], caches)]  # a prefill, then several tokens at once
    pieces += [m(ids[:, i : i + 1], caches) for i in range(13, 31)]
    assert caches[0].length == 31
    torch.testing.assert_close(torch.cat(pieces, 1), m(ids), rtol=0, atol=1e-10)


def test_local_cache_keeps_at_most_two_blocks():
    cache = LocalCache(block=4)
    for position in range(19):
        keys, _ = cache.append(*(torch.full((1, 1, 1, 2), float(position)),) * 2)
        window_start = max(0, (position // 4 - 1) * 4)
        assert keys[0, 0, :, 0].tolist() == list(range(window_start, position + 1))
    assert cache.length == 19


@pytest.mark.parametrize("relative", [False, True])
@pytest.mark.parametrize("length", [5, 12, 17])
def test_local_equals_full_attention_under_the_block_mask(relative, length):
    torch.manual_seed(4)
    cfg = config("local-relative" if relative else "local")
    local = build_attention(cfg, "local").double().eval()
    x = torch.randn(2, length, cfg.d_model, dtype=torch.float64)
    q, k, v = local.split_heads(x)
    logits = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if relative:
        logits = logits + shaw_reference(q, local.position_bias.table.detach(), length)
    i, j = torch.arange(length)[:, None], torch.arange(length)[None, :]
    band = (j <= i) & (j >= (i // cfg.block_size - 1) * cfg.block_size)
    expected = local.merge_heads(logits.masked_fill(~band, float("-inf")).softmax(-1) @ v)
    torch.testing.assert_close(local(x), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        local.weights(x), logits.masked_fill(~band, float("-inf")).softmax(-1), rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_reach_every_parameter(device, variant):
    m = model(variant, dtype=torch.float32, device=device).train()
    ids = random_ids(2, 30, 2, device)
    torch.nn.functional.cross_entropy(m(ids).flatten(0, 1), ids.roll(-1, 1).flatten()).backward()
    for name, param in m.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("variant", VARIANTS)
def test_bf16_autocast_forward_and_backward_follow_float32(small_chunks, device, variant):
    m = model(variant, dtype=torch.float32, device=device, d_model=48).train()
    ids = random_ids(2, 30, 7, device)
    results = []
    for bf16 in (False, True):
        m.zero_grad()
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            logits = m(ids)
        torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), ids.roll(-1, 1).flatten()).backward()
        results.append((logits.float(), torch.cat([p.grad.flatten() for p in m.parameters()])))
    (exact, exact_grad), (low, low_grad) = results
    assert low.dtype == torch.float32 and torch.isfinite(low_grad).all()
    assert (low - exact).abs().max() < 0.05 * exact.abs().max()  # bf16 keeps ~3 significant digits
    assert torch.nn.functional.cosine_similarity(low_grad, exact_grad, dim=0) > 0.99


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v not in ("fourier", "hybrid")])
def test_weights_are_causal_distributions(device, variant):
    m = model(variant, device=device)
    x = torch.randn(2, 14, 24, dtype=torch.float64, device=device)
    w = m.blocks[0].attn.weights(x)
    assert w.shape == (2, 3, 14, 14)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 14, dtype=torch.float64, device=device))
    assert (w.triu(1) == 0).all()


def test_fourier_mixing_has_no_weights():
    with pytest.raises(RepriseError, match="no attention weights"):
        model("fourier").blocks[0].attn.weights(torch.zeros(1, 4, 24, dtype=torch.float64))


def test_causal_convolution_is_the_direct_sum():
    x, taps = torch.randn(2, 9, 4, dtype=torch.float64), torch.randn(12, 4, dtype=torch.float64)
    expected = torch.stack([sum(taps[t - s] * x[:, s] for s in range(t + 1)) for t in range(9)], 1)
    torch.testing.assert_close(causal_convolution(x, taps), expected, rtol=0, atol=1e-12)


def test_fnet_mixing_is_the_real_2d_dft_and_sees_the_future():
    x = torch.randn(6, 4, dtype=torch.float64)

    def dft(n: int) -> torch.Tensor:
        f = torch.arange(n, dtype=torch.float64)
        return torch.exp(-2j * torch.pi * f[:, None] * f[None, :] / n) / n**0.5

    expected = (dft(6) @ x.to(torch.complex128) @ dft(4)).real
    torch.testing.assert_close(fnet_mixing(x), expected, rtol=0, atol=1e-12)
    later = x.clone()
    later[5] += 1
    assert not torch.allclose(fnet_mixing(later)[0], fnet_mixing(x)[0])  # why decoders need the causal one


def test_rope_scores_depend_only_on_relative_position():
    q, k = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    freqs = frequencies(8).double()

    def score(i: int, j: int) -> torch.Tensor:
        return rotate(q[None], angles(freqs, i, 1).double()) @ rotate(k[None], angles(freqs, j, 1).double()).T

    torch.testing.assert_close(score(7, 3), score(20, 16))
    assert not torch.allclose(score(7, 3), score(7, 4))


def test_attention_options_are_validated():
    for bad, message in [
        ({"max_relative_distance": 0}, "max_relative_distance"),
        ({"block_size": 0}, "block_size"),
        ({"attention": "rope", "d_model": 15, "n_heads": 3}, "even"),
        ({"attention": "nope"}, "unknown attention"),
        ({"attention": "rope,nope"}, "unknown attention 'nope'"),
        ({"attention": "fourier,rope", "n_layers": 3}, "2 kinds for 3 layers"),
    ]:
        with pytest.raises(RepriseError, match=message):
            ModelConfig(**bad)


def test_full_attention_is_the_fused_default():
    config = ModelConfig()
    assert type(build_attention(config, config.attention)) is FullAttention


@pytest.mark.parametrize(
    "kind, attention_dropout, random",
    [("full", None, True), ("full", 0.0, False), ("relative", None, False), ("relative", 0.3, True)],
)
def test_attention_dropout_defaults_to_dropout_but_not_for_relative(kind, attention_dropout, random):
    options = dict(vocab_size=24, context=32, d_model=24, n_heads=3, attention=kind)
    layer = build_attention(ModelConfig(dropout=0.5, attention_dropout=attention_dropout, **options), kind).train()
    x = torch.randn(2, 20, 24)
    first, second = layer(x), layer(x)
    assert (not torch.equal(first, second)) is random


def test_checkpoints_that_name_relative_chunk_still_load(tmp_path):
    from reprise.data.chorale_grid import ChoraleGrid
    from reprise.models.checkpoint import load_checkpoint, save_checkpoint

    tokenizer = ChoraleGrid()
    saved = model("relative", dtype=torch.float32, vocab_size=tokenizer.vocab_size)
    save_checkpoint(tmp_path, saved, tokenizer)
    meta = json.loads((tmp_path / "model.json").read_text())
    meta["config"]["relative_chunk"] = 128  # what reprise wrote before relative attention chose its chunks
    (tmp_path / "model.json").write_text(json.dumps(meta))
    loaded, _ = load_checkpoint(tmp_path)
    ids = random_ids(2, 20, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), saved(ids), rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["relative", "local"])
def test_outputs_follow_weights_changed_in_place_without_a_version_bump(device, kind):
    """CUDA's fused foreach kernels (AdamW's, the weight average's) update weights without bumping their
    version counters; ``.data`` does the same on any device. A model scored, then changed so, then scored
    again must use the new weights (a table cached by version once kept validating stale embeddings)."""
    torch.manual_seed(7)
    cfg = ModelConfig(vocab_size=24, context=48, d_model=32, n_layers=2, n_heads=4, dropout=0.0, attention=kind)
    model = MusicTransformer(replace(cfg, block_size=16, local_relative=True)).to(device).eval()
    ids = random_ids(2, 40, seed=8, device=device)
    with torch.no_grad():
        model(ids)
        caches = model.new_caches(2, 48)
        model(ids[:, :20], caches)
        for p in model.parameters():
            p.data.add_(torch.randn_like(p) * 0.1)  # no version bump
        fresh = MusicTransformer(model.config).to(device).eval()
        fresh.load_state_dict(model.state_dict())
        torch.testing.assert_close(model(ids), fresh(ids), rtol=1e-5, atol=1e-5)
        caches = model.new_caches(2, 48)
        steps = [model(ids[:, :20], caches)] + [model(ids[:, t : t + 1], caches) for t in range(20, 40)]
        torch.testing.assert_close(torch.cat(steps, 1), fresh(ids), rtol=1e-4, atol=1e-4)
