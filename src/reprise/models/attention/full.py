"""Multi-head self-attention through PyTorch's fused SDPA kernels: causal, or not (encoders).

:class:`FullAttention` is also the base of the kinds that differ from it in one
place: what positions add to the logits (``position_bias``: relative attention,
ALiBi), how queries and keys are made (``split_heads``: RoPE), or which pairs
may attend (``pair_mask``: local attention).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from reprise.errors import RepriseError
from reprise.models.cache import KVCache

if TYPE_CHECKING:
    from reprise.models.config import ModelConfig


def causal_mask(queries: int, keys: int, device: torch.device) -> torch.Tensor:
    """Boolean ``(queries, keys)`` mask for the last ``queries`` of ``keys`` positions."""
    return torch.ones(queries, keys, dtype=torch.bool, device=device).tril(keys - queries)


def distances(queries: int, keys: int, device: torch.device) -> torch.Tensor:
    """``(queries, keys)`` distances ``query position - key position`` for the last ``queries`` of ``keys``.

    Negative for keys after the query (the pairs a causal mask removes).
    """
    positions = torch.arange(keys, device=device)
    return positions[keys - queries :, None] - positions[None, :]


def require_causal(module: nn.Module) -> None:
    """Refuse a decoding cache to a non-causal module: every new token would change the past."""
    if not module.causal:
        raise RepriseError(f"{type(module).__name__} is non-causal (an encoder's): it has no decoding cache")


class FullAttention(nn.Module):
    """Every position attends to itself and all earlier positions (``causal``), or to all positions.

    ``position_bias``, when set, is a module ``(queries, n_keys) -> logits`` whose
    output is added to the scaled dot products ``q·k / sqrt(head_dim)``; the
    queries are always the last of the ``n_keys`` positions. A non-causal module
    (an encoder's) takes ``key_mask`` ``(B, N)``, false on padding keys, and has no
    decoding cache.
    """

    def __init__(self, config: ModelConfig, causal: bool = True):
        super().__init__()
        self.causal = causal
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.attention_dropout_p
        self.position_bias: nn.Module | None = None

    def split_heads(self, x: torch.Tensor, start: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Project ``(B, T, D)`` at positions ``start...`` to queries, keys and values ``(B, H, T, D/H)``."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        return q, k, v

    def merge_heads(self, y: torch.Tensor) -> torch.Tensor:
        """``(B, H, T, D/H)`` back to ``(B, T, D)``, through the output projection."""
        b, h, t, hd = y.shape
        return self.proj(y.transpose(1, 2).reshape(b, t, h * hd))

    def forward(
        self, x: torch.Tensor, cache: KVCache | None = None, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        start = 0 if cache is None else cache.length
        q, k, v = self.split_heads(x, start)
        if cache is not None:
            k, v = cache.append(k, v)
        mask = None if key_mask is None else key_mask[:, None, None, :]
        if mask is not None and self.causal:
            mask = mask & causal_mask(q.shape[-2], k.shape[-2], x.device)
        return self.merge_heads(self.attend(q, k, v, mask))

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """SDPA for queries that are the last ``T`` of the ``N`` keys.

        ``mask`` marks the ``(T, N)`` pairs that may attend (default: the causal
        ones, or all of them when not causal). Without a mask or position bias
        this is a fused kernel.
        """
        t, n = q.shape[-2], k.shape[-2]
        dropout = self.dropout if self.training else 0.0
        bias = None if self.position_bias is None else self.position_bias(q, n)
        if bias is None and mask is None and (t == n or t == 1 or not self.causal):
            return F.scaled_dot_product_attention(q, k, v, is_causal=self.causal and t == n, dropout_p=dropout)
        if mask is None and self.causal:
            mask = causal_mask(t, n, q.device)
        if bias is not None:
            mask = bias if mask is None else bias.masked_fill(~mask, float("-inf"))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)

    def pair_mask(self, length: int, device: torch.device) -> torch.Tensor:
        """Which ``(query, key)`` pairs of a ``length``-token sequence may attend: the causal ones, or all."""
        if not self.causal:
            return torch.ones(length, length, dtype=torch.bool, device=device)
        return causal_mask(length, length, device)

    @torch.no_grad()
    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Attention probabilities ``(B, H, T, T)`` for input ``x`` (for visualisation; no dropout)."""
        q, k, _ = self.split_heads(x)
        t = q.shape[-2]
        scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
        if self.position_bias is not None:
            scores = scores + self.position_bias(q, t)
        return scores.masked_fill(~self.pair_mask(t, x.device), float("-inf")).softmax(-1)

    def new_cache(self, batch: int, capacity: int, device, dtype) -> KVCache:
        require_causal(self)
        head_dim = self.qkv.out_features // 3 // self.n_heads
        return KVCache(batch, self.n_heads, capacity, head_dim, device, dtype)
