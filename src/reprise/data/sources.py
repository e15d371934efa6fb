"""Where music comes from: source readers that list pieces and turn each into a score.

A source is listed in the main process as :class:`Item` s (a name, a reader and
its input), cheaply: files and zip members are only named there (:class:`FileRef`).
Each item is then read into a ``symusic.Score`` in a worker process
(:func:`read_item`), which reads the file itself, never more than a size limit, so
that a slow or crashing parser never stalls or kills ``prepare`` and a zip bomb
costs at most the limit. Supported sources:

- a folder of MIDI files (recursive) or a zip of them;
- a folder or zip of Humdrum ``**kern`` files (e.g. the Essen folk songs);
- a JSB Chorales JSON file (keeps its own train/valid/test split);
- ``bach``: music21's four-part chorales, on the 16th-note grid;
- any other collection bundled with music21 (``essen`` = ``essenFolksong``,
  ``ryansMammoth``, ``oneills1850``, ``palestrina``, ...): ABC books are split
  into tunes, other files are read whole.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import symusic

from reprise.constants import TICKS_PER_QUARTER
from reprise.data.chorale_grid import grid_to_score
from reprise.data.chorales import SCORE_SUFFIXES, load_jsb_json
from reprise.data.chorales import _read_chorale as _chorale_grid
from reprise.data.midi import midi_from_bytes
from reprise.errors import RepriseError

MIDI_SUFFIXES = (".mid", ".midi", ".kar")
KERN_SUFFIXES = (".krn",)
ALIASES = {"essen": "essenFolksong"}
READ_CHUNK = 1 << 20  # bytes per read of a zip member, so that no read exceeds the size limit by more


@dataclass(frozen=True)
class FileRef:
    """A file to read later, in the worker: ``path`` itself, or its zip member ``member``."""

    path: str
    member: str | None = None

    def read(self, max_bytes: int | None = None) -> bytes:
        """The file's bytes; a :class:`RepriseError` when it is over ``max_bytes`` (checked before reading)."""
        if self.member is None:
            try:
                with open(self.path, "rb") as f:
                    _check_size(os.fstat(f.fileno()).st_size, max_bytes)
                    return _read_bounded(f, max_bytes)
            except OSError as err:
                raise RepriseError(f"cannot be read ({err.strerror or err})") from err
        try:
            archive = _open_zip(self.path, os.getpid())
            info = archive.getinfo(self.member)
            _check_size(info.file_size, max_bytes)  # as the zip declares it
            with archive.open(info) as f:
                return _read_bounded(f, max_bytes)  # in case the declaration lies
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as err:
            raise RepriseError(f"cannot be unpacked from the zip ({err})") from err


@dataclass(frozen=True)
class Item:
    """One piece to read: ``reader`` names a function of :data:`READERS`, ``data`` is its input
    (or a :class:`FileRef` to read it from)."""

    name: str
    reader: str
    data: Any
    sha1: str = ""  # of the input; for a FileRef, known once read
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


def read_item(item: Item, max_bytes: int | None = None) -> tuple[symusic.Score, str]:
    """The item as a score, and the SHA-1 of what it was read from.

    Raises :class:`RepriseError` with the reason it cannot be used, e.g. a file
    over ``max_bytes``.
    """
    if isinstance(item.data, FileRef):
        data = item.data.read(max_bytes)
        return READERS[item.reader](data), _sha1(data)
    return READERS[item.reader](item.data), item.sha1


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
    return _file_items([(p.relative_to(folder).as_posix(), FileRef(str(p))) for p in files], f"{folder}")


def _zip_items(path: Path) -> tuple[list[Item], str]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = sorted(n for n in archive.namelist() if not n.endswith("/") and not Path(n).name.startswith("."))
    except (zipfile.BadZipFile, OSError) as err:
        raise RepriseError(f"{path}: not a readable zip ({err})") from err
    return _file_items([(n, FileRef(str(path), n)) for n in names], f"{path}")


def _file_items(entries: list[tuple[str, FileRef]], where: str) -> tuple[list[Item], str]:
    """MIDI and **kern entries (name, where to read it); other files are ignored."""
    items = []
    for name, ref in entries:
        suffix = Path(name).suffix.lower()
        if suffix in MIDI_SUFFIXES or suffix in KERN_SUFFIXES:
            items.append(Item(name, "kern" if suffix in KERN_SUFFIXES else "midi", ref))
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
            Item(f"bach/{p.stem}", "chorale", str(p), _sha1(p.read_bytes()))
            if p.suffix in SCORE_SUFFIXES
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
@functools.lru_cache(maxsize=4)
def _open_zip(path: str, pid: int) -> zipfile.ZipFile:
    """The zip at ``path``, opened once per process: its directory takes long to read (30 ms for
    1,700 members), and a forked worker must not share its parent's file position."""
    return zipfile.ZipFile(path)


def _check_size(size: int, max_bytes: int | None, at_least: str = "") -> None:
    if max_bytes is not None and size > max_bytes:
        raise RepriseError(
            f"{at_least}{size / 2**20:,.1f} MB, over the limit of {max_bytes / 2**20:g} MB (--max-file-mb)"
        )


def _read_bounded(f, max_bytes: int | None) -> bytes:
    """All of ``f``, in chunks, failing as soon as it passes ``max_bytes``."""
    chunks, total = [], 0
    while chunk := f.read(READ_CHUNK):
        total += len(chunk)
        _check_size(total, max_bytes, "at least ")
        chunks.append(chunk)
    return b"".join(chunks)


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
        track = symusic.Track(name=str(getattr(part, "partName", None) or ""), program=0)  # a Score has none
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
