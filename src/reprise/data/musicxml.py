"""Writing scores as MusicXML, the format MuseScore and other notation programs open.

music21 does the notation: it reads the score as MIDI, quantises onsets and
durations to sixteenths and triplets, splits notes at bar lines into ties and
spells pitches. A full three-minute POP909 song takes about 30 s on one core;
a few bars take well under a second.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import symusic

from reprise.errors import RepriseError


def write_musicxml(score: symusic.Score, out: Path) -> Path:
    """Write ``score`` to the MusicXML file ``out`` (one part per track) and return ``out``."""
    import music21

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # music21 warns about every voice it has to guess
            stream = music21.converter.parseData(score.dumps_midi(), format="midi")
            stream.write("musicxml", fp=str(out))
    except (music21.Music21Exception, ValueError, IndexError) as err:
        raise RepriseError(f"{out}: cannot write the score as MusicXML ({err})") from err
    return out
