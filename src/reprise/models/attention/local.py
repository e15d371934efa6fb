"""Local attention (the Music Transformer's): blocks that see themselves and the block before.

Non-causal (an encoder's), a block also sees the block after it.

The sequence is cut into blocks of ``block_size`` tokens; a query attends,
causally, to the keys of its own block and of the previous one. Cost and memory
are O(L·block) instead of O(L²), and a decoding cache needs only the last two
blocks. With ``local_relative`` the logits add the skewed relative term of
``relative.py`` (distances up to ``2·block - 1``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from reprise.errors import RepriseError
from reprise.models.attention.full import FullAttention, causal_mask, require_causal
from reprise.models.attention.relative import RelativeEmbedding
from reprise.models.cache import LocalCache

if TYPE_CHECKING:
    from reprise.models.config import ModelConfig


class LocalAttention(FullAttention):
    """Block-local attention, optionally with relative logits.

    Causal, a block sees itself and the block before; not causal (an encoder), it
    sees the block before, itself and the block after.
    """

    def __init__(self, config: ModelConfig, causal: bool = True):
        super().__init__(config, causal)
        self.block = config.block_size
        if config.local_relative:
            if not causal:
                raise RepriseError("local attention's relative logits have no non-causal (encoder) mode yet")
            self.position_bias = RelativeEmbedding.from_config(config)

    def forward(
        self, x: torch.Tensor, cache: LocalCache | None = None, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        q, k, v = self.split_heads(x)
        if cache is None or cache.length == 0:  # a whole sequence: block by block
            if cache is not None:
                cache.append(k, v)
            return self.merge_heads(self.blocked(q, k, v, key_mask))
        steps = [
            self.attend(q[..., i : i + 1, :], *cache.append(k[..., i : i + 1, :], v[..., i : i + 1, :]))
            for i in range(q.shape[-2])
        ]  # each new token against its window (all of it visible)
        return self.merge_heads(torch.cat(steps, -2))

    def blocked(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Local attention of whole sequences ``(B, H, T, D_h)``: each block's queries against its window's keys.

        ``key_mask`` ``(B, T)`` (false on padding) is for the non-causal mode, where keys come after queries.
        """
        t, size = q.shape[-2], self.block
        blocks = -(-t // size)
        pad = blocks * size - t

        def split(x: torch.Tensor) -> torch.Tensor:  # (B, H, T, D_h) -> (B, blocks, H, size, D_h)
            return F.pad(x, (0, 0, 0, pad)).unflatten(-2, (blocks, size)).transpose(1, 2)

        if self.causal:

            def window(x: torch.Tensor) -> torch.Tensor:  # (B, blocks, H, 2 size, D_h): previous and own block
                return torch.cat([F.pad(x, (0, 0, 0, 0, 0, 0, 1, 0))[:, :-1], x], -2)

            mask = causal_mask(size, 2 * size, q.device).repeat(blocks, 1, 1, 1)
            mask[0, ..., :size] = False  # the first block has no previous block
        else:

            def window(x: torch.Tensor) -> torch.Tensor:  # (B, blocks, H, 3 size, D_h): previous, own and next
                padded = F.pad(x, (0, 0, 0, 0, 0, 0, 1, 1))
                return torch.cat([padded[:, :-2], x, padded[:, 2:]], -2)

            mask = self._bidirectional_mask(t, blocks, key_mask, q.device)
        y = self.attend(split(q), window(split(k)), window(split(v)), mask)
        return y.transpose(1, 2).flatten(2, 3)[..., :t, :]

    def _bidirectional_mask(
        self, t: int, blocks: int, key_mask: torch.Tensor | None, device: torch.device
    ) -> torch.Tensor:
        """``(B or 1, blocks, 1, size, 3 size)``: keys that exist and are not padding, and always the query itself.

        A query must see at least one key (else SDPA returns NaN), hence itself even when it is padding.
        """
        size = self.block
        key_position = (torch.arange(blocks, device=device)[:, None] - 1) * size + torch.arange(3 * size, device=device)
        valid = (key_position >= 0) & (key_position < t)  # (blocks, 3 size)
        if key_mask is not None:
            real = F.pad(key_mask, (size, blocks * size - t + size))  # one block of margin on each side
            valid = valid & real[:, key_position + size]  # (B, blocks, 3 size)
        query_position = torch.arange(blocks, device=device)[:, None] * size + torch.arange(size, device=device)
        itself = key_position[:, None, :] == query_position[:, :, None]  # (blocks, size, 3 size)
        return (valid[..., None, :] | itself).unsqueeze(-3)

    def pair_mask(self, length: int, device: torch.device) -> torch.Tensor:
        """Pairs within the query's window: from its previous block's start to itself, or to its next block's end."""
        block = torch.arange(length, device=device) // self.block
        if not self.causal:
            return (block[None, :] - block[:, None]).abs() <= 1
        return super().pair_mask(length, device) & (block[None, :] >= block[:, None] - 1)

    def new_cache(self, batch: int, capacity: int, device, dtype) -> LocalCache:
        require_causal(self)
        return LocalCache(self.block)
