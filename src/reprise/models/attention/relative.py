"""Relative self-attention with the Music Transformer's skewing (Huang et al., 2018).

Music is made of relations: an interval, a rhythm, a motif return the same
wherever they occur. Relative attention lets a logit depend on how far apart a
query and a key are, not on where they are, so it works without any absolute
position signal (``--positions none``).

Shaw et al. (2018) add to each logit ``q_i·k_j`` a term ``q_i·r_(i-j)``, with
``r_d`` a learned embedding per distance ``d``, clipped at a maximum distance.
Computed directly (``relative_shaw.py``), that needs an ``(L, L, D_h)`` tensor of
embeddings per head. The Music Transformer's observation: with ``E`` the
``(L, D_h)`` embeddings of distances ``L-1, ..., 1, 0``, every term needed is an
entry of ``Q·Eᵀ`` (``L×L``), only in the wrong column: row ``i`` holds the term
for distance ``d`` at column ``L-1-d``, while key ``k = i-d`` wants it at
column ``k``. The *skew* moves every row into place with one pad, one reshape
and one slice: no ``L×L×D_h`` gather, only the ``L×L`` logits::

    S_rel = skew(Q·Eᵀ);   attention = softmax((Q·Kᵀ + S_rel) / sqrt(D_h)) · V

Embeddings are learned per layer, per head or shared by all heads
(``relative_shared_heads``). During cached decoding a new query needs one row of
``Q·Eᵀ``: O(t·D_h) per head and step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from reprise.errors import RepriseError
from reprise.models.attention.full import FullAttention

if TYPE_CHECKING:
    from reprise.models.config import ModelConfig


def skew(rel: torch.Tensor) -> torch.Tensor:
    """Move each relative logit to the key it belongs to.

    ``rel[..., i, j] = q_i·e_(N-1-j)`` for ``T`` queries that are the last of
    ``N`` keys. Returns ``out[..., i, k] = rel[..., i, k - i + T - 1]``: the
    term of query ``i`` (position ``N - T + i``) for the distance to key ``k``.
    Entries of keys after the query are junk, for the causal mask to remove.
    Padding one column on the left and reading the ``(T, N + 1)`` block as
    ``(N + 1, T)`` shifts row ``i`` by ``T - 1 - i``; after the pad, only views.
    """
    *lead, t, n = rel.shape
    padded = F.pad(rel, (1, 0))
    return padded.view(*lead, n + 1, t)[..., 1:, :].view(*lead, t, n)


def skewed_logits(q: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """``skew(Q·Eᵀ) / sqrt(D_h)`` for queries ``(..., H, T, D_h)`` and embeddings ``(G, N, D_h)``, G in {1, H}."""
    return skew((q * q.shape[-1] ** -0.5) @ embeddings.transpose(-1, -2))


class RelativeEmbedding(nn.Module):
    """Learned embeddings of distances ``0..max_distance``; the skewed relative logits.

    ``table[g, d]`` is distance ``d``'s embedding for head group ``g`` (one group
    per head, or one for all heads); longer distances share ``max_distance``'s.
    """

    def __init__(self, groups: int, head_dim: int, max_distance: int):
        super().__init__()
        self.max_distance = max_distance
        self.table = nn.Parameter(torch.randn(groups, max_distance + 1, head_dim) * 0.02)

    @classmethod
    def from_config(cls, config: "ModelConfig") -> "RelativeEmbedding":
        groups = 1 if config.relative_shared_heads else config.n_heads
        return cls(groups, config.head_dim, config.relative_distance)

    def embeddings(self, n_keys: int) -> torch.Tensor:
        """``(G, n_keys, D_h)``: row ``j`` embeds distance ``n_keys - 1 - j`` (clipped)."""
        distance = torch.arange(n_keys - 1, -1, -1, device=self.table.device).clamp_(max=self.max_distance)
        return self.table[:, distance]

    def forward(self, q: torch.Tensor, n_keys: int) -> torch.Tensor:
        """Relative logits ``(..., T, n_keys)``, scaled like ``q·k / sqrt(D_h)``."""
        return skewed_logits(q, self.embeddings(n_keys))


class RelativeAttention(FullAttention):
    """Causal attention whose logits add the skewed relative term (then PyTorch's SDPA)."""

    embedding: type[RelativeEmbedding] = RelativeEmbedding

    def __init__(self, config: "ModelConfig", causal: bool = True):
        if not causal:
            raise RepriseError("relative attention has no non-causal (encoder) mode yet: "
                               "give the encoder full, rope, alibi, local or fourier attention")
        super().__init__(config, causal)
        self.position_bias = self.embedding.from_config(config)
