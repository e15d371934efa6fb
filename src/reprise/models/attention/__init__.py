"""Self-attention mechanisms, one file per idea, chosen by ``ModelConfig.attention``.

Every mechanism is a module ``forward(x, cache=None) -> y`` over ``(batch, time,
d_model)`` that never lets a position see later positions, plus
``new_cache(batch, capacity, device, dtype)`` for fast incremental decoding (a
cache object with a ``length`` attribute: the number of tokens decoded so far)
and ``weights(x) -> (batch, heads, time, time)`` attention probabilities for
visualisation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from reprise.models.attention.full import FullAttention

if TYPE_CHECKING:
    from reprise.models.config import ModelConfig

ATTENTION_KINDS: dict[str, type[nn.Module]] = {
    "full": FullAttention,
}


def build_attention(config: "ModelConfig") -> nn.Module:
    """The attention module that ``config.attention`` names."""
    return ATTENTION_KINDS[config.attention](config)
