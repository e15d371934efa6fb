"""The attention family: each kind against an independent reference, causality, caching, gradients."""

from __future__ import annotations

import pytest
import torch

from reprise.errors import RepriseError
from reprise.models.attention import ATTENTION_KINDS, build_attention
from reprise.models.attention.chunked import _ChunkedRelativeAttention
from reprise.models.attention.fourier import causal_convolution, fnet_mixing
from reprise.models.attention.full import FullAttention
from reprise.models.attention.relative import RelativeEmbedding
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
    "relative-chunked": {"attention": "relative", "relative_chunk": 7},
    "relative-shaw": {},
    "local": {"block_size": 6},
    "local-relative": {"attention": "local", "block_size": 6, "local_relative": True},
    "fourier": {},
    "rope": {},
    "alibi": {},
    "hybrid": {"attention": "fourier,rope"},  # one kind per block
}


def config(variant: str, **overrides) -> ModelConfig:
    options = {"attention": variant, **VARIANTS[variant], **overrides}
    return ModelConfig(
        vocab_size=24, context=32, d_model=24, n_layers=2, n_heads=3, dropout=0.0, positions="none", **options
    )


def model(variant: str, dtype=torch.float64, **overrides) -> MusicTransformer:
    torch.manual_seed(0)
    return MusicTransformer(config(variant, **overrides)).to(dtype).eval()


def test_every_kind_is_tested():
    assert {k for v in VARIANTS for k in VARIANTS[v].get("attention", v).split(",")} == set(ATTENTION_KINDS)


def shaw_reference(q: torch.Tensor, table: torch.Tensor, n_keys: int) -> torch.Tensor:
    """Shaw et al.'s relative logits by explicit loops over query/key pairs (no code shared with reprise)."""
    b, h, t, d = q.shape
    out = torch.zeros(b, h, t, n_keys, dtype=q.dtype)
    for i in range(t):
        for k in range(n_keys - t + i + 1):
            distance = min(n_keys - t + i - k, table.shape[1] - 1)
            out[:, :, i, k] = (q[:, :, i] * table[:, distance]).sum(-1) / d**0.5
    return out


@pytest.mark.parametrize("heads,groups", [(1, 1), (4, 4), (4, 1)])
@pytest.mark.parametrize("queries,keys", [(1, 1), (5, 5), (9, 9), (3, 11), (1, 8)])
@pytest.mark.parametrize("max_distance", [1, 3, 20])
def test_skewed_and_shaw_logits_equal_the_definition(heads, groups, queries, keys, max_distance):
    torch.manual_seed(0)
    skewed = RelativeEmbedding(groups, 6, max_distance).double()
    shaw = ShawRelativeEmbedding(groups, 6, max_distance).double()
    shaw.load_state_dict(skewed.state_dict())
    q = torch.randn(2, heads, queries, 6, dtype=torch.float64)
    visible = torch.ones(queries, keys, dtype=torch.bool).tril(keys - queries)
    expected = shaw_reference(q, skewed.table.detach(), keys)
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
    )


def _with_table(module: RelativeEmbedding, table: torch.Tensor) -> RelativeEmbedding:
    clone = module.__class__(table.shape[0], table.shape[2], table.shape[1] - 1).double()
    del clone.table
    clone.table = table
    return clone


@pytest.mark.parametrize("queries,keys,chunk", [(8, 8, 3), (6, 9, 4), (5, 5, 5)])
def test_chunked_backward_passes_gradcheck(queries, keys, chunk):
    torch.manual_seed(3)
    q = torch.randn(1, 2, queries, 3, dtype=torch.float64, requires_grad=True)
    k, v = (torch.randn(1, 2, keys, 3, dtype=torch.float64, requires_grad=True) for _ in range(2))
    embeddings = torch.randn(2, keys, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: _ChunkedRelativeAttention.apply(*a, chunk), (q, k, v, embeddings))


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("length", [7, 20, 32])
def test_chunked_path_equals_skewed_path_values_and_gradients(shared, length):
    options = {"relative_shared_heads": shared, "max_relative_distance": 9}
    skewed, chunked = model("relative", **options), model("relative-chunked", **options)
    chunked.load_state_dict(skewed.state_dict())
    ids = torch.randint(0, 24, (2, length), generator=torch.Generator().manual_seed(length))
    outputs = []
    for m in (skewed, chunked):
        logits = m(ids)
        (logits * torch.linspace(-1, 1, 24, dtype=logits.dtype)).sum().backward()
        outputs.append((logits, {n: p.grad for n, p in m.named_parameters()}))
    torch.testing.assert_close(outputs[0][0], outputs[1][0], rtol=0, atol=1e-12)
    for name, grad in outputs[0][1].items():
        torch.testing.assert_close(grad, outputs[1][1][name], rtol=0, atol=1e-12, msg=name)


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_future_leak(variant):
    m = model(variant)
    ids = torch.randint(0, 24, (2, 30), generator=torch.Generator().manual_seed(0))
    changed = ids.clone()
    changed[:, 17:] = (changed[:, 17:] + 5) % 24
    before, after = m(ids), m(changed)
    torch.testing.assert_close(before[:, :17], after[:, :17], rtol=0, atol=1e-12)
    assert (before[:, 17:] - after[:, 17:]).abs().max() > 1e-3  # the model does read its input


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_decoding_equals_full_forward(variant):
    m = model(variant)
    ids = torch.randint(0, 24, (2, 31), generator=torch.Generator().manual_seed(1))
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
def test_gradients_reach_every_parameter(variant):
    m = model(variant, dtype=torch.float32).train()
    ids = torch.randint(0, 24, (2, 30), generator=torch.Generator().manual_seed(2))
    torch.nn.functional.cross_entropy(m(ids).flatten(0, 1), ids.roll(-1, 1).flatten()).backward()
    for name, param in m.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v not in ("fourier", "hybrid")])
def test_weights_are_causal_distributions(variant):
    m = model(variant)
    x = torch.randn(2, 14, 24, dtype=torch.float64)
    w = m.blocks[0].attn.weights(x)
    assert w.shape == (2, 3, 14, 14)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 14, dtype=torch.float64))
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
        ({"relative_chunk": -1}, "relative_chunk"),
        ({"attention": "full", "relative_chunk": 64}, "applies to attention 'relative'"),
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


@pytest.mark.parametrize("attention_dropout, random", [(None, True), (0.0, False)])
def test_attention_dropout_defaults_to_dropout_and_can_be_turned_off(attention_dropout, random):
    options = dict(vocab_size=24, context=32, d_model=24, n_heads=3, attention="relative")
    layer = build_attention(
        ModelConfig(dropout=0.5, attention_dropout=attention_dropout, **options), "relative"
    ).train()
    x = torch.randn(2, 20, 24)
    first, second = layer(x), layer(x)
    assert (not torch.equal(first, second)) is random
