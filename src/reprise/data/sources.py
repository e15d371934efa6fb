"""Where music comes from: source readers that list pieces and turn each into a score.

A source is listed in the main process as :class:`Item` s (a name, a reader and
its input), cheaply; each item is then read into a ``symusic.Score`` in a worker
process (:func:`read_item`), so a slow or crashing parser never stalls or kills
``prepare``. Supported sources:

- a folder of MIDI files (recursive) or a zip of them;
- a folder or zip of Humdrum ``**kern`` files (e.g. the Essen folk songs);
- a JSB Chorales JSON file (keeps its own train/valid/test split);
- ``bach``: music21's four-part chorales, on the 16th-note grid;
- any other collection bundled with music21 (``essen`` = ``essenFolksong``,
  ``ryansMammoth``, ``oneills1850``, ``palestrina``, ...): ABC books are split
  into tunes, other files are read whole.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import symusic

from reprise.errors import RepriseError
from reprise.constants import TICKS_PER_QUARTER
from reprise.data.chorale_grid import grid_to_score
from reprise.data.chorales import SCORE_SUFFIXES, load_jsb_json
from reprise.data.chorales import _read_chorale as _chorale_grid
from reprise.data.midi import midi_from_bytes

MIDI_SUFFIXES = (".mid", ".midi", ".kar")
KERN_SUFFIXES = (".krn",)
ALIASES = {"essen": "essenFolksong"}


@dataclass(frozen=True)
class Item:
    """One piece to read: ``reader`` names a function of :data:`READERS`, ``data`` is its input."""

    name: str
    reader: str
    data: Any
    sha1: str
    split: str | None = None  # fixed by the source (JSB), else drawn from the name


def list_source(source: str) -> tuple[list[Item], str]:
    """The items of ``source`` and the tokenizer that suits it best."""
    path = Path(source)
    if path.suffix == ".json":
        return _jsb_items(path), "chorale-grid"
    if path.is_dir():
        return _folder_items(path)
    if path.suffix == ".zip" and path.is_file():
        return _zip_items(path)
    if path.exists():
        raise RepriseError(f"{source}: not a folder, zip or JSB JSON file")
    corpus = ALIASES.get(source, source)
    if corpus in music21_collections():
        return _corpus_items(corpus)
    if "/" in source or path.suffix:
        raise RepriseError(f"{source}: no such file")
    raise RepriseError(
        f"{source}: unknown source; give a folder or zip of MIDI or **kern files, a JSB JSON file, "
        f"or a music21 collection ({', '.join(['essen', *music21_collections()])})"
    )


def read_item(item: Item) -> symusic.Score:
    """The item as a score; raises :class:`RepriseError` with the reason it cannot be used."""
    return READERS[item.reader](item.data)


def select_tracks(score: symusic.Score, tracks: tuple[str, ...] = ()) -> symusic.Score:
    """The score with only the pitched tracks that ``tracks`` names (all of them when empty).

    A track is chosen by its name (``MELODY``, any case) or its General MIDI
    program number (``0`` = piano). Raises, with the reason, when nothing is left.
    """
    notes = [t for t in score.tracks if len(t.notes)]
    if not notes:
        raise RepriseError("no notes")
    pitched = [t for t in notes if not t.is_drum]
    if not pitched:
        raise RepriseError("only drum tracks")
    wanted = {w.strip().lower() for w in tracks}
    chosen = [t for t in pitched if not wanted or t.name.strip().lower() in wanted or str(t.program) in wanted]
    if not chosen:
        names = ", ".join(f"{t.name or '(unnamed)'} (program {t.program})" for t in pitched)
        raise RepriseError(f"no track matches --tracks {','.join(tracks)}; it has {names}")
    out = score.copy()
    out.tracks = chosen
    return out


def music21_collections() -> list[str]:
    """The folders of music21's bundled corpus (composers and collections)."""
    from music21 import corpus

    root = Path(corpus.__file__).parent
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


# -- listing ----------------------------------------------------------------------
def _folder_items(folder: Path) -> tuple[list[Item], str]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    entries = [(p.relative_to(folder).as_posix(), p.read_bytes) for p in files]
    return _file_items(entries, f"{folder}")


def _zip_items(path: Path) -> tuple[list[Item], str]:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        raise RepriseError(f"{path}: not a readable zip ({err})") from err
    with archive:
        names = sorted(n for n in archive.namelist() if not n.endswith("/") and not Path(n).name.startswith("."))
        entries = [(n, lambda n=n: archive.read(n)) for n in names]
        return _file_items(entries, f"{path}")


