"""Relative attention computed directly, as Shaw et al. (2018) formulated it: the reference.

For every (query ``i``, key ``k``) pair, gather the embedding of their clipped
distance into ``R`` of shape ``(groups, T, N, D_h)``, then the relative logit is
``q_i · R[i, k]``. ``R`` costs O(L²·D) memory (``D = heads · D_h`` with per-head
embeddings): 8 GiB in float32 at L = 2048, D = 512. The skewing of
``relative.py`` computes the same logits without it; this module is what the
tests compare it against, and the baseline of ``benchmarks/attention.py``.

To be a fair baseline, the logits are a custom autograd function that never
holds two ``R``-sized tensors at once: forward builds ``R`` and drops it;
backward rebuilds it for the queries' gradient, drops it, then forms ``R``'s
gradient and sums it into the table. Plain autograd would keep ``R`` for the
backward pass while making its gradient: twice the memory.
"""

from __future__ import annotations

import torch

from reprise.models.attention.full import FullAttention, distances
from reprise.models.attention.relative import RelativeAttention, RelativeEmbedding


def _grouped(x: torch.Tensor, groups: int) -> torch.Tensor:
    """``(B, H, ...)`` as ``(B, groups, H / groups, ...)``: heads that share embeddings side by side."""
    return x.unflatten(1, (groups, -1))


class _ShawLogits(torch.autograd.Function):
    """``logits[b, h, i, k] = q[b, h, i] · table[g(h), row[i, k]]`` through the explicit ``R``, in ``q``'s dtype."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, table: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(q, table, distance)
        r = table[:, distance].to(q.dtype)
        return torch.einsum("bgnid,gikd->bgnik", _grouped(q, table.shape[0]), r).flatten(1, 2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        q, table, distance = ctx.saved_tensors
        groups = table.shape[0]
        grad_q = grad_table = None
        if ctx.needs_input_grad[0]:
            r = table[:, distance].to(q.dtype)
            grad_q = torch.einsum("bgnik,gikd->bgnid", _grouped(grad, groups), r).flatten(1, 2)
            del r
        if ctx.needs_input_grad[1]:
            grad_r = torch.einsum("bgnik,bgnid->gikd", _grouped(grad, groups), _grouped(q, groups))
            grad_table = torch.zeros_like(table).index_add_(1, distance.flatten(), grad_r.flatten(1, 2).to(table.dtype))
        return grad_q, grad_table, None


class ShawRelativeEmbedding(RelativeEmbedding):
    """The same learned embeddings as :class:`RelativeEmbedding`, turned into logits the direct way."""

    def forward(self, q: torch.Tensor, n_keys: int) -> torch.Tensor:
        distance = distances(q.shape[-2], n_keys, q.device)
        if self.causal:  # keys after the query are masked: any row will do
            distance.clamp_(min=0)
        return _ShawLogits.apply(q * q.shape[-1] ** -0.5, self.distance_table(), self.rows(distance))


class ShawRelativeAttention(RelativeAttention):
    """Relative attention with the O(L²·D) direct logits (``relative-shaw``)."""

    embedding = ShawRelativeEmbedding

    attend = FullAttention.attend  # the relative logits as SDPA's additive mask
