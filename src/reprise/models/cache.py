"""Decoding caches: what one layer keeps from the tokens decoded so far.

Every cache is a :class:`Cache`: it has ``length``, the number of tokens decoded
so far, from which the model reads the position offset of new tokens. The five
kinds: :class:`TensorCache` (Fourier mixing), :class:`KVCache` (attention),
:class:`LocalCache` (local attention), the LSTM's state and the Markov chain's
history.

Shapes in comments: B batch, T time (queries), S source (keys), H heads, D model width,
Dh head dim (D / H), V vocabulary.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Cache(Protocol):
    """What every decoding cache offers the model: how many tokens it has seen."""

    @property
    def length(self) -> int: ...


class TensorCache:
    """Rows (along dimension -2) of one tensor for every token decoded so far.

    Storage is allocated once for ``capacity`` rows so that appending a token
    never copies the past.
    """

    def __init__(self, shape: tuple[int, ...], device, dtype):
        self.storage = torch.empty(shape, device=device, dtype=dtype)
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.storage.shape[-2]

    def append(self, rows: torch.Tensor) -> torch.Tensor:
        """Store ``(..., new, width)`` rows; return all rows so far."""
        end = self.length + rows.shape[-2]
        if end > self.capacity:
            raise ValueError(f"cache holds {self.capacity} tokens; {end} requested")
        self.storage[..., self.length : end, :] = rows
        self.length = end
        return self.storage[..., :end, :]


class KVCache:
    """Keys and values ``(B, H, T, Dh)`` of one attention layer.

    ``heads_first`` stores them ``(H, B, T, Dh)`` (and returns transposed views), for
    attention that groups the batch under each head.
    """

    def __init__(self, batch: int, heads: int, capacity: int, head_dim: int, device, dtype, heads_first: bool = False):
        shape = (heads, batch, capacity, head_dim) if heads_first else (batch, heads, capacity, head_dim)
        self.heads_first = heads_first
        self.keys = TensorCache(shape, device, dtype)
        self.values = TensorCache(shape, device, dtype)

    @property
    def length(self) -> int:
        return self.keys.length

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store new keys and values; return all of them so far."""
        if self.heads_first:
            keys, values = self.keys.append(keys.transpose(0, 1)), self.values.append(values.transpose(0, 1))
            return keys.transpose(0, 1), values.transpose(0, 1)
        return self.keys.append(keys), self.values.append(values)


class LocalCache:
    """Keys and values of local attention: at most the last two blocks.

    A token at position ``t`` sees the keys from the start of the block before
    its own, ``(t // block - 1) * block``, up to itself; older keys are dropped.
    ``length`` still counts every token decoded, for the model's position offset.
    """

    def __init__(self, block: int):
        self.block = block
        self.length = 0
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store new ``(batch, heads, new, head_dim)`` keys and values; return the window of the last one."""
        end = self.length + keys.shape[-2]
        if self.keys is not None:
            keys, values = torch.cat([self.keys, keys], -2), torch.cat([self.values, values], -2)
        window_start = max(0, ((end - 1) // self.block - 1) * self.block)
        first = end - keys.shape[-2]  # the position of keys[..., 0, :]
        # clone: a slice would keep a long prefill's whole tensor alive
        self.keys = keys[..., window_start - first :, :].clone()
        self.values = values[..., window_start - first :, :].clone()
        self.length = end
        return self.keys, self.values
