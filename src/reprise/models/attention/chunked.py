"""Relative attention at the memory price of ordinary attention: query chunks, hand-written backward.

The skewed path (``relative.py``) holds ``(B, H, L, L)`` logits, their softmax
and, in the backward pass, their gradients: O(L²) memory per head. Here the
queries go ``relative_chunk`` at a time, each chunk against the keys up to its
last query (so the causal upper triangle is mostly skipped), and no ``L×L``
tensor exists for all queries at once:

- forward: per chunk, the skewed relative logits become SDPA's additive mask;
  only the output ``(B, H, L, D_h)`` is kept;
- backward (as FlashAttention does): per chunk, recompute the probabilities
  ``P``, then ``dV += Pᵀ·dO``, ``dS = P ∘ (dO·Vᵀ - rowsum(dO ∘ O))``,
  ``dQ = dS·K + unskew(dS)·E``, ``dK += dSᵀ·Q``, ``dE += unskew(dS)ᵀ·Q``, where
  ``unskew`` is the adjoint of the skew.

Peak memory is O(H·C·L) for one chunk of ``C`` queries plus O(L·D) for the
sequence: linear in L. The values and gradients equal the skewed path's (tests).
The probabilities are not dropped out (dropout still acts on the block's
output): a dropout mask would have to be regenerated in the backward pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from reprise.models.attention.full import causal_mask
from reprise.models.attention.relative import RelativeAttention

if TYPE_CHECKING:
    from reprise.models.config import ModelConfig


def skew_view(rel: torch.Tensor) -> torch.Tensor:
    """:func:`~reprise.models.attention.relative.skew` as a strided view, without the pad's copy.

    ``out[..., i, k] = rel[..., i, k - i + T - 1]`` lies at offset ``i·(N - 1) + k + T - 1`` of
    each contiguous ``(T, N)`` block: rows overlap, and junk (future) entries read real ones.
    """
    *_, t, n = rel.shape
    return rel.as_strided(rel.shape, (*rel.stride()[:-2], n - 1, 1), rel.storage_offset() + t - 1)


def unskew(grad: torch.Tensor) -> torch.Tensor:
    """The adjoint of the skew: its pad, reshape and slice undone in reverse order."""
    *lead, t, n = grad.shape
    return F.pad(grad.reshape(*lead, n, t), (0, 0, 1, 0)).view(*lead, t, n + 1)[..., 1:]


def _chunks(queries: int, keys: int, size: int) -> Iterator[tuple[slice, int]]:
    """``(query rows, number of keys they see)`` for chunks of ``size`` queries, the last of ``keys``."""
    for start in range(0, queries, size):
        stop = min(start + size, queries)
        yield slice(start, stop), keys - queries + stop


def _hide_future(logits: torch.Tensor) -> torch.Tensor:
    """``-inf`` on keys after their query; only the last ``T`` keys (a ``T×T`` corner) can be."""
    t = logits.shape[-2]
    logits[..., -t:].masked_fill_(~causal_mask(t, t, logits.device), float("-inf"))
    return logits


def _relative_logits(q: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """The skewed relative logits (a strided view) of a chunk of queries, last of ``len(embeddings)`` keys."""
    return skew_view((q * q.shape[-1] ** -0.5) @ embeddings.transpose(-1, -2))


def _probabilities(q: torch.Tensor, k: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """Recomputed attention probabilities of a chunk of queries."""
    rel = _relative_logits(q, embeddings)
    logits = torch.baddbmm(rel.flatten(0, 1), q.flatten(0, 1), k.flatten(0, 1).transpose(1, 2),
                           alpha=q.shape[-1] ** -0.5)
    return _hide_future(logits.view(rel.shape)).softmax(-1)


class _ChunkedRelativeAttention(torch.autograd.Function):
    """``softmax((Q·Kᵀ + skew(Q·Eᵀ)) / sqrt(D_h)) · V``, chunk by chunk of queries."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, embeddings: torch.Tensor,
                chunk: int) -> torch.Tensor:
        out = q.new_empty(q.shape)
        for rows, n in _chunks(q.shape[-2], k.shape[-2], chunk):
            qc = q[..., rows, :]
            bias = _hide_future(_relative_logits(qc, embeddings[:, -n:]).contiguous())
            out[..., rows, :] = F.scaled_dot_product_attention(qc, k[..., :n, :], v[..., :n, :], attn_mask=bias)
        ctx.save_for_backward(q, k, v, embeddings, out)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, ...]:
        q, k, v, embeddings, out = ctx.saved_tensors
        scaled = grad_out * q.shape[-1] ** -0.5  # the logits' scale, applied once to a small tensor
        dq, dk, dv, de = (torch.zeros_like(t) for t in (q, k, v, embeddings))
        delta = (scaled * out).sum(-1, keepdim=True)
        for rows, n in _chunks(q.shape[-2], k.shape[-2], ctx.chunk):
            qc, kc, vc, ec = q[..., rows, :], k[..., :n, :], v[..., :n, :], embeddings[:, -n:]
            p = _probabilities(qc, kc, ec)
            dv[..., :n, :] += p.transpose(-1, -2) @ grad_out[..., rows, :]
            ds = (scaled[..., rows, :] @ vc.transpose(-1, -2)).sub_(delta[..., rows, :]).mul_(p)
            del p
            drel = unskew(ds)
            dq[..., rows, :] = ds @ kc + drel @ ec
            dk[..., :n, :] += ds.transpose(-1, -2) @ qc
            de[:, -n:] += (drel.transpose(-1, -2) @ qc).sum_to_size(ec.shape)
        return dq, dk, dv, de, None


class ChunkedRelativeAttention(RelativeAttention):
    """Relative attention whose training pass goes ``relative_chunk`` queries at a time.

    A single query (cached decoding) or a sequence no longer than a chunk takes the skewed path.
    """

    def __init__(self, config: "ModelConfig", causal: bool = True):
        super().__init__(config, causal)
        self.chunk = config.relative_chunk

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None or q.shape[-2] <= self.chunk:
            return super().attend(q, k, v, mask)
        embeddings = self.position_bias.embeddings(k.shape[-2])
        return _ChunkedRelativeAttention.apply(q, k, v, embeddings, self.chunk)
