"""The LSTM language model: the recurrent baseline that Music Transformers are compared with.

ids -> embedding -> stacked LSTM (dropout between layers) -> logits. It offers
the same interface as the transformer (``forward(ids, caches)``,
``new_caches``), so training, sampling and scoring treat both alike; its
"cache" is the recurrent state, which is all an LSTM needs to continue.

Shapes in comments: B batch, T time (queries), S source (keys), H heads, D model width,
Dh head dim (D / H), V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from reprise.config import JsonConfig
from reprise.errors import RepriseError


@dataclass
class LSTMConfig(JsonConfig):
    """Shape of the LSTM; ``context`` is the training window length (the LSTM itself has no limit)."""

    vocab_size: int = 128
    context: int = 256
    d_embed: int = 128
    hidden: int = 512
    n_layers: int = 2
    dropout: float = 0.2
    tie_weights: bool = False

    def __post_init__(self) -> None:
        if self.tie_weights and self.d_embed != self.hidden:
            raise RepriseError(f"tie_weights needs d_embed == hidden ({self.d_embed} != {self.hidden})")


class LSTMState:
    """The recurrent state after ``length`` tokens (the LSTM's counterpart of a KV cache)."""

    def __init__(self) -> None:
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None
        self.length = 0


class LSTMLanguageModel(nn.Module):
    """Autoregressive LSTM over music tokens."""

    def __init__(self, config: LSTMConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_embed)
        self.drop = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(
            config.d_embed,
            config.hidden,
            config.n_layers,
            batch_first=True,
            dropout=config.dropout if config.n_layers > 1 else 0.0,
        )
        self.head = nn.Linear(config.hidden, config.vocab_size)
        if config.tie_weights:
            self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor, caches: list[LSTMState] | None = None) -> torch.Tensor:
        """Logits ``(batch, time, vocab)``; with ``caches`` the ids continue the cached state."""
        state = caches[0].state if caches else None
        out, state = self.lstm(self.drop(self.embed(ids)), state)
        if caches:
            caches[0].state, caches[0].length = state, caches[0].length + ids.shape[1]
        return self.head(self.drop(out))

    def new_caches(self, batch: int, capacity: int) -> list[LSTMState]:
        """A fresh recurrent state (``batch`` and ``capacity`` need no storage up front)."""
        return [LSTMState()]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
