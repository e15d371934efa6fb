"""The one MIDI loader: a file or its bytes to a ``symusic.Score``, unreadable ones reported as one clear line."""

from __future__ import annotations

import re
from pathlib import Path

import symusic

from reprise.errors import RepriseError


def midi_from_bytes(data: bytes) -> symusic.Score:
    """The score in MIDI ``data``; a :class:`RepriseError` saying why (without a file name) if it can't be read."""
    if not data:
        raise RepriseError("empty file")
    try:
        return symusic.Score.from_midi(data)
    except Exception as err:  # symusic raises plain RuntimeErrors for bad files
        raise RepriseError(f"not a readable MIDI file ({_symusic_reason(err)})") from err


def _symusic_reason(err: Exception) -> str:
    """symusic's message without its wrapping: ``MiniMidi: <reason>: iostream error`` -> ``<reason>``."""
    text = re.sub(r"^\w+: ", "", str(err).strip())
    return re.sub(r": iostream error$", "", text).strip() or type(err).__name__


def read_midi(path: Path) -> symusic.Score:
    """The score in the MIDI file ``path``; a :class:`RepriseError` naming the file if it can't be read."""
    path = Path(path)
    if not path.is_file():
        raise RepriseError(f"{path}: no such MIDI file")
    try:
        return midi_from_bytes(path.read_bytes())
    except RepriseError as err:
        raise RepriseError(f"{path}: cannot read MIDI: {err}") from err
