"""Exact negative log-likelihood of pieces under a model.

Every token of every piece after its ``BOS`` is scored exactly once. A piece
longer than the model's context is scored with a sliding window: the first
window scores all of its tokens, and each later window, moved on by ``stride``
tokens, scores only its last ``stride`` tokens, so each of them sees at least
``context - stride`` tokens of history (and up to ``context - 1``). With a
``frame`` (tokens per time step, as in the chorale grid) every window starts on
a frame boundary, as training windows do, so a model with absolute positions
sees each voice at the positions it was trained on; history is then up to
``frame - 1`` tokens shorter. The windows come from :func:`reprise.data.windows.scoring_windows`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from reprise.data.windows import scoring_windows
from reprise.models import in_eval_mode


@dataclass
class NLL:
    """Summed NLL in nats and the number of tokens it covers."""

    total: float
    tokens: int

    @property
    def per_token(self) -> float:
        return self.total / max(self.tokens, 1)

    @property
    def perplexity(self) -> float:
        return math.exp(self.per_token)


@torch.no_grad()
@in_eval_mode
def nll_of(
    model: torch.nn.Module,
    pieces: Iterable[np.ndarray],
    context: int,
    stride: int | None = None,
    batch_size: int = 16,
    frame: int = 1,
    scored: Callable[[np.ndarray], np.ndarray | None] | None = None,
    predicted: np.ndarray | None = None,
    condition: Callable[[int], np.ndarray] | None = None,
) -> NLL:
    """Summed NLL of ``pieces`` (arrays of ids, ``BOS`` first) under ``model``; windows start on ``frame``s.

    ``scored(ids)`` (a tokenizer's :meth:`~reprise.data.tokenizer.Tokenizer.scored`) may leave given
    tokens out of the count; they are still read as history. ``predicted`` (a tokenizer's
    :attr:`~reprise.data.tokenizer.Tokenizer.predicted`) leaves ids out of the softmax. ``condition(i)``
    gives a conditioned model the features beside each token of piece ``i`` (a melody to accompany).
    """
    stride = stride or max(1, context // 2)
    device = next(model.parameters()).device
    pieces = [(k, ids, scored(ids) if scored else None) for k, ids in enumerate(pieces)]
    jobs = [(p, w) for p in pieces for w in scoring_windows(len(p[1]), context, stride, frame)]
    features = functools.lru_cache(maxsize=1)(condition) if condition else None  # one piece's at a time
    total, count = 0.0, 0
    for i in range(0, len(jobs), batch_size):
        chunk = jobs[i : i + batch_size]
        width = max(end - start - 1 for _, (start, end, _) in chunk)
        inputs = torch.zeros(len(chunk), width, dtype=torch.long)
        targets = torch.full((len(chunk), width), -100, dtype=torch.long)
        given = None if features is None else torch.zeros(len(chunk), width, model.config.condition)
        for row, ((k, ids, mask), (start, end, first)) in enumerate(chunk):
            inputs[row, : end - start - 1] = torch.from_numpy(ids[start : end - 1])
            counted = ids[first:end] if mask is None else np.where(mask[first:end], ids[first:end], -100)
            targets[row, first - start - 1 : end - start - 1] = torch.from_numpy(counted)
            if given is not None:
                given[row, : end - start - 1] = torch.from_numpy(features(k)[start : end - 1])
        kwargs = {} if given is None else {"condition": given.to(device)}
        logits = only_predicted(model(inputs.to(device), **kwargs).float(), predicted)
        nll = F.cross_entropy(logits.flatten(0, 1), targets.to(device).flatten(), reduction="sum")
        total += nll.item()
        count += int((targets != -100).sum())
    return NLL(total, count)


def only_predicted(logits: torch.Tensor, predicted: np.ndarray | None) -> torch.Tensor:
    """``logits`` with the ids a model never predicts (``predicted`` false) at minus infinity."""
    if predicted is None:
        return logits
    return logits.masked_fill(~torch.from_numpy(predicted).to(logits.device), float("-inf"))


def nll_of_split(model: torch.nn.Module, dataset: Any, stride: int | None = None) -> NLL:
    """The NLL of every piece of a dataset split (a :class:`~reprise.data.dataset.TokenDataset` or one of its
    streams), counting what its tokenizer scores, with the features beside its tokens where it gives them."""
    tokenizer = dataset.tokenizer
    return nll_of(
        model,
        [dataset.piece(i) for i in range(len(dataset))],
        model.config.context,
        stride,
        frame=tokenizer.frame,
        scored=tokenizer.scored,
        predicted=tokenizer.predicted,
        condition=getattr(dataset, "condition", None),
    )
