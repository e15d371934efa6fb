"""The melody grid: one line of melody on a 16th-note grid, one token per step.

The encoding of the folk-melody blog series this project grew from: at every
16th-note step a melody either starts a note (its pitch), holds the previous one
(``HOLD``) or is silent (``REST``); ``EOS`` ends the song. Unlike the chorale
grid, a repeated note and a held note differ. It is meant for monophonic corpora
such as the Essen folk songs; given several voices it keeps the highest note
starting at each step (a skyline), and a new onset ends the sounding note.
Onsets and ends are rounded to the nearest 16th, so triplets are approximated.

Ids: ``PAD``, ``BOS``, ``EOS``, ``HOLD``, ``REST``, then one id per MIDI pitch from
``pitch_min`` to ``pitch_max``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import symusic

from reprise.constants import TICKS_PER_QUARTER, TICKS_PER_STEP
from reprise.data.tokenizer import Tokenizer, known_fields, register, shift_bounds
from reprise.errors import RepriseError

HOLD, REST, FIRST_PITCH = 3, 4, 5


@dataclass
class MelodyGrid(Tokenizer):
    """16th-note melody tokenizer; transposes inside its pitch range."""

    pitch_min: int = 21
    pitch_max: int = 108
    tempo_qpm: float = 100.0

    name = "melody-grid"

    @property
    def vocab_size(self) -> int:
        return FIRST_PITCH + self.pitch_max - self.pitch_min + 1

    def token_names(self) -> list[str]:
        return ["PAD", "BOS", "EOS", "HOLD", "REST"] + [f"PITCH_{p}" for p in range(self.pitch_min, self.pitch_max + 1)]

    def encode_score(self, score: symusic.Score) -> np.ndarray:
        onset, end, pitch = _skyline(score)
        if not len(onset):
            raise RepriseError("no notes")
        if pitch.min() < self.pitch_min or pitch.max() > self.pitch_max:
            raise RepriseError(
                f"pitch {pitch.min()}..{pitch.max()} outside the vocabulary {self.pitch_min}..{self.pitch_max}"
            )
        end = np.minimum(end, np.r_[onset[1:], end.max()])  # a new onset ends the sounding note
        steps = np.full(end.max(), REST, dtype=np.int64)  # up to the end of the last note that sounds
        for on, off in zip(onset, end):
            steps[on + 1 : off] = HOLD
        steps[onset] = pitch - self.pitch_min + FIRST_PITCH
        return np.concatenate([[self.bos_id], steps, [self.eos_id]])

    def decode(self, ids: np.ndarray) -> symusic.Score:
        ids = np.asarray(ids)
        body = ids[ids >= HOLD]
        score = symusic.Score(TICKS_PER_QUARTER)
        score.tempos.append(symusic.Tempo(0, self.tempo_qpm))
        track = symusic.Track(name="Melody", program=0)
        onsets = np.flatnonzero(body >= FIRST_PITCH)
        for on in onsets:
            length = 1 + _run_length(body[on + 1 :] == HOLD)
            track.notes.append(
                symusic.Note(
                    int(on) * TICKS_PER_STEP, length * TICKS_PER_STEP, int(body[on]) - FIRST_PITCH + self.pitch_min, 80
                )
            )
        score.tracks.append(track)
        return score

    def transpose_bounds(self, ids: np.ndarray) -> tuple[int, int] | None:
        pitched = ids >= FIRST_PITCH
        if not pitched.any():
            return None
        return shift_bounds(
            ids[pitched].min(keepdims=True), ids[pitched].max(keepdims=True), [FIRST_PITCH], [self.vocab_size - 1]
        )

    def transposed(self, ids: np.ndarray, shift: int) -> np.ndarray:
        return np.where(ids >= FIRST_PITCH, ids + shift, ids)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MelodyGrid:
        return cls(**known_fields(cls, data))


register(MelodyGrid)


def _skyline(score: symusic.Score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(onset, end, pitch)`` in 16th steps: the highest note at each onset step, in time order."""
    step = score.tpq / 4
    columns = [t.notes.numpy() for t in score.tracks if not t.is_drum and len(t.notes)]
    if not columns:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    time = np.concatenate([c["time"] for c in columns])
    duration = np.concatenate([c["duration"] for c in columns])
    pitch = np.concatenate([c["pitch"] for c in columns]).astype(np.int64)
    onset = np.round(time / step).astype(np.int64)
    end = np.maximum(np.round((time + duration) / step).astype(np.int64), onset + 1)
    order = np.lexsort((-pitch, onset))
    onset, end, pitch = onset[order], end[order], pitch[order]
    top = np.r_[True, onset[1:] != onset[:-1]]
    return onset[top], end[top], pitch[top]


def _run_length(mask: np.ndarray) -> int:
    """How many leading entries of ``mask`` are true."""
    stop = np.flatnonzero(~mask)
    return int(stop[0]) if len(stop) else len(mask)
