"""The decoder-only Music Transformer, top to bottom.

ids -> token embedding (+ absolute positions, + projected condition features
if any) -> N pre-LayerNorm blocks of
[causal self-attention, 4x GELU feed-forward], each with a residual -> final
LayerNorm -> logits over the vocabulary. The attention mechanism is pluggable
(``reprise.models.attention``); everything else is the same for every kind.

Shapes in comments: B batch, T time (queries), S source (keys), H heads, D model width,
Dh head dim (D / H), V vocabulary.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from reprise.errors import RepriseError
from reprise.models.attention import build_attention
from reprise.models.cache import Cache
from reprise.models.config import ModelConfig
from reprise.models.positions import build_positions


class FeedForward(nn.Module):
    """Position-wise two-layer MLP with GELU."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        hidden = config.ff_mult * config.d_model
        self.net = nn.Sequential(
            nn.Linear(config.d_model, hidden),
            nn.GELU(),
            nn.Linear(hidden, config.d_model),
            nn.Dropout(config.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + ff(ln(x)); causal, or not (encoders)."""

    def __init__(self, config: ModelConfig, attention: str, causal: bool = True):
        super().__init__()
        self.ln_attn = nn.LayerNorm(config.d_model)
        self.attn = build_attention(config, attention, causal)
        self.drop = nn.Dropout(config.dropout)
        self.ln_ff = nn.LayerNorm(config.d_model)
        self.ff = FeedForward(config)

    def forward(
        self, x: torch.Tensor, cache: Cache | None = None, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``key_mask`` ``(B, T)``, false on padding, is for encoders (non-causal attention)."""
        h = self.ln_attn(x)
        x = x + self.drop(self.attn(h, cache) if key_mask is None else self.attn(h, key_mask=key_mask))
        return x + self.ff(self.ln_ff(x))


class MusicTransformer(nn.Module):
    """Autoregressive language model over music tokens."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.positions = build_positions(config.positions, config.context, config.d_model, config.frame)
        self.condition = nn.Linear(config.condition, config.d_model, bias=False) if config.condition else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, kind) for kind in config.layer_attention)
        self.ln_out = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_weights:
            self.head.weight = self.embed.weight
        self.apply(self._init_weights)
        for name, param in self.named_parameters():  # GPT-2: keep the residual stream's variance flat
            if name.endswith(("attn.proj.weight", "net.2.weight")):
                nn.init.normal_(param, std=0.02 / math.sqrt(2 * config.n_layers))
        if self.condition is not None:  # a model grown from one without a condition starts as that model
            nn.init.zeros_(self.condition.weight)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(
        self, ids: torch.Tensor, caches: list[Cache] | None = None, condition: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits ``(B, T, V)`` for ids ``(B, T)`` (and, for a conditioned model, features ``(B, T, F)``).

        With ``caches`` (from :meth:`new_caches`) the ids continue the cached
        sequence, and only their logits are computed.
        """
        start = caches[0].length if caches else 0
        x = self.embed(ids)
        if self.condition is not None:
            if condition is None:
                raise RepriseError("this model accompanies given music: it needs its condition features")
            x = x + self.condition(condition.to(x.dtype))
        if self.positions is not None:
            x = x + self.positions(start, ids.shape[1])
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, caches[i] if caches else None)
        return self.head(self.ln_out(x))

    def new_caches(self, batch: int, capacity: int) -> list[Cache]:
        """Empty per-layer caches for incremental decoding of up to ``capacity`` tokens."""
        param = self.embed.weight
        return [b.attn.new_cache(batch, capacity, param.device, param.dtype) for b in self.blocks]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
