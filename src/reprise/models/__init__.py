"""The model family: the Music Transformer and the baselines it is measured against.

Every model maps ids ``(B, T)`` to next-token logits ``(B, T, V)``, optionally
continuing a decoding state from ``new_caches``, and has a ``config`` dataclass
whose ``architecture`` names it in checkpoints. The encoder-decoder also reads
the source it is conditioned on (``encoder_decoder.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from reprise.errors import RepriseError
from reprise.models.config import ModelConfig
from reprise.models.encoder_decoder import EncoderDecoder, EncoderDecoderConfig
from reprise.models.lstm import LSTMConfig, LSTMLanguageModel
from reprise.models.markov import MarkovChain, MarkovConfig
from reprise.models.transformer import MusicTransformer

ARCHITECTURES: dict[str, tuple[type, type[nn.Module]]] = {
    "music-transformer": (ModelConfig, MusicTransformer),
    "lstm": (LSTMConfig, LSTMLanguageModel),
    "markov": (MarkovConfig, MarkovChain),
    "encoder-decoder": (EncoderDecoderConfig, EncoderDecoder),
}


def architecture_of(config: Any) -> str:
    """The name under which ``config``'s model is stored in checkpoints."""
    for name, (config_class, _) in ARCHITECTURES.items():
        if type(config) is config_class:  # exactly: the encoder-decoder's config is also a ModelConfig
            return name
    raise TypeError(f"not a model config: {config!r}")


def build_model(config: Any) -> nn.Module:
    """A freshly initialised model for ``config``."""
    return ARCHITECTURES[architecture_of(config)][1](config)


def config_from_json(architecture: str, data: dict[str, Any]) -> Any:
    """The config of a stored model."""
    if architecture not in ARCHITECTURES:
        raise RepriseError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture][0].from_json(data)


F = TypeVar("F", bound=Callable[..., Any])


def in_eval_mode(function: F) -> F:
    """Decorator for functions whose first argument is a model: run it in eval mode (no dropout), then
    put the model back in the mode it was in, even if the function raises."""

    @functools.wraps(function)
    def wrapper(model: nn.Module, *args: Any, **kwargs: Any) -> Any:
        was_training = model.training
        model.eval()
        try:
            return function(model, *args, **kwargs)
        finally:
            model.train(was_training)

    return wrapper  # type: ignore[return-value]
