"""Strict voice leading at the moment of choice: an option of the sampler, not its default.

A chorale-grid model writes a step voice by voice (soprano to bass, or in the grid's
``voice_order``), so when it chooses a voice the voices written before it at that
step and the whole step before are known. With ``SamplingConfig.strict`` the choices
that would make a parallel fifth or octave with one of those voices, or cross one
(sound above a higher voice or below a lower one), are removed before
sampling, as a harmony student checks each note; where nothing would remain, the
choice is left free. This hides what a model would have written: the report of a
model's own music is drawn without it (docs/quality.md gives both).
"""

from __future__ import annotations

import torch

from reprise.data.chorale_grid import ChoraleGrid
from reprise.data.tokenizer import Tokenizer
from reprise.errors import RepriseError
from reprise.evaluation.voice_leading import crossing_choices, frame_chords, parallel_choices


def avoided_next(seq: torch.Tensor, tokenizer: ChoraleGrid) -> torch.Tensor:
    """``(batch, ids)``: the choices of the token after ``seq`` (``BOS`` first) that strict voice
    leading rules out; none for a given soprano (``soprano_ahead``) or a soprano of the first step."""
    batch, length = seq.shape
    frame, slot = divmod(length - 1, 4)
    pitches = torch.as_tensor(tokenizer.id_pitches(), device=seq.device)
    if slot == 0 and tokenizer.soprano_ahead:
        return torch.zeros(batch, len(pitches), dtype=torch.bool, device=seq.device)
    first = max(frame - tokenizer.soprano_ahead - 1, 0)  # the frames the last two chords are in
    body = seq[:, 1 + 4 * first :]
    body = torch.cat([body, body.new_zeros(batch, 4 - slot)], dim=1)  # the next voices: not read
    chords = frame_chords(pitches[body].view(batch, -1, 4), tokenizer.soprano_ahead)
    bad = parallel_choices(chords, pitches) | crossing_choices(chords, pitches, tokenizer.slot_voices)
    return bad[:, -1, slot]


def strict_logits(logits: torch.Tensor, seq: torch.Tensor, tokenizer: Tokenizer) -> torch.Tensor:
    """``logits`` with the choices :func:`avoided_next` rules out set to ``-inf``, in each row where
    an allowed choice remains."""
    if not isinstance(tokenizer, ChoraleGrid):
        raise RepriseError(f"strict voice leading needs a chorale-grid model, not {tokenizer.name}")
    strict = logits.masked_fill(avoided_next(seq, tokenizer), float("-inf"))
    return torch.where(torch.isinf(strict).all(dim=-1, keepdim=True), logits, strict)
