"""Writing generated ids as files a person can open: MIDI, with a piano roll (and optionally WAV, MusicXML) beside each."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reprise.audio import render_wav
from reprise.data.musicxml import write_musicxml
from reprise.data.tokenizer import Tokenizer
from reprise.visualization.pianoroll import plot_pianoroll


def write_samples(ids: np.ndarray, tokenizer: Tokenizer, out: Path, stem: str, wav: bool = False,
                  musicxml: bool = False) -> list[Path]:
    """Save each row of ``ids`` as ``STEM-N.mid`` with a piano-roll ``STEM-N.png`` (and ``.wav``, ``.musicxml``) beside it."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, row in enumerate(ids, start=1):
        midi = out / f"{stem}-{i}.mid"
        score = tokenizer.decode(row)
        score.dump_midi(str(midi))
        written += [midi, plot_pianoroll(score, midi.with_suffix(".png"), title=midi.name)]
        if wav:
            written.append(render_wav(midi, midi.with_suffix(".wav")))
        if musicxml:
            written.append(write_musicxml(score, midi.with_suffix(".musicxml")))
    return written
