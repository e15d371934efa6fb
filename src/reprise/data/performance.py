"""The Music Transformer's performance events: notes, velocities and 10 ms time shifts.

After Oore et al. (2018), as used in the Music Transformer paper on the
Piano-e-Competition: 128 ``NOTE_ON``, 128 ``NOTE_OFF``, 100 ``TIME_SHIFT`` steps of
10 ms (up to 1 s) and 32 ``VELOCITY`` bins, 388 events. Time is absolute (seconds,
through the file's tempo map), so expressive timing survives. As Magenta does,
the sustain pedal is applied before encoding by extending every note released
while the pedal is down to the pedal's release (or to the next onset of the same
pitch); the pedal itself is not encoded.

Ids: ``PAD``, ``BOS``, ``EOS``, then the 388 events in the order above.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import symusic

from reprise.data.tokenizer import Tokenizer, register, shift_bounds
from reprise.errors import RepriseError

STEPS_PER_SECOND = 100
MAX_SHIFT = 100  # steps in one TIME_SHIFT token (1 s)
MAX_UNCLOSED = 5 * STEPS_PER_SECOND  # a note never switched off ends after 5 s (as Magenta's performance decoding)
VELOCITY_BINS = 32
NOTE_ON, NOTE_OFF = 3, 3 + 128
TIME_SHIFT = NOTE_OFF + 128  # id of a shift of 1 step is TIME_SHIFT, of 100 steps TIME_SHIFT + 99
VELOCITY = TIME_SHIFT + MAX_SHIFT
VOCAB_SIZE = VELOCITY + VELOCITY_BINS
TPQ, QPM = 500, 120.0  # decoded MIDI: one tick is one millisecond


@dataclass
class Performance(Tokenizer):
    """Performance-event tokenizer; transposes (keeping MIDI's 0..127) and stretches time."""

    name = "performance"
    stretches_time = True

    @property
    def vocab_size(self) -> int:
        return VOCAB_SIZE

    def token_names(self) -> list[str]:
        return (
            ["PAD", "BOS", "EOS"]
            + [f"NOTE_ON_{p}" for p in range(128)]
            + [f"NOTE_OFF_{p}" for p in range(128)]
            + [f"TIME_SHIFT_{10 * s}ms" for s in range(1, MAX_SHIFT + 1)]
            + [f"VELOCITY_{b}" for b in range(VELOCITY_BINS)]
        )

    def encode_score(self, score: symusic.Score) -> np.ndarray:
        start, end, pitch, velocity = sustained_notes(score)
        if not len(start):
            raise RepriseError("no notes")
        return np.concatenate([[self.bos_id], events(start, end, pitch, velocity), [self.eos_id]])

    def decode(self, ids: np.ndarray) -> symusic.Score:
        score = symusic.Score(TPQ)
        score.tempos.append(symusic.Tempo(0, QPM))
        track = symusic.Track(name="Piano", program=0)
        ticks_per_step = TPQ * QPM / 60 / STEPS_PER_SECOND
        for on, off, p, v in notes_of(np.asarray(ids)):
            track.notes.append(symusic.Note(round(on * ticks_per_step), round((off - on) * ticks_per_step), p, v))
        score.tracks.append(track)
        return score

    def transpose_bounds(self, ids: np.ndarray) -> tuple[int, int] | None:
        notes = (ids >= NOTE_ON) & (ids < TIME_SHIFT)
        if not notes.any():
            return None
        pitches = (ids[notes] - NOTE_ON) % 128
        return shift_bounds(pitches.min(keepdims=True), pitches.max(keepdims=True), [0], [127])

    def transposed(self, ids: np.ndarray, shift: int) -> np.ndarray:
        return np.where((ids >= NOTE_ON) & (ids < TIME_SHIFT), ids + shift, ids)

    def stretched(self, ids: np.ndarray, factor: float) -> np.ndarray:
        return _stretch(ids, factor)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Performance:
        return cls()  # older files also hold max_transpose and stretches, now training settings


register(Performance)


def sustained_notes(score: symusic.Score) -> tuple[np.ndarray, ...]:
    """``(start, end, pitch, velocity)`` of every pitched note in 10 ms steps, pedal applied.

    A note released while its track's sustain pedal is down lasts until the pedal
    comes up; a note still sounding when its pitch is struck again ends there.
    """
    parts = [_track_notes(track) for track in score.to("second").tracks if not track.is_drum]
    if not sum(len(part[0]) for part in parts):  # no pitched track, or no notes in them
        return tuple(np.zeros(0, np.int64) for _ in range(4))
    start, end, pitch, velocity = (np.concatenate(column) for column in zip(*parts))
    start = np.round(start * STEPS_PER_SECOND).astype(np.int64)
    end = np.maximum(np.round(end * STEPS_PER_SECOND).astype(np.int64), start + 1)
    order = np.lexsort((-velocity, start, pitch))
    start, end, pitch, velocity = start[order], end[order], pitch[order], velocity[order]
    first = np.r_[True, (pitch[1:] != pitch[:-1]) | (start[1:] != start[:-1])]  # one note per pitch and onset
    start, end, pitch, velocity = start[first], end[first], pitch[first], velocity[first]
    return start, clip_restruck(start, end, pitch), pitch, velocity


def clip_restruck(start: np.ndarray, end: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """Ends cut at the next onset of the same pitch (notes sorted by pitch, then onset).

    MIDI cannot tell which of two overlapping notes of one pitch a note-off ends,
    so overlaps would not survive a trip through a file.
    """
    restruck = np.r_[pitch[1:] == pitch[:-1], False]
    end = end.copy()
    end[restruck] = np.minimum(end[restruck], start[1:][restruck[:-1]])
    return end


def _track_notes(track) -> tuple[np.ndarray, ...]:
    """One track's notes in seconds, with ends extended by its sustain pedal."""
    notes = track.notes.numpy()
    start, pitch, velocity = notes["time"], notes["pitch"].astype(np.int64), notes["velocity"].astype(np.int64)
    end = start + notes["duration"]
    if len(track.pedals):
        pedals = track.pedals.numpy()
        down, up = pedals["time"], pedals["time"] + pedals["duration"]
        i = np.searchsorted(down, end, side="right") - 1
        held = (i >= 0) & (end < up[np.maximum(i, 0)])
        end = np.where(held, up[np.maximum(i, 0)], end)
    return start, end, pitch, velocity


def events(start: np.ndarray, end: np.ndarray, pitch: np.ndarray, velocity: np.ndarray) -> np.ndarray:
    """Event ids for notes in steps: offs before ons at the same step, a velocity event on change."""
    n = len(start)
    step = np.r_[start, end]
    is_on = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    token = np.r_[NOTE_ON + pitch, NOTE_OFF + pitch]
    vbin = np.r_[np.clip((velocity - 1) // 4, 0, VELOCITY_BINS - 1), np.full(n, -1)]
    order = np.lexsort((token, is_on, step))
    step, is_on, token, vbin = step[order], is_on[order], token[order], vbin[order]
    on_bins = vbin[is_on]
    changed = np.zeros(len(step), bool)
    changed[is_on] = np.r_[True, on_bins[1:] != on_bins[:-1]]
    delta = np.diff(step, prepend=0)
    n_shifts = -(-delta // MAX_SHIFT)  # ceil
    counts = n_shifts + changed + 1
    ends = np.cumsum(counts)
    out = np.empty(ends[-1], np.int64)
    out[ends - 1] = token
    out[ends[changed] - 2] = VELOCITY + vbin[changed]
    group = np.repeat(np.arange(len(step)), n_shifts)
    within = np.arange(len(group)) - np.repeat(np.cumsum(n_shifts) - n_shifts, n_shifts)
    last = within == n_shifts[group] - 1
    size = np.where(last, delta[group] - MAX_SHIFT * (n_shifts[group] - 1), MAX_SHIFT)
    out[(ends - counts)[group] + within] = TIME_SHIFT + size - 1
    return out


def notes_of(ids: np.ndarray) -> list[tuple[int, int, int, int]]:
    """``(on_step, off_step, pitch, velocity)`` of the notes in ids.

    A key struck again while its note sounds ends that note (a piano has one string per key, and the
    encoder cuts restruck notes alike, :func:`clip_restruck`). A note with no ``NOTE_OFF`` ends at the
    last step or ``MAX_UNCLOSED`` steps after it began, whichever comes first: a model that forgets a
    note-off should not hold that note to the end of the piece.
    """
    time, velocity, notes = 0, 64, []
    sounding: dict[int, tuple[int, int]] = {}
    for token in ids.tolist():
        if NOTE_ON <= token < TIME_SHIFT:
            pitch, off = (token - NOTE_ON) % 128, token >= NOTE_OFF
            if pitch in sounding:  # its note-off, or the key struck again without one
                on, v = sounding.pop(pitch)
                notes.append((on, max(time if off else min(time, on + MAX_UNCLOSED), on + 1), pitch, v))
            if not off:
                sounding[pitch] = (time, velocity)
        elif TIME_SHIFT <= token < VELOCITY:
            time += token - TIME_SHIFT + 1
        elif VELOCITY <= token < VOCAB_SIZE:
            velocity = 4 * (token - VELOCITY) + 3
    notes += [(on, max(min(time, on + MAX_UNCLOSED), on + 1), p, v) for p, (on, v) in sounding.items()]
    return sorted(notes)


def _stretch(ids: np.ndarray, factor: float) -> np.ndarray:
    """Ids with every event's time (from the window's start) scaled by ``factor`` and rounded to a step.

    Scaling absolute times, not each shift, keeps rounding errors from piling up.
    """
    if factor == 1.0:
        return ids
    out: list[int] = []
    time = placed = 0
    for token in ids.tolist():
        if TIME_SHIFT <= token < VELOCITY:
            time += token - TIME_SHIFT + 1
            continue
        target = round(time * factor)
        out += _shifts(target - placed)
        placed = target
        out.append(token)
    out += _shifts(round(time * factor) - placed)
    return np.asarray(out, dtype=np.int64)


def _shifts(steps: int) -> list[int]:
    """Time-shift ids that add up to ``steps``."""
    full, rest = divmod(steps, MAX_SHIFT)
    return [TIME_SHIFT + MAX_SHIFT - 1] * full + ([TIME_SHIFT + rest - 1] if rest else [])
