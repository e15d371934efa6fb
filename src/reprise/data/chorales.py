"""Bach chorales as 4-voice 16th-note grids: from music21's corpus or the JSB JSON.

:mod:`reprise.data.sources` lists the pieces and reads each in a worker with
:func:`_read_chorale`; ``prepare`` drops duplicates.

music21 ships about 400 chorale harmonisations as MusicXML. Many carry extra
instrumental parts (horns, strings doubling a voice); we keep the four sung
parts when they can be told apart by name, and skip a piece, with a reason, when
they cannot, when a voice moves off the 16th grid (triplets, grace notes), or
when it duplicates a chorale already read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reprise.data.chorale_grid import SILENCE, VOICES
from reprise.errors import RepriseError

SCORE_SUFFIXES = {".mxl", ".xml", ".musicxml", ".krn"}


@dataclass
class Piece:
    """One piece on the grid, with the split it belongs to."""

    name: str
    grid: np.ndarray  # (steps, 4) MIDI pitches, SILENCE where a voice rests
    split: str


def split_of(name: str, valid: float = 0.1, test: float = 0.1) -> str:
    """Deterministic by-piece split from a hash of the name, stable as pieces come and go."""
    u = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 0x1_0000_0000
    return "test" if u < test else "valid" if u < test + valid else "train"


def _read_chorale(path: str) -> np.ndarray | str:
    """The grid of one chorale, or the reason it cannot be used (runs in a worker)."""
    from music21 import converter

    try:
        score = converter.parse(path)
    except Exception as err:  # music21 raises many kinds of errors on odd files
        return f"music21 cannot parse it ({type(err).__name__})"
    parts = _satb_parts(score)
    if isinstance(parts, str):
        return parts
    columns = []
    for part in parts:
        column = _part_to_steps(part)
        if isinstance(column, str):
            return column
        columns.append(column)
    n_steps = max(len(c) for c in columns)
    grid = np.full((n_steps, 4), SILENCE, dtype=np.int64)
    for v, column in enumerate(columns):
        grid[: len(column), v] = column
    return grid


def _satb_parts(score) -> list | str:
    """The soprano, alto, tenor and bass parts, in that order, or why they cannot be found."""
    parts = list(score.parts)
    by_voice = {}
    for part in parts:
        label = f"{part.partName or ''} {part.id or ''}".lower()
        for voice in VOICES:
            if voice.lower() in label and voice not in by_voice:
                by_voice[voice] = part
                break
    if len(by_voice) == 4:
        return [by_voice[v] for v in VOICES]
    if len(parts) == 4:
        return parts
    return f"{len(parts)} parts and no S/A/T/B names to pick four voices"


def _part_to_steps(part) -> np.ndarray | str:
    """One voice as a pitch per 16th step, or why it does not fit the grid."""
    events = part.flatten().notesAndRests
    if not len(events):
        return "a voice has no notes"
    end = max(float(e.offset + e.quarterLength) for e in events)
    steps = np.full(int(round(end * 4)), SILENCE, dtype=np.int64)
    for e in events:
        if e.isRest or e.quarterLength == 0:
            continue
        start, stop = float(e.offset) * 4, float(e.offset + e.quarterLength) * 4
        if start != int(start) or stop != int(stop):
            return "a note is off the 16th-note grid (triplet or grace note)"
        pitch = max(p.midi for p in e.pitches)  # a divisi chord keeps its top note
        steps[int(start) : int(stop)] = pitch
    return steps


def load_jsb_json(path: Path) -> list[Piece]:
    """The JSB Chorales benchmark (``Jsb16thSeparated.json``): train/valid/test grids."""
    path = Path(path)
    if not path.is_file():
        raise RepriseError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RepriseError(f"{path}: not a JSON file ({err})") from err
    if not isinstance(data, dict) or not {"train", "valid", "test"} <= data.keys():
        raise RepriseError(f"{path}: expected keys train, valid and test (JSB Chorales format)")
    pieces = []
    for split in ("train", "valid", "test"):
        for i, steps in enumerate(data[split]):
            grid = np.asarray(steps, dtype=np.int64)
            if grid.ndim != 2 or grid.shape[1] != 4:
                raise RepriseError(f"{path}: {split}[{i}] is not a list of 4-voice steps")
            pieces.append(Piece(f"jsb/{split}/{i:03d}", grid, split))
    return pieces
