"""Frame-aligned windows: the one place that decides which slice of a long sequence a model sees.

A *frame* is the number of tokens that describe one time step (4 for the chorale
grid: soprano, alto, tenor, bass; 1 for most tokenizers). A window that starts
on a frame boundary shows every token at the position it has in training, so a
model with absolute positions, or a tokenizer whose slots alternate (voices),
reads it the same way. Training crops (:func:`crop_start`), exact scoring
(:func:`scoring_windows`), generation's sliding window (:func:`slide_start`)
and attention plots (:func:`reading_windows`) all take their windows from here.
"""

from __future__ import annotations

import numpy as np


def aligned_down(position: int, frame: int) -> int:
    """The frame boundary at or before ``position``."""
    return position - position % frame


def aligned_up(position: int, frame: int) -> int:
    """The frame boundary at or after ``position``."""
    return position + (-position) % frame


def crop_start(length: int, context: int, frame: int, rng: np.random.Generator) -> int:
    """Where a random training window of ``context + 1`` ids starts in a piece of ``length`` ids.

    It starts at ``BOS`` (0) or on a frame boundary, uniformly over the starts
    that leave at least one target, so every token is equally likely to be seen.
    """
    n_starts = 1 + max(0, length - 1 - context + frame - 1) // frame
    return 0 if n_starts == 1 else int(rng.integers(n_starts)) * frame


def scoring_windows(length: int, context: int, stride: int, frame: int = 1) -> list[tuple[int, int, int]]:
    """``(start, end, first_scored)`` windows that score ids ``[1, length)`` exactly once.

    A window feeds ids ``[start, end - 1)`` and predicts ``[start + 1, end)``; of
    those it counts the targets at index ``first_scored`` and later. Each later
    window moves on by ``stride`` tokens; a stride longer than a window can score
    once its start is aligned (``context - frame + 1``) is shortened to that,
    so that no token is skipped.
    """
    if length <= context + 1:
        return [(0, length, 1)]
    stride = max(1, min(stride, context - frame + 1))
    out = [(0, context + 1, 1)]
    scored_until = context + 1
    while scored_until < length:
        end = min(scored_until + stride, length)
        out.append((aligned_up(end - context - 1, frame), end, scored_until))
        scored_until = end
    return out


def slide_start(length: int, context: int, frame: int) -> int:
    """Where generation's attended window starts: 0 while it fits, else the last half-context on a frame boundary.

    The window then stays put, growing token by token, until it fills the
    context again; cached and uncached decoding slide it at the same steps.
    """
    if length <= context:
        return 0
    return aligned_down(length - max(frame, context // 2), frame)


def reading_windows(length: int, context: int, frame: int) -> list[tuple[int, int, np.ndarray]]:
    """``(start, stop, queries)``: windows that hop by half a context (on frame boundaries) over ``length`` ids,
    each with the positions whose attention it reports (each query from the window that shows it the most history).
    """
    hop = max(frame, aligned_down(context // 2, frame))
    window_of = np.maximum(0, (np.arange(length) - context) // hop + 1)
    return [
        (int(k) * hop, min(length, int(k) * hop + context), np.flatnonzero(window_of == k))
        for k in np.unique(window_of)
    ]
