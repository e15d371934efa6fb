"""``reprise prepare``: turn a source of music into a dataset directory.

A source is a music21 corpus name (``bach``) or a path to a JSB Chorales JSON
file. Each source knows how to yield pieces; the tokenizer turns them into ids;
:func:`reprise.data.dataset.write_dataset` writes them atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

from reprise import RepriseError
from reprise.data.chorale_grid import ChoraleGrid
from reprise.data.chorales import Piece, load_jsb_json, load_music21_chorales
from reprise.data.dataset import EncodedPiece, write_dataset

SOURCES = ("bach", "PATH/TO/Jsb16thSeparated.json")


def prepare(
    source: str,
    out: Path,
    tokenizer: str = "chorale-grid",
    valid: float = 0.1,
    test: float = 0.1,
    workers: int | None = None,
) -> Path:
    """Read ``source``, tokenize every piece and write the dataset to ``out``."""
    if tokenizer != "chorale-grid":
        raise RepriseError(f"unknown tokenizer {tokenizer!r}; available: chorale-grid")
    workers = workers or min(4, os.cpu_count() or 1)
    pieces, skipped = _read_source(source, valid, test, workers)
    if not pieces:
        raise RepriseError(f"{source}: no usable pieces")
    grid = ChoraleGrid()
    grid.fit_voice_ranges([p.grid for p in pieces if p.split == "train"] or [p.grid for p in pieces])
    encoded = [EncodedPiece(p.name, grid.encode_grid(p.grid), p.split) for p in pieces]
    return write_dataset(out, encoded, grid, source, skipped)


def _read_source(source: str, valid: float, test: float, workers: int) -> tuple[list[Piece], list[tuple[str, str]]]:
    if source == "bach":
        return load_music21_chorales(workers, valid, test)
    path = Path(source)
    if path.suffix == ".json" or path.is_file():
        return load_jsb_json(path), []
    raise RepriseError(f"{source}: unknown source; give one of: {', '.join(SOURCES)}")
