"""Turning next-token logits into a choice: temperature, top-k and nucleus (top-p) sampling."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SamplingConfig:
    """``temperature`` < 1 sharpens, > 1 flattens; ``top_k=0`` and ``top_p=1`` switch those filters off.

    ``end`` lets the model end a piece (sample ``EOS``) where it would, instead of writing on to the
    length asked for: a chorale that has reached its final cadence then stops rather than holding its
    last chord for bars (docs/quality.md). ``strict`` rules out parallel fifths, octaves and voice
    crossings as each voice of a chorale grid is chosen (:mod:`.strict`): an option that hides what
    the model would write, so never a default.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    end: bool = False
    strict: bool = False


def filter_logits(logits: torch.Tensor, config: SamplingConfig) -> torch.Tensor:
    """Scaled logits ``(batch, vocab)`` with the tokens outside top-k / top-p set to ``-inf``."""
    logits = logits / max(config.temperature, 1e-6)
    if config.top_k > 0:
        kth = torch.topk(logits, min(config.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if config.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cumulative - sorted_logits.softmax(-1) >= config.top_p  # keep the token that crosses p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample(logits: torch.Tensor, config: SamplingConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row of ``logits``."""
    probs = filter_logits(logits.float(), config).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
