"""Rotary position embeddings (RoPE, Su et al., 2021).

Queries and keys are rotated, pair of dimensions by pair, by angles
``position · frequency`` (the sinusoidal frequencies). A rotation by ``a`` then
by ``-b`` is a rotation by ``a - b``, so ``q_i·k_j`` depends on the positions only
through ``i - j``: relative positions with no change to attention itself, which
stays PyTorch's fused causal SDPA. Keys are cached already rotated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from reprise.models.attention.full import FullAttention
from reprise.models.positions import angles, frequencies

if TYPE_CHECKING:
    from reprise.models.config import ModelConfig


def rotate(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rotate ``(x_i, x_(i + D/2))`` by ``theta[..., i]`` for ``x`` ``(..., T, D)`` and ``theta`` ``(..., T, D/2)``
    (broadcast against ``x``)."""
    cos, sin = (torch.cat([f(theta)] * 2, -1).to(x.dtype) for f in (torch.cos, torch.sin))
    first, second = x.chunk(2, -1)
    return x * cos + torch.cat([-second, first], -1) * sin


class RotaryAttention(FullAttention):
    """Attention over rotated queries and keys (causal or not: the rotation does not care)."""

    def __init__(self, config: ModelConfig, causal: bool = True):
        super().__init__(config, causal)
        self.register_buffer("freqs", frequencies(config.head_dim), persistent=False)

    def split_heads(self, x: torch.Tensor, start: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v = super().split_heads(x, start)
        theta = angles(self.freqs, start, x.shape[1])
        return rotate(q, theta), rotate(k, theta), v
