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
from reprise.models.attention.relative import RelativeAttention, skewed_logits

if TYPE_CHECKING:
    from reprise.models.config import ModelConfig


def unskew(grad: torch.Tensor) -> torch.Tensor:
    """The adjoint of :func:`~reprise.models.attention.relative.skew`: its steps undone in reverse order."""
    *lead, t, n = grad.shape
    return F.pad(grad.reshape(*lead, n, t), (0, 0, 1, 0)).view(*lead, t, n + 1)[..., 1:]


def _chunks(queries: int, keys: int, size: int) -> Iterator[tuple[slice, int]]:
    """``(query rows, number of keys they see)`` for chunks of ``size`` queries, the last of ``keys``."""
    for start in range(0, queries, size):
        stop = min(start + size, queries)
        yield slice(start, stop), keys - queries + stop


def _bias(q: torch.Tensor, embeddings: torch.Tensor, n_keys: int) -> torch.Tensor:
    """Skewed relative logits of a chunk of queries, with ``-inf`` on future keys."""
    rel = skewed_logits(q, embeddings[:, -n_keys:])
    return rel.masked_fill_(~causal_mask(q.shape[-2], n_keys, q.device), float("-inf"))


class _ChunkedRelativeAttention(torch.autograd.Function):
    """``softmax((Q·Kᵀ + skew(Q·Eᵀ)) / sqrt(D_h)) · V``, chunk by chunk of queries."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, embeddings: torch.Tensor,
                chunk: int) -> torch.Tensor:
        out = q.new_empty(q.shape)
        for rows, n in _chunks(q.shape[-2], k.shape[-2], chunk):
            qc = q[..., rows, :]
            out[..., rows, :] = F.scaled_dot_product_attention(
                qc, k[..., :n, :], v[..., :n, :], attn_mask=_bias(qc, embeddings, n))
        ctx.save_for_backward(q, k, v, embeddings, out)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, ...]:
        q, k, v, embeddings, out = ctx.saved_tensors
        scale = q.shape[-1] ** -0.5
        dq, dk, dv, de = (torch.zeros_like(t) for t in (q, k, v, embeddings))
        delta = (grad_out * out).sum(-1, keepdim=True)
        for rows, n in _chunks(q.shape[-2], k.shape[-2], ctx.chunk):
            qc, kc, vc, ec, go = q[..., rows, :], k[..., :n, :], v[..., :n, :], embeddings[:, -n:], grad_out[..., rows, :]
            p = torch.add(_bias(qc, embeddings, n), qc @ kc.transpose(-1, -2), alpha=scale).softmax(-1)
            dv[..., :n, :] += p.transpose(-1, -2) @ go
            ds = (go @ vc.transpose(-1, -2)).sub_(delta[..., rows, :]).mul_(p).mul_(scale)
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

    def __init__(self, config: "ModelConfig"):
        super().__init__(config)
        self.chunk = config.relative_chunk

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None or q.shape[-2] <= self.chunk:
            return super().attend(q, k, v, mask)
        embeddings = self.position_bias.embeddings(k.shape[-2])
        return _ChunkedRelativeAttention.apply(q, k, v, embeddings, self.chunk)
