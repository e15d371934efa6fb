"""Cross-attention: a decoder's queries against an encoder's output (its *memory*).

Each decoder token asks the whole conditioning sequence (the soprano, the
melody, the piece around a gap) what it needs; no causal mask, since the memory
is given in full before decoding starts. Keys and values depend on the memory
only, so cached decoding computes them once per piece (:class:`CrossCache`) and
each new token costs one row of attention. Positions enter through the shared
time signal both sides add to their embeddings (``reprise.models.encoder_decoder``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from reprise.models.config import ModelConfig


class CrossCache:
    """The memory's keys and values for one decoder layer, filled on first use."""

    def __init__(self) -> None:
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None


class CrossAttention(nn.Module):
    """Multi-head attention from ``(B, T, D)`` queries to ``(B, S, D)`` memory, through SDPA."""

    def __init__(self, config: "ModelConfig"):
        super().__init__()
        self.n_heads = config.n_heads
        self.query = nn.Linear(config.d_model, config.d_model)
        self.key_value = nn.Linear(config.d_model, 2 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.attention_dropout_p

    def _heads(self, x: torch.Tensor, parts: int) -> torch.Tensor:
        """``(B, T, parts * D)`` -> ``(parts, B, H, T, D/H)``."""
        b, t, _ = x.shape
        return x.view(b, t, parts, self.n_heads, -1).permute(2, 0, 3, 1, 4)

    def memory_keys(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values ``(B, H, S, D/H)`` of the memory."""
        keys, values = self._heads(self.key_value(memory), 2)
        return keys, values

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None = None,
                cache: CrossCache | None = None) -> torch.Tensor:
        """``memory_mask`` ``(B, S)`` is false on padding; with ``cache`` the memory's keys are computed once."""
        if cache is None:
            keys, values = self.memory_keys(memory)
        else:
            if cache.keys is None:
                cache.keys, cache.values = self.memory_keys(memory)
            keys, values = cache.keys, cache.values
        q = self._heads(self.query(x), 1)[0]
        mask = None if memory_mask is None else memory_mask[:, None, None, :]
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        b, h, t, hd = y.shape
        return self.proj(y.transpose(1, 2).reshape(b, t, h * hd))
