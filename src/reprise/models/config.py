"""The model configuration: one dataclass for the whole transformer family, and presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from reprise import RepriseError

POSITIONS = ("learned", "sinusoidal", "none")


@dataclass
class ModelConfig:
    """Shape and kind of a decoder-only Music Transformer.

    ``positions`` chooses the absolute position signal added to token embeddings;
    ``attention`` chooses the self-attention mechanism (see ``reprise.models.attention``).
    """

    vocab_size: int = 128
    context: int = 256
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    ff_mult: int = 4
    dropout: float = 0.1
    positions: str = "learned"
    attention: str = "full"
    tie_weights: bool = True

    def __post_init__(self) -> None:
        from reprise.models.attention import ATTENTION_KINDS

        if self.positions not in POSITIONS:
            raise RepriseError(f"unknown positions {self.positions!r}; choose one of {', '.join(POSITIONS)}")
        if self.attention not in ATTENTION_KINDS:
            raise RepriseError(
                f"unknown attention {self.attention!r}; choose one of {', '.join(ATTENTION_KINDS)}"
            )
        if self.d_model % self.n_heads:
            raise RepriseError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


PRESETS: dict[str, dict[str, Any]] = {
    # trains in a few minutes on a 2-core laptop CPU
    "tiny": dict(context=256, d_model=128, n_layers=4, n_heads=4, dropout=0.1),
    # an hour or so on a CPU, minutes on a GPU
    "small": dict(context=512, d_model=256, n_layers=6, n_heads=8, dropout=0.1),
    # the Music Transformer paper's size class; wants a GPU
    "base": dict(context=1024, d_model=512, n_layers=8, n_heads=8, dropout=0.1),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A preset configuration, with any field overridden (``None`` values are ignored)."""
    if name not in PRESETS:
        raise RepriseError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    config = ModelConfig(**PRESETS[name])
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})
