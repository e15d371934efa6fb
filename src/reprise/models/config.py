"""The model configuration: one dataclass for the whole transformer family, and presets."""

from __future__ import annotations

from dataclasses import dataclass

from reprise.config import JsonConfig
from reprise.errors import RepriseError

POSITIONS = ("learned", "sinusoidal", "frame", "none")


@dataclass
class ModelConfig(JsonConfig):
    """Shape and kind of a decoder-only Music Transformer.

    ``positions`` chooses the absolute position signal added to token embeddings
    (``frame``: a token's place in a frame of ``frame`` tokens, e.g. its voice);
    ``attention`` chooses the self-attention mechanism (see ``reprise.models.attention``)
    of every block, or of each block in turn when it lists one kind per block
    separated by commas: ``fourier,rope,rope,rope`` is a hybrid whose first block
    mixes tokens by a learned convolution and whose others attend by content.

    Relative attention (``relative``, ``relative-shaw``, ``local`` with
    ``local_relative``) learns one embedding per distance up to
    ``max_relative_distance`` (default: ``context - 1``; longer distances share
    the last), per head or, with ``relative_shared_heads``, one set for all
    heads. (Checkpoints from before relative attention chose its own chunks of
    queries name a ``relative_chunk``; it is ignored.)
    ``local`` attends within blocks of ``block_size`` tokens and the block before.
    ``condition`` > 0: each token comes with that many features of given music
    (:mod:`reprise.data.melody_condition`), added to its embedding through a
    projection that starts at zero.
    ``transpositions`` > 0: at inference the model is a transposition ensemble
    (:mod:`reprise.models.transposition`), its predictions averaged over the piece moved
    by up to that many semitones each way; training and the stored weights are unaffected.

    ``attention_dropout`` 0 keeps dropout on the residual stream only: on CPU,
    SDPA's fused kernels have no dropout, and the unfused path trains ~1.5x slower.
    Its default is ``dropout``, except for ``relative`` attention, where it is 0.
    """

    vocab_size: int = 128
    context: int = 256
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    ff_mult: int = 4
    dropout: float = 0.1
    attention_dropout: float | None = None  # on the attention probabilities; default: dropout
    positions: str = "learned"
    frame: int = 1  # tokens per time step, for positions "frame" (the chorale grid: 4)
    attention: str = "full"
    tie_weights: bool = True
    max_relative_distance: int | None = None
    relative_shared_heads: bool = False
    block_size: int = 128
    local_relative: bool = False
    condition: int = 0  # features given beside each token (a melody to accompany), added to its embedding
    transpositions: int = 0  # at inference: average over the piece moved up to this many semitones each way

    def __post_init__(self) -> None:
        from reprise.models.attention import ATTENTION_KINDS

        if self.positions not in POSITIONS:
            raise RepriseError(f"unknown positions {self.positions!r}; choose one of {', '.join(POSITIONS)}")
        kinds = self.attention.split(",")
        unknown = [kind for kind in kinds if kind not in ATTENTION_KINDS]
        if unknown:
            raise RepriseError(f"unknown attention {unknown[0]!r}; choose one of {', '.join(ATTENTION_KINDS)}")
        if len(kinds) not in (1, self.n_layers):
            raise RepriseError(
                f"attention {self.attention!r} names {len(kinds)} kinds for {self.n_layers} layers: "
                "give one, or one per layer"
            )
        if self.frame < 1:
            raise RepriseError(f"frame must be at least 1 token, not {self.frame}")
        if self.transpositions < 0:
            raise RepriseError(f"transpositions must be 0 or more semitones, not {self.transpositions}")
        if self.d_model % self.n_heads:
            raise RepriseError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        self._check_attention_options()

    def _check_attention_options(self) -> None:
        if self.max_relative_distance is not None and self.max_relative_distance < 1:
            raise RepriseError(f"max_relative_distance must be at least 1, not {self.max_relative_distance}")
        if self.block_size < 1:
            raise RepriseError(f"block_size must be at least 1, not {self.block_size}")
        if "rope" in self.layer_attention and self.head_dim % 2:
            raise RepriseError(f"rope rotates pairs of dimensions: head_dim {self.head_dim} must be even")

    @property
    def layer_attention(self) -> list[str]:
        """The attention kind of each block, first to last."""
        kinds = self.attention.split(",")
        return kinds * self.n_layers if len(kinds) == 1 else kinds

    @property
    def attention_dropout_p(self) -> float:
        """The dropout applied to attention probabilities."""
        return self.dropout if self.attention_dropout is None else self.attention_dropout

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def relative_distance(self) -> int:
        """The longest distance with its own relative embedding."""
        return self.max_relative_distance or self.context - 1
