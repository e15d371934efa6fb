"""Local attention (the Music Transformer's): blocks that see themselves and the block before.

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

from reprise.models.attention.full import FullAttention, causal_mask
from reprise.models.attention.relative import RelativeEmbedding
from reprise.models.cache import LocalCache

if TYPE_CHECKING:
    from reprise.models.config import ModelConfig


class LocalAttention(FullAttention):
    """Block-local causal attention, optionally with relative logits."""

    def __init__(self, config: "ModelConfig", causal: bool = True):
        super().__init__(config, causal)
        self.block = config.block_size
        if config.local_relative:
            self.position_bias = RelativeEmbedding.from_config(config)

    def forward(self, x: torch.Tensor, cache: LocalCache | None = None) -> torch.Tensor:
        q, k, v = self.split_heads(x)
        if cache is None or cache.length == 0:  # a whole sequence: block by block
            if cache is not None:
                cache.append(k, v)
            return self.merge_heads(self.blocked(q, k, v))
        steps = [self.attend(q[..., i : i + 1, :], *cache.append(k[..., i : i + 1, :], v[..., i : i + 1, :]))
                 for i in range(q.shape[-2])]  # each new token against its window (all of it visible)
        return self.merge_heads(torch.cat(steps, -2))

    def blocked(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Local attention of whole sequences ``(B, H, T, D_h)``: each block's queries against two blocks' keys."""
        t, size = q.shape[-2], self.block
        blocks = -(-t // size)

        def split(x: torch.Tensor) -> torch.Tensor:  # (B, H, T, D_h) -> (B, blocks, H, size, D_h)
            return F.pad(x, (0, 0, 0, blocks * size - t)).unflatten(-2, (blocks, size)).transpose(1, 2)

        def with_previous(x: torch.Tensor) -> torch.Tensor:  # (B, blocks, H, 2 size, D_h)
            return torch.cat([F.pad(x, (0, 0, 0, 0, 0, 0, 1, 0))[:, :-1], x], -2)

        mask = causal_mask(size, 2 * size, q.device).repeat(blocks, 1, 1, 1)
        mask[0, ..., :size] = False  # the first block has no previous block
        y = self.attend(split(q), with_previous(split(k)), with_previous(split(v)), mask)
        return y.transpose(1, 2).flatten(2, 3)[..., :t, :]

    def pair_mask(self, length: int, device: torch.device) -> torch.Tensor:
        """Causal pairs whose key is no earlier than the start of the query's previous block."""
        position = torch.arange(length, device=device)
        window_start = (position // self.block - 1) * self.block
        return super().pair_mask(length, device) & (position[None, :] >= window_start[:, None])

    def new_cache(self, batch: int, capacity: int, device, dtype) -> LocalCache:
        return LocalCache(self.block)
