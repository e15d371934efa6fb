"""ALiBi (Press et al., 2022): attention with linear biases instead of position embeddings.

Each head ``h`` subtracts ``slope_h · distance`` from its logits, with slopes
``2^(-8h/H)`` for ``h = 1..H``: some heads look far back, others only nearby.
Without the causal mask (an encoder) the distance is ``|distance|``, so a head
looks as far ahead as it looks back.
Nothing is learned, no embedding is added, and the bias is an additive SDPA
mask, so PyTorch's fused attention kernels still run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from reprise.models.attention.full import FullAttention, distances

if TYPE_CHECKING:
    from reprise.models.config import ModelConfig


class ALiBi(nn.Module):
    """The linear distance penalty ``(H, T, N)`` for queries that are the last of ``N`` keys."""

    def __init__(self, heads: int, causal: bool = True):
        super().__init__()
        self.causal = causal
        slopes = 2.0 ** (-8.0 * torch.arange(1, heads + 1) / heads)
        self.register_buffer("slopes", slopes[:, None, None], persistent=False)

    def forward(self, q: torch.Tensor, n_keys: int) -> torch.Tensor:
        distance = distances(q.shape[-2], n_keys, q.device)
        distance = distance.clamp_(min=0) if self.causal else distance.abs_()
        return (-self.slopes * distance).to(q.dtype)


class ALiBiAttention(FullAttention):
    """Attention with ALiBi's per-head linear distance penalty."""

    def __init__(self, config: ModelConfig, causal: bool = True):
        super().__init__(config, causal)
        self.position_bias = ALiBi(config.n_heads, causal)
