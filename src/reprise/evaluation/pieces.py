"""Pieces as the report's statistics see them: notes on a 16th-note time axis, from any source.

A :class:`Piece` is read from a MIDI file, a prepared dataset's split, or the ids
a model generated, so that samples and real music go through the same code
before they are compared. Times are in 16th notes (a quarter is 4 steps), since
the statistics count bars, beats and 16th-note steps. Drum tracks are left out,
as MusPy's metrics leave them out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import symusic

from reprise.data.chorale_grid import ChoraleGrid, score_to_grid
from reprise.data.midi import read_midi
from reprise.data.tokenizer import Tokenizer
from reprise.errors import RepriseError

STEPS_PER_QUARTER = 4
MIDI_SUFFIXES = (".mid", ".midi")


@dataclass
class Piece:
    """One piece's pitched notes, sorted by onset, and where it came from.

    ``key`` identifies the source (a file path, or dataset + split + index): two
    pieces with the same key are the same piece, which originality never
    matches with itself. ``grid`` is the ``(steps, 4)`` SATB grid of chorale
    data (``None`` otherwise), for the voice-leading measures.
    """

    name: str
    key: str
    onset: np.ndarray  # float, 16th steps
    duration: np.ndarray  # float, 16th steps
    pitch: np.ndarray  # int
    track: np.ndarray  # int, index into track_names
    track_names: list[str]
    steps_per_bar: float = 16.0
    grid: np.ndarray | None = field(default=None, repr=False)
    seconds_per_step: float = 0.125  # a 16th at the score's first tempo (120 quarters a minute unless it says)

    @property
    def end(self) -> float:
        """Where the last note ends, in steps (0 for a piece without notes)."""
        return float((self.onset + self.duration).max()) if len(self.pitch) else 0.0

    @property
    def n_bars(self) -> int:
        return int(np.ceil(self.end / self.steps_per_bar - 1e-9))

    def roll(self) -> np.ndarray:
        """``(steps, 128)`` booleans: which pitches sound at each 16th step (notes rounded to the grid)."""
        start = np.round(self.onset).astype(int)
        stop = np.maximum(np.round(self.onset + self.duration).astype(int), start + 1)
        change = np.zeros((int(stop.max(initial=0)) + 1, 128), dtype=np.int32)
        np.add.at(change, (start, self.pitch), 1)
        np.add.at(change, (stop, self.pitch), -1)
        return np.cumsum(change, axis=0)[:-1] > 0

    def top_line(self, track: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(onsets, pitches, durations) of the highest note at each distinct onset, of one track or all."""
        chosen = np.ones(len(self.pitch), dtype=bool) if track is None else self.track == track
        onset, pitch, duration = np.round(self.onset[chosen], 3), self.pitch[chosen], self.duration[chosen]
        order = np.lexsort((-pitch, onset))  # by onset, highest first
        onset, pitch, duration = onset[order], pitch[order], duration[order]
        first = np.r_[True, onset[1:] != onset[:-1]] if len(onset) else np.zeros(0, dtype=bool)
        return onset[first], pitch[first], duration[first]

    def onset_roll(self) -> np.ndarray:
        """``(steps, 128)`` booleans, shaped as :meth:`roll`: which pitches start at each step."""
        start = np.round(self.onset).astype(int)
        stop = np.maximum(np.round(self.onset + self.duration).astype(int), start + 1)
        onsets = np.zeros((int(stop.max(initial=0)), 128), dtype=bool)
        onsets[start, self.pitch] = True
        return onsets

    def bar_hashes(self, relative: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hash, lowest sounding pitch, whether a note starts) per bar of :meth:`bar_rolls`.

        Equal bars (the same pitches sounding and starting at the same steps) hash
        equally; with ``relative``, pitches count from the bar's lowest, so a bar and
        its transposition hash equally. The hash is a sum of one mixed code per
        sounding or starting (step, pitch) cell, mixed again: a set hash, whose
        collisions between different bars are negligibly rare.
        """
        roll, onsets = self.bar_rolls()
        used = roll.any(axis=1)
        lowest = np.argmax(used, axis=1) if relative else np.zeros(len(roll), dtype=np.int64)
        total = np.zeros(len(roll), dtype=np.uint64)
        for kind, cells in enumerate((roll, onsets)):
            bar, step, pitch = np.nonzero(cells)
            code = kind << 20 | step << 8 | (pitch - lowest[bar])
            np.add.at(total, bar, mix64(code).astype(np.uint64))
        return mix64(total), lowest, onsets.any(axis=(1, 2))

    def bar_rolls(self) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`roll` and :meth:`onset_roll` cut into bars: ``(bars, steps per bar, 128)``, the last bar padded."""
        per_bar = max(1, round(self.steps_per_bar))
        rolls = []
        for roll in (self.roll(), self.onset_roll()):
            padded = np.zeros((-(-len(roll) // per_bar) * per_bar, 128), dtype=bool)
            padded[: len(roll)] = roll
            rolls.append(padded.reshape(-1, per_bar, 128))
        return rolls[0], rolls[1]


def mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, cut to 56 bits (so that the results are non-negative int64s)."""
    z = values.astype(np.uint64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return ((z ^ (z >> np.uint64(31))) & np.uint64(2**56 - 1)).astype(np.int64)


def piece_from_score(score: symusic.Score, name: str, key: str, grid: np.ndarray | None = None) -> Piece:
    """The pitched notes of ``score`` (drums left out), timed in 16th steps."""
    per_step = score.tpq / STEPS_PER_QUARTER
    columns: dict[str, list[np.ndarray]] = {"time": [], "duration": [], "pitch": [], "track": []}
    names = []
    for track in score.tracks:
        if track.is_drum or not len(track.notes):
            continue
        notes = track.notes.numpy()
        for column in ("time", "duration", "pitch"):
            columns[column].append(notes[column].astype(np.float64 if column != "pitch" else np.int64))
        columns["track"].append(np.full(len(notes["pitch"]), len(names)))
        names.append(track.name or f"track {len(names) + 1}")
    if not names:
        empty = np.zeros(0)
        return Piece(name, key, empty, empty, empty.astype(int), empty.astype(int), [], grid=grid)
    time, duration, pitch, track = (np.concatenate(columns[c]) for c in ("time", "duration", "pitch", "track"))
    order = np.lexsort((pitch, time))
    signature = score.time_signatures[0] if len(score.time_signatures) else None
    steps_per_bar = 16.0 * signature.numerator / signature.denominator if signature else 16.0
    qpm = score.tempos[0].qpm if len(score.tempos) else 120.0
    return Piece(
        name,
        key,
        time[order] / per_step,
        duration[order] / per_step,
        pitch[order],
        track[order],
        names,
        steps_per_bar,
        grid,
        60 / qpm / STEPS_PER_QUARTER,
    )


def pieces_from_ids(rows: list[np.ndarray], tokenizer: Tokenizer, names: list[str], keys: list[str]) -> list[Piece]:
    """Decode token sequences; chorale-grid pieces keep their grid for voice leading."""
    pieces = []
    for ids, name, key in zip(rows, names, keys):
        grid = tokenizer.decode_grid(ids) if isinstance(tokenizer, ChoraleGrid) else None
        pieces.append(piece_from_score(tokenizer.decode(ids), name, key, grid))
    return pieces


def pieces_from_dataset(directory: Path, split: str) -> list[Piece]:
    """Every piece of one split of a prepared dataset, named as in its manifest."""
    from reprise.data.dataset import TokenDataset, read_manifest

    dataset = TokenDataset(directory, split)
    if len(dataset) == 0:
        raise RepriseError(f"{directory}: the {split} split has no pieces")
    names = [p["name"] for p in read_manifest(directory)["pieces"] if p["split"] == split]
    where = str(Path(directory).resolve())
    keys = [f"{where}:{split}:{i}" for i in range(len(dataset))]
    return pieces_from_ids([dataset.piece(i) for i in range(len(dataset))], dataset.tokenizer, names, keys)


def pieces_from_midi(folder: Path) -> list[Piece]:
    """Every MIDI file in ``folder`` (searched recursively), or the one file ``folder`` names."""
    folder = Path(folder)
    if folder.is_file():
        paths = [folder]
    elif folder.is_dir():
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES)
        if not paths:
            raise RepriseError(f"{folder}: no MIDI files (.mid, .midi) in this folder")
    else:
        raise RepriseError(f"{folder}: no such file or folder")
    pieces = []
    for path in paths:
        if path.suffix.lower() not in MIDI_SUFFIXES:
            raise RepriseError(f"{path}: not a MIDI file (.mid, .midi)")
        score = read_midi(path)
        pieces.append(piece_from_score(score, path.name, str(path.resolve()), _grid_if_four_voices(score)))
    return pieces


def load_pieces(source: Path, split: str | None, option: str) -> list[Piece]:
    """A prepared dataset's split (which must be named) or a MIDI file or folder; ``option`` names the split's flag."""
    source = Path(source)
    if (source / "manifest.json").is_file():
        if split is None:
            raise RepriseError(f"{source} is a prepared dataset: name its split with {option} (train, valid or test)")
        return pieces_from_dataset(source, split)
    if split is not None:
        raise RepriseError(f"{source}: {option} {split} given, but this is not a prepared dataset")
    return pieces_from_midi(source)


def _grid_if_four_voices(score: symusic.Score) -> np.ndarray | None:
    """The SATB grid of a score with exactly four voice tracks, else ``None``."""
    try:
        return score_to_grid(score)
    except RepriseError:
        return None
