"""Writing generated ids as files a person can open: MIDI, with a piano roll (and optionally a WAV) beside each."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import symusic

from reprise.audio import render_wav
from reprise.data.tokenizer import Tokenizer
from reprise.visualization.pianoroll import plot_pianoroll


def write_samples(ids: np.ndarray, tokenizer: Tokenizer, out: Path, stem: str, wav: bool = False) -> list[Path]:
    """Save each row of ``ids`` as ``STEM-N.mid`` with a piano-roll ``STEM-N.png`` (and ``STEM-N.wav``) beside it."""
    return write_scores([tokenizer.decode(row) for row in ids], out, stem, wav)


def write_scores(scores: Sequence[symusic.Score], out: Path, stem: str, wav: bool = False, given: Sequence[int] = (),
                 generated_span: tuple[float, float] | None = None) -> list[Path]:
    """:func:`write_samples` for scores; the piano rolls draw ``given`` tracks and ``generated_span`` apart."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, score in enumerate(scores, start=1):
        midi = out / f"{stem}-{i}.mid"
        score.dump_midi(str(midi))
        roll = plot_pianoroll(score, midi.with_suffix(".png"), title=midi.name, given=given,
                              generated_span=generated_span)
        written += [midi, roll]
        if wav:
            written.append(render_wav(midi, midi.with_suffix(".wav")))
    return written
