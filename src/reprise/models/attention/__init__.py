"""Self-attention mechanisms, one file per idea, chosen by ``ModelConfig.attention``
(one kind for every block, or one per block).

Every mechanism is a module ``forward(x, cache=None) -> y`` over ``(batch, time,
d_model)`` that never lets a position see later positions, plus
``new_cache(batch, capacity, device, dtype)`` for fast incremental decoding (a
cache object with a ``length`` attribute: the number of tokens decoded so far)
and ``weights(x) -> (batch, heads, time, time)`` attention probabilities for
visualisation.

- ``full``: causal SDPA (``full.py``);
- ``relative``: the Music Transformer's skewed relative attention, query-chunked with a
  hand-written backward (``relative.py``);
- ``relative-shaw``: the direct O(L²·D) formulation, the reference (``relative_shaw.py``);
- ``local``: blocks attending to themselves and the previous block (``local.py``);
- ``fourier``: FNet-style Fourier mixing, made causal (``fourier.py``);
- ``rope``, ``alibi``: rotary embeddings and linear biases, on fused SDPA (``rope.py``, ``alibi.py``).

Built with ``causal=False`` (an encoder's bidirectional attention), a module lets
every position see every other, takes ``forward(x, key_mask=...)`` (false on
padding keys) and has no cache. Cross-attention
from a decoder to an encoder is ``cross.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from reprise.models.attention.alibi import ALiBiAttention
from reprise.models.attention.fourier import FourierMixing
from reprise.models.attention.full import FullAttention
from reprise.models.attention.local import LocalAttention
from reprise.models.attention.relative import RelativeAttention
from reprise.models.attention.relative_shaw import ShawRelativeAttention
from reprise.models.attention.rope import RotaryAttention

if TYPE_CHECKING:
    from reprise.models.config import ModelConfig

ATTENTION_KINDS: dict[str, type[nn.Module]] = {
    "full": FullAttention,
    "relative": RelativeAttention,
    "relative-shaw": ShawRelativeAttention,
    "local": LocalAttention,
    "fourier": FourierMixing,
    "rope": RotaryAttention,
    "alibi": ALiBiAttention,
}


def build_attention(config: ModelConfig, kind: str, causal: bool = True) -> nn.Module:
    """The attention module of ``kind``, one of ``ATTENTION_KINDS``, shaped by ``config``; ``causal`` or not."""
    return ATTENTION_KINDS[kind](config, causal)
