"""Samples to report on, drawn from a model: written as MIDI (to listen to) and read back as pieces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from reprise.api import write_samples
from reprise.data.tokenizer import Tokenizer
from reprise.evaluation.pieces import Piece, pieces_from_ids
from reprise.generation.generate import generate
from reprise.generation.sampling import SamplingConfig


def draw_samples(
    model: nn.Module, tokenizer: Tokenizer, n: int, n_new: int, sampling: SamplingConfig, seed: int, out: Path
) -> list[Piece]:
    """``n`` pieces of ``n_new`` tokens sampled from ``BOS``, saved as ``OUT/sample-N.mid`` (with piano rolls).

    The pieces are decoded from the ids, so chorale samples keep their SATB grid;
    each one's key is its MIDI file, so it is never mistaken for a dataset piece.
    """
    ids = generate(model, tokenizer, np.array([tokenizer.bos_id]), n_new, n, sampling, seed)
    paths = [p for p in write_samples(ids, tokenizer, Path(out), "sample") if p.suffix == ".mid"]
    return pieces_from_ids(list(ids), tokenizer, [p.name for p in paths], [str(p.resolve()) for p in paths])
