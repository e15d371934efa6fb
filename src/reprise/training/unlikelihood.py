"""Unlikelihood training against the faults Bach avoids and a chorale model learns slowly.

Maximum likelihood spends its effort where the tokens are: on the chorale grid most
tokens repeat the pitch before them, so a model can score well and still, at the
moments a chord changes, give real probability to parallel fifths and octaves, or
hold a chord for bars. Unlikelihood training (Welleck et al. 2019, "Neural Text
Generation with Unlikelihood Training") adds ``-log(1 - p(bad))`` for the set of
choices known to be bad at each position: here the ids that would make a parallel
fifth or octave with a voice already written at that step, or sound above one of
those voices (a crossing), and the bass id that would hold a chord past a bar
(:mod:`reprise.evaluation.voice_leading`). The true next token is never in the set, so
where Bach wrote a parallel or crossed two voices it is learnt as usual.
"""

from __future__ import annotations

import torch

from reprise.data.chorale_grid import STEPS_PER_BAR, ChoraleGrid
from reprise.errors import RepriseError
from reprise.evaluation.voice_leading import crossing_choices, frame_chords, parallel_choices, stalling_choices

LONGEST_CHORD = STEPS_PER_BAR  # steps a chord may last: one more is a stall in the report (Bach's 95th percentile)


def check_unlikelihood(tokenizer: object, context: int) -> None:
    """A clear error when the unlikelihood loss cannot apply to this data or model."""
    if not isinstance(tokenizer, ChoraleGrid):
        raise RepriseError(f"--unlikelihood needs chorale-grid data, not {tokenizer.name}")
    if context % 4:
        raise RepriseError(f"--unlikelihood needs a context that is a multiple of 4 (whole steps), not {context}")


def unlikelihood_loss(logits: torch.Tensor, targets: torch.Tensor, tokenizer: ChoraleGrid) -> torch.Tensor:
    """The summed unlikelihood term of a batch of windows (``targets`` start on a soprano token).

    ``logits`` is ``(batch, tokens, ids)`` for ``targets`` ``(batch, tokens)``.
    """
    batch, tokens, ids = logits.shape
    pitches = torch.as_tensor(tokenizer.id_pitches(), device=targets.device)
    grid = frame_chords(pitches[targets].view(batch, tokens // 4, 4), tokenizer.soprano_ahead)
    bad = parallel_choices(grid, pitches) | crossing_choices(grid, pitches)
    bad |= stalling_choices(grid, pitches, LONGEST_CHORD)
    if tokenizer.soprano_ahead:
        bad[:, :, 0] = False  # the soprano is given: its choices are not the model's to avoid
    bad = bad.view(batch, tokens, ids)
    bad.scatter_(-1, targets[..., None], False)  # what was written is never penalised
    p_bad = (logits.float().softmax(dim=-1) * bad).sum(dim=-1).clamp(max=1 - 1e-6)
    return -torch.log1p(-p_bad)[targets != tokenizer.pad_id].sum()
