"""The key/value cache that makes sampling one token cost one row of attention."""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values of one attention layer for every token decoded so far.

    Storage is allocated once for ``capacity`` tokens so that appending a token
    never copies the past.
    """

    def __init__(self, batch: int, heads: int, capacity: int, head_dim: int, device, dtype):
        self.keys = torch.empty(batch, heads, capacity, head_dim, device=device, dtype=dtype)
        self.values = torch.empty_like(self.keys)
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.keys.shape[2]

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``(batch, heads, new, head_dim)`` keys and values; return all of them so far."""
        end = self.length + keys.shape[2]
        if end > self.capacity:
            raise ValueError(f"KV cache holds {self.capacity} tokens; {end} requested")
        self.keys[:, :, self.length : end] = keys
        self.values[:, :, self.length : end] = values
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]