def _file_items(entries: list, where: str) -> tuple[list[Item], str]:
    """MIDI and **kern entries (name, read-bytes function); other files are ignored."""
    items = []
    for name, read in entries:
        suffix = Path(name).suffix.lower()
        if suffix in MIDI_SUFFIXES or suffix in KERN_SUFFIXES:
            data = read()
            items.append(Item(name, "kern" if suffix in KERN_SUFFIXES else "midi", data, _sha1(data)))
    if not items:
        raise RepriseError(f"{where}: no MIDI (.mid, .midi) or **kern (.krn) files in it")
    kern = sum(i.reader == "kern" for i in items) > len(items) / 2
    return items, "melody-grid" if kern else "performance"


def _jsb_items(path: Path) -> list[Item]:
    return [Item(p.name, "grid", p.grid, _sha1(p.grid.tobytes()), p.split) for p in load_jsb_json(path)]


def _corpus_items(corpus: str) -> tuple[list[Item], str]:
    from music21 import corpus as m21

    paths = sorted(m21.getComposer(corpus))
    if corpus == "bach":
        items = [
            Item(f"bach/{p.stem}", "chorale", str(p), _sha1(p.read_bytes())) if p.suffix in SCORE_SUFFIXES
            else Item(f"bach/{p.stem}", "refuse", "a Roman-numeral analysis, not a score", _sha1(p.read_bytes()))
            for p in paths
        ]
        return items, "chorale-grid"
    items = []
    for p in paths:
        if p.suffix == ".abc":
            items += _abc_tunes(p, corpus)
        else:
            items.append(Item(f"{corpus}/{p.stem}", "music21", str(p), _sha1(p.read_bytes())))
    return items, "melody-grid" if all(i.reader == "abc" for i in items) else "performance"


def _abc_tunes(path: Path, corpus: str) -> list[Item]:
    """An ABC book split into its tunes (each starts with an ``X:`` line)."""
    text = path.read_text(encoding="latin-1")
    tunes = [t for t in re.split(r"\n(?=X:)", "\n" + text) if t.startswith("X:")]
    items = []
    for tune in tunes:
        number = tune.split("\n", 1)[0][2:].strip()
        items.append(Item(f"{corpus}/{path.stem}/{number}", "abc", tune, _sha1(tune.encode())))
    return items


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


# -- reading (in workers) -------------------------------------------------------------
def _read_music21(source: str, fmt: str | None = None) -> symusic.Score:
    from music21 import converter

    try:
        score = converter.parse(source, format=fmt) if fmt else converter.parse(source)
    except Exception as err:  # music21 raises many kinds of errors on odd files
        raise RepriseError(f"music21 cannot parse it ({type(err).__name__}: {err})") from err
    return music21_to_score(score)


def _read_kern(data: bytes) -> symusic.Score:
    if not data.strip():
        raise RepriseError("empty file")
    return _read_music21(data.decode("latin-1"), "humdrum")


def _read_chorale(path: str) -> symusic.Score:
    grid = _chorale_grid(path)
    if isinstance(grid, str):
        raise RepriseError(grid)
    return grid_to_score(grid)


def _refuse(reason: str) -> symusic.Score:
    """The reader of items known to be unusable while listing."""
    raise RepriseError(reason)


def music21_to_score(score) -> symusic.Score:
    """A music21 stream as a symusic score: one track per part, ties merged, at 480 ticks per quarter."""
    out = symusic.Score(TICKS_PER_QUARTER)
    parts = list(score.parts) or [score]
    for part in parts:
        track = symusic.Track(name=str(part.partName or ""), program=0)
        for element in part.stripTies().flatten().notes:
            start = round(float(element.offset) * TICKS_PER_QUARTER)
            length = round(float(element.quarterLength) * TICKS_PER_QUARTER)
            if length <= 0:  # grace notes
                continue
            for pitch in element.pitches:
                track.notes.append(symusic.Note(start, length, int(pitch.midi), 80))
        out.tracks.append(track)
    return out


READERS = {
    "midi": midi_from_bytes,
    "kern": _read_kern,
    "abc": lambda tune: _read_music21(tune, "abc"),
    "music21": _read_music21,
    "chorale": _read_chorale,
    "refuse": _refuse,
    "grid": lambda grid: grid_to_score(np.asarray(grid)),
}
