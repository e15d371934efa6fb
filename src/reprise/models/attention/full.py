"""Causal multi-head self-attention through PyTorch's fused SDPA kernels."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from reprise.models.cache import KVCache

if TYPE_CHECKING:
    from reprise.models.config import ModelConfig


def causal_mask(queries: int, keys: int, device: torch.device) -> torch.Tensor:
    """Boolean ``(queries, keys)`` mask for the last ``queries`` of ``keys`` positions."""
    return torch.ones(queries, keys, dtype=torch.bool, device=device).tril(keys - queries)


class FullAttention(nn.Module):
    """Every position attends to itself and all earlier positions."""

    def __init__(self, config: "ModelConfig"):
        super().__init__()
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout

    def split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Project ``(B, T, D)`` to queries, keys and values of shape ``(B, H, T, D/H)``."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        return q, k, v

    def merge_heads(self, y: torch.Tensor) -> torch.Tensor:
        """``(B, H, T, D/H)`` back to ``(B, T, D)``, through the output projection."""
        b, h, t, hd = y.shape
        return self.proj(y.transpose(1, 2).reshape(b, t, h * hd))

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        q, k, v = self.split_heads(x)
        if cache is not None:
            past = cache.length
            k, v = cache.append(k, v)
        else:
            past = 0
        dropout = self.dropout if self.training else 0.0
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
        else:  # new queries after a cached past; a single query may see every key
            mask = None if q.shape[2] == 1 else causal_mask(q.shape[2], k.shape[2], x.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return self.merge_heads(y)

    @torch.no_grad()
    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Attention probabilities ``(B, H, T, T)`` for input ``x`` (for visualisation; no dropout)."""
        q, k, _ = self.split_heads(x)
        scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
        mask = causal_mask(q.shape[2], k.shape[2], x.device)
        return scores.masked_fill(~mask, float("-inf")).softmax(-1)

    def new_cache(self, batch: int, capacity: int, device, dtype) -> KVCache:
        head_dim = self.qkv.out_features // 3 // self.n_heads
        return KVCache(batch, self.n_heads, capacity, head_dim, device, dtype)
