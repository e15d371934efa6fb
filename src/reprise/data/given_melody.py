"""A melody given by a user, on the 16th-note grid: read from a one-voice score, checked against a soprano range.

`reprise harmonize` and `accompany` and the studio take a melody as a MIDI or MusicXML
file; it becomes one pitch per 16th step here, with an error that says where a note
is off the grid or two notes sound at once, and what fixes it.
"""

from __future__ import annotations

import numpy as np
import symusic

from reprise.data.chorale_grid import SILENCE, STEPS_PER_BAR, ChoraleGrid
from reprise.errors import RepriseError


def melody_line(score: symusic.Score, quantize: bool = False) -> np.ndarray:
    """The pitch at each 16th step (-1: silent) of a one-voice score.

    Refuses, saying where, a note off the 16th-note grid and two notes sounding at
    once. ``quantize`` is the documented fix-up for played-in melodies: onsets and
    ends are rounded to the nearest 16th, and a note that still overlaps the next
    is cut where the next starts (notes starting together stay an error).
    """
    step = score.tpq / 4
    notes = sorted((n.time / step, n.end / step, n.pitch) for t in score.tracks for n in t.notes)
    if not notes:
        raise RepriseError("the melody has no notes")
    steps = np.full(max(max(round(end), round(start) + 1) for start, end, _ in notes), SILENCE, dtype=np.int64)
    for i, (start, end, pitch) in enumerate(notes):
        if not quantize and (start != int(start) or end != int(end)):
            raise RepriseError(
                f"the note at {_bar_beat(start)} (MIDI pitch {pitch}) is off the 16th-note grid; "
                "--quantize rounds notes to it"
            )
        first = round(start)
        last = max(round(end), first + 1)
        if i + 1 < len(notes) and notes[i + 1][0] < end:
            if not quantize or round(notes[i + 1][0]) <= first:
                raise RepriseError(
                    f"the melody is not one voice: MIDI pitches {pitch} and {notes[i + 1][2]} sound "
                    f"together at {_bar_beat(notes[i + 1][0])}; give a one-voice track"
                    + ("" if quantize else " (--quantize cuts notes that overlap the next)")
                )
            last = round(notes[i + 1][0])
        steps[first:last] = pitch
    return steps


def fit_soprano(steps: np.ndarray, tokenizer: ChoraleGrid) -> None:
    """Refuse a melody outside the soprano range of the training chorales, suggesting a transposition."""
    low, high = tokenizer.voice_ranges[0]
    sounding = steps[steps != SILENCE]
    if not len(sounding) or (sounding.min() >= low and sounding.max() <= high):
        return
    shifts = list(range(low - int(sounding.min()), high - int(sounding.max()) + 1))
    hint = (
        f"--transpose {min(shifts, key=lambda s: (s % 12 != 0, abs(s)))} fits it"
        if shifts
        else "it spans more than that range"
    )
    raise RepriseError(
        f"the melody spans MIDI pitches {int(sounding.min())}..{int(sounding.max())}, outside the "
        f"soprano range of the training chorales ({low}..{high}); {hint}"
    )


def _bar_beat(step: float) -> str:
    """A 16th-step position as ``bar B, beat b`` (4/4, from 1)."""
    bar, within = divmod(step, STEPS_PER_BAR)
    return f"bar {int(bar) + 1}, beat {round(within / 4 + 1, 2):g}"
