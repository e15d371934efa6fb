"""Voice-leading measures of a four-part chorale grid: parallels, crossings, ranges.

The grid is the chorale encoding's ``(steps, 4)`` array of MIDI pitches, voices in
the order soprano, alto, tenor, bass, ``-1`` for silence. A note held over several
steps repeats its pitch, so a repeated note and a held one look the same here.

Definitions (each count comes with the denominator its rate divides by):

* **Transitions**: the grid with every row equal to the row before it dropped,
  i.e. the sequence of distinct sonorities; a transition is a pair of consecutive
  sonorities. Time only matters through *when* something changes.
* **Parallel fifths / octaves**: for a transition and a pair of voices (any two
  of the four, six pairs), both voices sound in both sonorities, both change
  pitch, they move in the same direction, and the interval between them, taken
  as ``|upper - lower| mod 12``, is 7 (fifths) or 0 (octaves, unisons and their
  compounds) in both sonorities. Rate: per transition.
* **Voice crossings**: a step at which some lower voice (later in S, A, T, B)
  sounds strictly above some higher voice. Rate: per step at which at least two
  voices sound.
* **Out of range**: a note (a run of equal pitch in one voice) outside that
  voice's range in :data:`SATB_RANGES`. Rate: per note.

Voice crossings and parallels are what harmony textbooks teach students to avoid
in four-part writing; Bach's chorales have few, so their rates tell a model that
learnt the style from one that merely stacks four plausible lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import TypeVar

import numpy as np
import torch

from reprise.errors import RepriseError

Array = TypeVar("Array", np.ndarray, torch.Tensor)
SILENCE = -1
VOICE_NAMES = ("soprano", "alto", "tenor", "bass")
# The ranges usually given in harmony textbooks (e.g. Aldwell & Schachter, "Harmony and
# Voice Leading"; Kostka & Payne, "Tonal Harmony"): soprano C4-G5, alto G3-D5, tenor C3-G4,
# bass E2-C4, as inclusive MIDI pitch bounds (C4 = 60).
SATB_RANGES: tuple[tuple[int, int], ...] = ((60, 79), (55, 74), (48, 67), (40, 60))


@dataclass(frozen=True)
class VoiceLeading:
    """Counts of voice-leading events in one grid and the denominators of their rates."""

    transitions: int
    parallel_fifths: int
    parallel_octaves: int
    polyphonic_steps: int
    crossing_steps: int
    notes: int
    out_of_range: int
    out_of_range_by_voice: tuple[int, int, int, int]

    @property
    def parallel_fifths_rate(self) -> float:
        return _rate(self.parallel_fifths, self.transitions)

    @property
    def parallel_octaves_rate(self) -> float:
        return _rate(self.parallel_octaves, self.transitions)

    @property
    def crossing_rate(self) -> float:
        return _rate(self.crossing_steps, self.polyphonic_steps)

    @property
    def out_of_range_rate(self) -> float:
        return _rate(self.out_of_range, self.notes)

    def rates(self) -> dict[str, float]:
        """The four rates by name, e.g. for a table."""
        return {
            "parallel_fifths": self.parallel_fifths_rate,
            "parallel_octaves": self.parallel_octaves_rate,
            "voice_crossings": self.crossing_rate,
            "out_of_range": self.out_of_range_rate,
        }

    def to_json(self) -> dict:
        """Counts and rates, JSON-ready."""
        return {**asdict(self), "out_of_range_by_voice": list(self.out_of_range_by_voice), "rates": self.rates()}


def voice_leading(grid: np.ndarray, ranges: tuple[tuple[int, int], ...] = SATB_RANGES) -> VoiceLeading:
    """Parallel fifths and octaves, voice crossings and out-of-range notes of an SATB grid."""
    grid = np.asarray(grid)
    if grid.ndim != 2 or grid.shape[1] != 4:
        raise RepriseError(f"voice leading needs a (steps, 4) SATB grid, got shape {grid.shape}")
    rows = _sonorities(grid)
    fifths, octaves = _parallels(rows)
    polyphonic, crossing = _crossings(grid)
    notes, outside = _out_of_range(grid, ranges)
    return VoiceLeading(
        transitions=max(len(rows) - 1, 0),
        parallel_fifths=fifths,
        parallel_octaves=octaves,
        polyphonic_steps=polyphonic,
        crossing_steps=crossing,
        notes=notes,
        out_of_range=sum(outside),
        out_of_range_by_voice=tuple(outside),
    )


def _sonorities(grid: np.ndarray) -> np.ndarray:
    """The rows of ``grid`` that differ from the row before them (the first always counts)."""
    if len(grid) == 0:
        return grid
    changed = np.r_[True, (grid[1:] != grid[:-1]).any(axis=1)]
    return grid[changed]


def _parallels(rows: np.ndarray) -> tuple[int, int]:
    """(parallel fifths, parallel octaves) over all voice pairs and transitions of ``rows``."""
    before, after = rows[:-1], rows[1:]
    fifths = octaves = 0
    for i, j in combinations(range(4), 2):
        fifth, octave = parallel_motion(before[:, i], before[:, j], after[:, i], after[:, j])
        fifths, octaves = fifths + int(fifth.sum()), octaves + int(octave.sum())
    return fifths, octaves


def parallel_motion(before_i: Array, before_j: Array, after_i: Array, after_j: Array) -> tuple[Array, Array]:
    """(fifths, octaves): where voices ``i`` and ``j`` move from ``before`` to ``after`` in parallel
    fifths or octaves (see the module's definition); pitches broadcast, numpy arrays or torch tensors."""
    sounding = (before_i >= 0) & (before_j >= 0) & (after_i >= 0) & (after_j >= 0)
    similar = sounding & ((after_i - before_i) * (after_j - before_j) > 0)  # both move, the same way
    interval_before, interval_after = abs(before_i - before_j) % 12, abs(after_i - after_j) % 12
    fifths = similar & (interval_before == 7) & (interval_after == 7)
    return fifths, similar & (interval_before == 0) & (interval_after == 0)


def parallel_choices(grid: torch.Tensor, pitches: torch.Tensor) -> torch.Tensor:
    """Which choices of a voice would move in parallel fifths or octaves with a voice chosen before it.

    ``grid`` is a ``(batch, steps, 4)`` tensor of pitches (``-1``: silence or unknown), its last axis
    the slots of a step in the order they are written, and ``pitches`` the pitch each token id stands
    for (``-1`` for the others). The result, ``(batch, steps, 4, ids)``, is true where giving slot ``v``
    that id at step ``s`` would make a parallel with a slot ``u < v`` of the same step (written before
    it), against step ``s - 1``; so every parallel of a grid is counted at the later voice of its pair,
    when that voice is chosen. Parallels do not depend on which voice is higher, so any voice order works.
    """
    out = torch.zeros(*grid.shape, len(pitches), dtype=torch.bool, device=grid.device)
    before, after = grid[:, :-1, :, None], grid[:, 1:, :, None]
    for v in range(1, 4):
        for u in range(v):
            fifths, octaves = parallel_motion(before[:, :, u], before[:, :, v], after[:, :, u], pitches)
            out[:, 1:, v] |= fifths | octaves
    return out


def frame_chords(frames: torch.Tensor, ahead: int) -> torch.Tensor:
    """The chords of ``(batch, frames, 4)`` pitches of a chorale grid whose soprano runs ``ahead`` steps
    ahead: each frame's alto, tenor and bass with the soprano of their own step, ``ahead`` frames
    earlier (``-1`` where that is before the frames given). The frames themselves when ``ahead`` is 0."""
    if not ahead:
        return frames
    chords = frames.clone()
    chords[:, :, 0] = -1
    chords[:, ahead:, 0] = frames[:, :-ahead, 0]
    return chords


def stalling_choices(grid: torch.Tensor, pitches: torch.Tensor, limit: int) -> torch.Tensor:
    """Which choices of the last slot of a step would hold a chord that has already lasted ``limit``
    steps one step more.

    Same shapes as :func:`parallel_choices`. The last voice written at a step (the bass in S, A, T, B
    order) is where a chord held by the three before it either changes or becomes a stall
    (:mod:`.degeneration`).
    """
    out = torch.zeros(*grid.shape, len(pitches), dtype=torch.bool, device=grid.device)
    steps = torch.arange(grid.shape[1], device=grid.device)
    changed = torch.ones_like(grid[:, :, 0], dtype=torch.bool)
    changed[:, 1:] = (grid[:, 1:] != grid[:, :-1]).any(dim=-1)
    lasted = steps + 1 - torch.where(changed, steps, 0).cummax(dim=1).values  # the chord's steps so far
    upper_held = (grid[:, 1:, :3] == grid[:, :-1, :3]).all(dim=-1) & (grid[:, :-1] >= 0).any(dim=-1)
    stalls = upper_held & (lasted[:, :-1] >= limit)
    out[:, 1:, 3] = stalls[..., None] & (pitches == grid[:, :-1, 3, None])
    return out


def crossing_choices(grid: torch.Tensor, pitches: torch.Tensor, voices: Sequence[int] = (0, 1, 2, 3)) -> torch.Tensor:
    """Which choices of a voice would cross a voice already chosen at its step: sound strictly above
    a higher voice, or below a lower one.

    Same shapes as :func:`parallel_choices`; ``voices`` names the voice (0 = soprano ... 3 = bass) of
    each slot. Every crossed step of a grid is counted at the later voice of the pair, when that voice
    is chosen, as the report counts crossings per step.
    """
    out = torch.zeros(*grid.shape, len(pitches), dtype=torch.bool, device=grid.device)
    for v in range(1, 4):
        for u in range(v):
            earlier = grid[:, :, u, None]
            crossed = pitches > earlier if voices[u] < voices[v] else pitches < earlier
            out[:, :, v] |= (earlier >= 0) & (pitches >= 0) & crossed
    return out


def _crossings(grid: np.ndarray) -> tuple[int, int]:
    """(steps where two or more voices sound, steps where a lower voice is above a higher one)."""
    sounding = grid >= 0
    crossed = np.zeros(len(grid), dtype=bool)
    for upper, lower in combinations(range(4), 2):
        crossed |= sounding[:, upper] & sounding[:, lower] & (grid[:, lower] > grid[:, upper])
    return int((sounding.sum(axis=1) >= 2).sum()), int(crossed.sum())


def _out_of_range(grid: np.ndarray, ranges: tuple[tuple[int, int], ...]) -> tuple[int, list[int]]:
    """(notes, out-of-range notes per voice); a note is a run of equal pitch in one voice."""
    total, outside = 0, []
    for voice, (low, high) in enumerate(ranges):
        column = grid[:, voice]
        onsets = column[np.r_[True, column[1:] != column[:-1]]] if len(column) else column
        pitches = onsets[onsets >= 0]
        total += len(pitches)
        outside.append(int(((pitches < low) | (pitches > high)).sum()))
    return total, outside


def _rate(count: int, total: int) -> float:
    return count / total if total else 0.0
