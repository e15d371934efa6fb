"""Autoregressive generation with a key/value cache.

Each new token costs one row of attention per layer instead of a forward pass
over the whole sequence. When the sequence outgrows the model's context, the
cache is rebuilt from the most recent half-context (aligned to the tokenizer's
frame, so that e.g. the chorale grid's voice order is kept) and decoding goes on.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from reprise.data.tokenizer import Tokenizer
from reprise.data.windows import slide_start
from reprise.generation.sampling import SamplingConfig, sample
from reprise.generation.strict import strict_logits
from reprise.models import in_eval_mode

# given tokens: fixed ids per new token (-1 free), or a function of the ids each sample wrote last
Forcing = np.ndarray | Callable[[np.ndarray], np.ndarray]
# given music beside the tokens: the features of tokens ``start..`` of the ``(samples, length)`` ids
Condition = Callable[[np.ndarray, int], np.ndarray]


@torch.no_grad()
@in_eval_mode
def generate(
    model: nn.Module,
    tokenizer: Tokenizer,
    primer: np.ndarray,
    n_new: int,
    num_samples: int = 1,
    sampling: SamplingConfig | None = None,
    seed: int = 0,
    use_cache: bool = True,
    on_token: Callable[[int], None] | None = None,
    forced: Forcing | None = None,
    condition: Condition | None = None,
) -> np.ndarray:
    """``(num_samples, len(primer) + n_new)`` ids continuing ``primer`` (which starts with ``BOS``).

    ``primer`` is one sequence, continued ``num_samples`` times, or a
    ``(num_samples, length)`` batch of equally long primers, one per sample.

    Special tokens are never sampled, so every sample has exactly ``n_new`` new tokens, unless
    ``sampling.end`` lets a sample end with ``EOS`` (then ``PAD`` fills the rest of its row); the
    tokenizer's :meth:`~Tokenizer.allowed_next` keeps structured encodings well-formed. ``forced``
    (``n_new`` ids, or ``(num_samples, n_new)``, ``-1`` where the model chooses) fixes given tokens,
    e.g. a melody to harmonise (constrained decoding); or a function told the id each sample wrote last
    that answers what each must write next (-1: free), for given music whose place depends on what the
    model writes (an anticipated melody, :class:`reprise.data.anticipation.MelodyAhead`). ``condition``
    gives a conditioned model the features beside the tokens it reads (a melody it accompanies,
    :class:`reprise.data.melody_condition.MelodyFollower`).
    The model runs in eval mode and is left in the mode it was in.
    ``on_token(i)`` is called after the ``i``-th new token (progress bars; an exception it raises
    stops generation, e.g. to cancel).
    """
    sampling = sampling or SamplingConfig()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    seq = torch.as_tensor(primer, dtype=torch.long, device=device)
    seq = seq.repeat(num_samples, 1) if seq.dim() == 1 else seq
    num_samples = seq.shape[0]
    context, frame = model.config.context, tokenizer.frame
    banned = torch.zeros(tokenizer.vocab_size, dtype=torch.bool, device=device)
    banned[[tokenizer.pad_id, tokenizer.bos_id] + ([] if sampling.end else [tokenizer.eos_id])] = True
    ended = torch.zeros(num_samples, dtype=torch.bool, device=device)

    start, logits = slide_start(seq.shape[1], context, frame), None
    for i in range(n_new):
        given = _given(forced, i, seq)
        if ended.all():  # every sample has ended: the rest is padding
            seq = torch.nn.functional.pad(seq, (0, n_new - i), value=tokenizer.pad_id)
            if on_token is not None:
                on_token(n_new)
            break
        if seq.shape[1] - start > context:  # the window is full: slide it
            start, logits = slide_start(seq.shape[1], context, frame), None
        if logits is None:  # prefill the window (every step when not caching)
            caches = model.new_caches(num_samples, context) if use_cache else None
            logits = model(seq[:, start:], caches, **_beside(condition, seq, start))[:, -1]
        logits = logits.masked_fill(_disallowed(tokenizer, seq.shape[1], banned), float("-inf"))
        if sampling.strict:
            logits = strict_logits(logits, seq, tokenizer)
        token = sample(logits, sampling, generator)
        if given is not None:
            token = torch.where(given >= 0, given, token)
        token = token.masked_fill(ended, tokenizer.pad_id)
        ended |= token == tokenizer.eos_id
        seq = torch.cat([seq, token[:, None]], dim=1)
        if on_token is not None:
            on_token(i + 1)
        full = seq.shape[1] - start > context
        if caches is None or full or i == n_new - 1:
            logits = None
        else:
            logits = model(token[:, None], caches, **_beside(condition, seq, seq.shape[1] - 1))[:, -1]
    return seq.cpu().numpy()


def _given(forced: Forcing | None, i: int, seq: torch.Tensor) -> torch.Tensor | None:
    """The ids forced at new token ``i`` of each sample (-1 where the model chooses), if any are."""
    if forced is None:
        return None
    ids = forced(seq[:, -1].cpu().numpy()) if callable(forced) else forced[..., i]
    return torch.as_tensor(ids, device=seq.device).expand(seq.shape[0])


def _beside(condition: Condition | None, seq: torch.Tensor, start: int) -> dict[str, torch.Tensor]:
    """The keyword that gives a conditioned model the features of tokens ``start..`` of ``seq`` (none: nothing)."""
    if condition is None:
        return {}
    return {"condition": torch.from_numpy(condition(seq.cpu().numpy(), start)).to(seq.device)}


def _disallowed(tokenizer: Tokenizer, position: int, banned: torch.Tensor) -> torch.Tensor:
    allowed = tokenizer.allowed_next(position)
    if allowed is None:
        return banned
    return banned | ~torch.from_numpy(allowed).to(banned.device)
