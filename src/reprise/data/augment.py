"""Data augmentation as plain functions on a training window's ids: transposition and time stretch.

How far to transpose and by which factors to stretch are training choices
(:class:`reprise.training.config.TrainConfig` holds them), so they live here and
not in the tokenizer; the tokenizer only says what its ids allow, through two
hooks: :meth:`~reprise.data.tokenizer.Tokenizer.transpose_bounds` /
:meth:`~reprise.data.tokenizer.Tokenizer.transposed`, and, for tokenizers whose
ids carry time (``stretches_time``), :meth:`~reprise.data.tokenizer.Tokenizer.stretched`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reprise.data.tokenizer import Tokenizer

DEFAULT_TRANSPOSE = 3  # semitones either way
DEFAULT_STRETCHES = (0.95, 0.975, 1.0, 1.025, 1.05)


def transpose(ids: np.ndarray, tokenizer: Tokenizer, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """``ids`` moved by a shift drawn uniformly from ``-max_shift..max_shift`` among those that keep every
    pitch inside the tokenizer's range (unchanged when nothing else fits or nothing is pitched)."""
    bounds = tokenizer.transpose_bounds(ids)
    if bounds is None:
        return ids
    down, up = max(-max_shift, bounds[0]), min(max_shift, bounds[1])
    return tokenizer.transposed(ids, int(rng.integers(down, up + 1))) if down <= up else ids


def time_stretch(
    ids: np.ndarray, tokenizer: Tokenizer, factors: Sequence[float], rng: np.random.Generator
) -> np.ndarray:
    """``ids`` with time scaled by a factor drawn from ``factors``, for tokenizers whose ids carry time.

    The result may be longer or shorter; the dataset cuts or pads it to the window's length.
    """
    if not tokenizer.stretches_time:
        return ids
    return tokenizer.stretched(ids, float(rng.choice(factors)))


@dataclass(frozen=True)
class Augmentation:
    """The random variation applied to every training window: a transposition, then a time stretch."""

    max_transpose: int = DEFAULT_TRANSPOSE
    stretches: tuple[float, ...] = DEFAULT_STRETCHES

    def __call__(self, ids: np.ndarray, tokenizer: Tokenizer, rng: np.random.Generator) -> np.ndarray:
        return time_stretch(transpose(ids, tokenizer, self.max_transpose, rng), tokenizer, self.stretches, rng)
