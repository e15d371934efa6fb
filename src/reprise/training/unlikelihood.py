"""Unlikelihood training against the faults Bach avoids and a chorale model learns slowly.

Maximum likelihood spends its effort where the tokens are: on the chorale grid most
tokens repeat the pitch before them, so a model can score well and still, at the
moments a chord changes, give real probability to parallel fifths and octaves, or
hold a chord for bars. Unlikelihood training (Welleck et al. 2019, "Neural Text
Generation with Unlikelihood Training") adds ``-log(1 - p(bad))`` for the set of
choices known to be bad at each position: here the ids that would make a parallel
fifth or octave with a voice already written at that step, or cross one of those
voices, and the id of the step's last voice (the bass, in S, A, T, B order) that would
hold a chord past a bar
(:mod:`reprise.evaluation.voice_leading`). The true next token is never in the set, so
where Bach wrote a parallel or crossed two voices it is learnt as usual.

That teaches the model in Bach's contexts; its own samples reach states Bach never
does (a chord already held for a bar), where it was never corrected. The *sampled*
term (Welleck et al.'s sequence-level unlikelihood) continues a few training windows
with the model itself, as `reprise generate` samples, and applies the same loss to the
continuation, this time penalising what the model sampled too.

Bach's windows hold a chord past a bar at about 100 of 55,000 training steps, so the stall
term has almost nothing to act on there. The *held* term builds those states for every
window: its steps up to a random one, then that step's chord held on, where the last voice is
penalised for holding it past a bar (the model's samples stall exactly so: all four voices held on).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from reprise.data.chorale_grid import STEPS_PER_BAR, ChoraleGrid
from reprise.errors import RepriseError
from reprise.evaluation.voice_leading import crossing_choices, frame_chords, parallel_choices, stalling_choices
from reprise.generation.generate import generate
from reprise.training.config import TrainConfig

LONGEST_CHORD = STEPS_PER_BAR  # steps a chord may last: one more is a stall in the report (Bach's 95th percentile)
SAMPLED_EVERY = 4  # steps between sampled continuations: sampling costs about three training steps
PRIMER_STEPS, SAMPLED_STEPS = 32, 64  # a continuation: two bars of the window, then four bars sampled
HELD_STEPS = LONGEST_CHORD + 4  # a held continuation: the chord ending the primer, held this many steps more


def check_unlikelihood(tokenizer: object, context: int, option: str = "--unlikelihood") -> None:
    """A clear error when the unlikelihood loss of ``option`` (``--sampled-unlikelihood`` and
    ``--held-unlikelihood``: on continuations of the training windows) cannot apply to this data or model."""
    if not isinstance(tokenizer, ChoraleGrid):
        raise RepriseError(f"{option} needs chorale-grid data, not {tokenizer.name}")
    if context % 4:
        raise RepriseError(f"{option} needs a context that is a multiple of 4 (whole steps), not {context}")
    continued = {"--sampled-unlikelihood": SAMPLED_STEPS, "--held-unlikelihood": HELD_STEPS}.get(option)
    steps = PRIMER_STEPS + (continued or 0)
    if continued and context < 4 * steps:
        raise RepriseError(f"{option} needs a context of at least {4 * steps} tokens ({steps} steps), not {context}")


def unlikelihood_terms(
    config: TrainConfig,
    step: int,
    logits: torch.Tensor,
    targets: torch.Tensor,
    samplers: tuple[nn.Module, nn.Module],
    windows: torch.Tensor,
    tokenizer: ChoraleGrid,
    seed: int,
) -> torch.Tensor | float:
    """The weighted unlikelihood terms of a training micro-batch: on its targets, on held continuations
    of its ``windows``, and every :data:`SAMPLED_EVERY` steps on sampled ones (``samplers``: the model,
    and the module that runs it with gradients); ``0.0`` when every weight is 0."""
    loss = 0.0
    if config.unlikelihood:
        loss = loss + config.unlikelihood * unlikelihood_loss(logits, targets, tokenizer)
    if config.held_unlikelihood:
        loss = loss + config.held_unlikelihood * held_unlikelihood_loss(samplers[1], windows, tokenizer, seed)
    if config.sampled_unlikelihood and step % SAMPLED_EVERY == 0:
        loss = loss + config.sampled_unlikelihood * sampled_unlikelihood_loss(*samplers, windows, tokenizer, seed)
    return loss


def unlikelihood_loss(
    logits: torch.Tensor, targets: torch.Tensor, tokenizer: ChoraleGrid, written: torch.Tensor | None = None
) -> torch.Tensor:
    """The summed unlikelihood term of a batch of windows (``targets`` start on a soprano token).

    ``logits`` is ``(batch, tokens, ids)`` for ``targets`` ``(batch, tokens)``. By default the targets
    are music (Bach's): they are never penalised. ``written`` (``(batch, tokens)``, true where a target
    is the model's own sample) scores only those positions, penalising a bad sampled target as well.
    """
    batch, tokens, ids = logits.shape
    pitches = torch.as_tensor(tokenizer.id_pitches(), device=targets.device)
    grid = frame_chords(pitches[targets].view(batch, tokens // 4, 4), tokenizer.soprano_ahead)
    bad = parallel_choices(grid, pitches) | crossing_choices(grid, pitches, tokenizer.slot_voices)
    bad |= stalling_choices(grid, pitches, LONGEST_CHORD)
    if tokenizer.soprano_ahead:
        bad[:, :, 0] = False  # the soprano is given: its choices are not the model's to avoid
    bad = bad.view(batch, tokens, ids)
    if written is None:
        bad.scatter_(-1, targets[..., None], False)  # what Bach wrote is never penalised
    p_bad = (logits.float().softmax(dim=-1) * bad).sum(dim=-1).clamp(max=1 - 1e-6)
    scored = (targets != tokenizer.pad_id) & (True if written is None else written)
    return -torch.log1p(-p_bad)[scored].sum()


def sampled_unlikelihood_loss(
    model: nn.Module, forward: nn.Module, windows: torch.Tensor, tokenizer: ChoraleGrid, seed: int
) -> torch.Tensor:
    """The unlikelihood term on the model's own continuations of ``windows`` (``(batch, tokens)``
    training inputs, the first a step's last token): :data:`PRIMER_STEPS` of each window, then
    :data:`SAMPLED_STEPS` sampled at temperature 1 (a given soprano kept, as harmonising keeps it).

    ``model`` samples (without gradients); ``forward`` (the same weights, perhaps wrapped for several
    processes) scores the continuations.
    """
    primer_tokens, new = 1 + 4 * PRIMER_STEPS, 4 * SAMPLED_STEPS
    primer = windows[:, :primer_tokens].cpu().numpy()
    forced = None
    if tokenizer.soprano_ahead:  # the window's own soprano, every other voice the model's
        forced = np.full((len(primer), new), -1, dtype=np.int64)
        soprano = windows[:, primer_tokens : primer_tokens + new : 4].cpu().numpy()
        forced[:, ::4] = np.where(soprano >= tokenizer.silence_id, soprano, -1)  # past the end: the model's
    seq = torch.as_tensor(generate(model, tokenizer, primer, new, seed=seed, forced=forced), device=windows.device)
    written = torch.zeros_like(seq[:, 1:], dtype=torch.bool)
    written[:, primer_tokens - 1 :] = True
    return unlikelihood_loss(forward(seq[:, :-1]), seq[:, 1:], tokenizer, written)


def held_unlikelihood_loss(
    forward: nn.Module, windows: torch.Tensor, tokenizer: ChoraleGrid, seed: int
) -> torch.Tensor:
    """The unlikelihood term on stalls: each of ``windows`` (training inputs, the first a step's last token)
    up to a random step, at least :data:`PRIMER_STEPS` in and anywhere up to its end, then the chord of that
    step held :data:`HELD_STEPS` steps more, scored on the held steps only. Past a bar (counting the steps
    the chord had already lasted) the last voice's hold is the bad choice, and it is penalised though it is
    the target. The cut is random because what is learnt after a short primer does not carry to the
    hundreds of steps a written chorale has behind it."""
    rng = np.random.default_rng(seed)
    music = (windows[:, 1:] >= tokenizer.silence_id).cpu().numpy()
    whole = music[:, : music.shape[1] // 4 * 4].reshape(len(windows), -1, 4).all(axis=-1).cumprod(axis=1).sum(axis=1)
    most = (windows.shape[1] - 1) // 4 - HELD_STEPS
    cuts = [int(rng.integers(min(PRIMER_STEPS, n, most), min(n, most) + 1)) for n in whole]
    seq = torch.full((len(windows), 1 + 4 * (max(cuts) + HELD_STEPS)), tokenizer.pad_id, device=windows.device)
    written = torch.zeros_like(seq[:, 1:], dtype=torch.bool)
    for row, steps in enumerate(cuts):
        if steps:
            primer = windows[row, : 1 + 4 * steps]
            seq[row, : len(primer) + 4 * HELD_STEPS] = torch.cat([primer, primer[-4:].repeat(HELD_STEPS)])
            written[row, 4 * steps : 4 * (steps + HELD_STEPS)] = True
    return unlikelihood_loss(forward(seq[:, :-1]), seq[:, 1:], tokenizer, written)
