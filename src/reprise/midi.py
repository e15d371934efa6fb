"""Reading MIDI files with symusic, reporting unreadable ones as one clear line."""

from __future__ import annotations

from pathlib import Path

import symusic

from reprise.errors import RepriseError


def read_midi(path: Path) -> symusic.Score:
    """The score in the MIDI file ``path``; a :class:`RepriseError` naming the file if it can't be read."""
    path = Path(path)
    if not path.is_file():
        raise RepriseError(f"{path}: no such MIDI file")
    try:
        return symusic.Score(str(path))
    except Exception as err:  # symusic raises plain RuntimeErrors for bad files
        raise RepriseError(f"{path}: cannot read MIDI ({err})") from err
