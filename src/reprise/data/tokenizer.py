"""What every tokenizer offers the rest of the pipeline, and the registry of them.

A tokenizer turns music into a sequence of integer ids and back. Training,
sampling and evaluation only see ids, so they work with any tokenizer that
implements this interface; the registry lets a checkpoint name the tokenizer it
was trained with and rebuild it from JSON.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import symusic

from reprise import RepriseError


class Tokenizer(ABC):
    """Maps pieces of music to id sequences (``BOS ... EOS``) and back.

    ``frame`` is the number of tokens that describe one time step; training
    windows start on frame boundaries so a model always sees whole steps.
    """

    name: ClassVar[str]
    pad_id: ClassVar[int] = 0
    bos_id: ClassVar[int] = 1
    eos_id: ClassVar[int] = 2
    frame: int = 1

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of distinct ids, special tokens included."""

    @abstractmethod
    def token_names(self) -> list[str]:
        """A readable name for every id, in id order (for plots and debugging)."""

    @abstractmethod
    def decode(self, ids: np.ndarray) -> symusic.Score:
        """Turn ids (with or without BOS/EOS) into a score that can be saved as MIDI."""

    @abstractmethod
    def encode_midi(self, path: Path) -> np.ndarray:
        """Read a MIDI file into ids, ``BOS`` first and without ``EOS`` (a primer)."""

    @abstractmethod
    def to_json(self) -> dict[str, Any]:
        """Everything needed to rebuild this tokenizer, including its ``name``."""

    @classmethod
    @abstractmethod
    def from_json(cls, data: dict[str, Any]) -> "Tokenizer":
        """Rebuild a tokenizer saved with :meth:`to_json`."""

    def tokens_per_bar(self) -> int | None:
        """How many tokens one bar takes, where that is fixed (grids); else ``None``."""
        return None

    def allowed_next(self, position: int) -> np.ndarray | None:
        """Boolean mask of ids that may stand at ``position`` (0 is BOS), or ``None`` for any.

        Sampling uses it to keep structured encodings well-formed, e.g. so that the
        chorale grid's soprano slot only ever receives a soprano pitch.
        """
        return None

    def augment(self, ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A randomly varied copy of a training window (identity unless overridden)."""
        return ids


_REGISTRY: dict[str, type[Tokenizer]] = {}


def register(cls: type[Tokenizer]) -> type[Tokenizer]:
    """Class decorator that makes a tokenizer loadable by name from JSON."""
    _REGISTRY[cls.name] = cls
    return cls


def tokenizer_from_json(data: dict[str, Any]) -> Tokenizer:
    """Rebuild whichever tokenizer ``data`` describes."""
    name = data.get("name")
    if name not in _REGISTRY:
        raise RepriseError(f"unknown tokenizer {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name].from_json(data)
