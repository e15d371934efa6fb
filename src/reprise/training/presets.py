"""Named starting points: a model shape and the training settings that go with it.

``reprise train --preset NAME``, the JSB benchmark and ``reprise demo`` all read
their settings from :data:`PRESETS`; options given on top override single fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from reprise.errors import RepriseError
from reprise.models.config import ModelConfig
from reprise.training.config import TrainConfig


@dataclass(frozen=True)
class Preset:
    """A model shape (fields of :class:`ModelConfig`) and training settings (fields of :class:`TrainConfig`)."""

    description: str
    model: dict[str, Any]
    train: dict[str, Any] = field(default_factory=dict)

    def model_config(self, **overrides: Any) -> ModelConfig:
        """The model configuration, with any field overridden (``None`` values are ignored)."""
        return replace(ModelConfig(**self.model), **{k: v for k, v in overrides.items() if v is not None})

    def train_config(self, **overrides: Any) -> TrainConfig:
        """The training configuration: defaults, then this preset's settings, then ``overrides``."""
        return TrainConfig(**{**self.train, **overrides})


_TINY = dict(context=256, d_model=128, n_layers=4, n_heads=4, dropout=0.1)

PRESETS: dict[str, Preset] = {
    "tiny": Preset("trains in a few minutes on a 2-core laptop CPU", _TINY),
    "small": Preset(
        "an hour or so on a CPU, minutes on a GPU", dict(context=512, d_model=256, n_layers=6, n_heads=8, dropout=0.1)
    ),
    "base": Preset(
        "the Music Transformer paper's size class; wants a GPU",
        dict(context=1024, d_model=512, n_layers=8, n_heads=8, dropout=0.1),
    ),
    "jsb-best": Preset(
        "the best JSB Chorales model for 60 minutes of a 2-core CPU (docs/results.md)",
        dict(
            context=1024,
            d_model=128,
            n_layers=6,
            n_heads=4,
            dropout=0.1,
            attention_dropout=0.0,
            positions="frame",
            frame=4,
            attention="rope",
        ),
        dict(
            steps=1_000_000,
            max_minutes=60.0,
            batch_size=2,
            lr=3e-3,
            warmup=100,
            eval_every=1000,
            weight_decay=0.5,
            max_transpose=6,
            ema_decay=0.998,
            precision="bf16",
        ),
    ),
    # measured on 2 cores: in a few minutes relative attention without dropout or
    # transposition learns fastest (0.66 nats/token after 2 minutes vs 1.21 for tiny)
    "demo": Preset(
        "what `reprise demo` trains: tiny with relative attention, for a few minutes",
        {**_TINY, "attention": "relative", "positions": "none", "dropout": 0.0},
        dict(steps=100_000, batch_size=8, lr=2e-3, warmup=50, eval_every=250, augment=False),
    ),
}


def preset(name: str) -> Preset:
    """The preset called ``name``; a :class:`RepriseError` listing the known ones otherwise."""
    if name not in PRESETS:
        raise RepriseError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
