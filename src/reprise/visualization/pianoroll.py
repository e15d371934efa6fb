"""Piano-roll pictures of MIDI files: pitch against time in bars, one colour per track.

:func:`draw_roll` paints a score onto matplotlib axes (black-key shading, bar and
beat lines, note-name and bar-number axes) and returns where every note went, so
that other plots (attention arcs) can draw on top of it; :func:`plot_pianoroll`
is the stand-alone PNG that ``reprise plot pianoroll`` and ``generate`` write. For
arrangements, the tracks that were given (a soprano, a melody) are drawn hatched
in grey and a span that was generated (an infill) is shaded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import symusic
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from reprise.data.midi import read_midi
from reprise.data.tokenizer import score_notes

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
BLACK_KEYS = {1, 3, 6, 8, 10}
TRACK_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
GIVEN_COLOUR, GIVEN_HATCH, SPAN_COLOUR = "0.72", "////", "#fff3b0"


@dataclass(frozen=True)
class RollNote:
    """A note as drawn: ``start``/``end`` in bars from the beginning, ``track`` its index in the score."""

    track: int
    pitch: int
    start: float
    end: float


def note_name(pitch: int) -> str:
    """Scientific pitch notation, e.g. 60 -> ``C4``."""
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def track_colour(track: int) -> str:
    """The colour of the ``track``-th track, the same in every plot."""
    return TRACK_COLOURS[track % len(TRACK_COLOURS)]


def beats_per_bar(score: symusic.Score) -> float:
    """Quarter notes per bar from the first time signature (4/4 when there is none)."""
    if not len(score.time_signatures):
        return 4.0
    ts = score.time_signatures[0]
    return ts.numerator * 4 / ts.denominator


def roll_notes(score: symusic.Score) -> list[RollNote]:
    """The score's notes in :func:`~reprise.data.tokenizer.score_notes` order, timed in bars."""
    bar = score.tpq * beats_per_bar(score)
    return [RollNote(t, n.pitch, n.time / bar, (n.time + n.duration) / bar) for t, n in score_notes(score)]


def draw_roll(ax: Axes, score: symusic.Score, alpha: float = 1.0, given: Sequence[int] = ()) -> list[RollNote]:
    """Draw ``score`` as a piano roll on ``ax`` and return its notes as placed; tracks in ``given`` grey, hatched."""
    notes = roll_notes(score)
    pitches = [n.pitch for n in notes] or [60]
    low, high = min(pitches) - 2, max(pitches) + 2
    n_bars = max(1.0, max((n.end for n in notes), default=1.0))
    _draw_grid(ax, low, high, n_bars, beats_per_bar(score))
    for hatch in (None, GIVEN_HATCH):
        chosen = [n for n in notes if (n.track in given) == bool(hatch)]
        boxes = [Rectangle((n.start, n.pitch - 0.42), n.end - n.start, 0.84) for n in chosen]
        colours = [GIVEN_COLOUR if hatch else track_colour(n.track) for n in chosen]
        ax.add_collection(
            PatchCollection(
                boxes, facecolors=colours, edgecolors="0.15", linewidths=0.4, alpha=alpha, zorder=2, hatch=hatch
            )
        )
    ax.set_xlim(0, n_bars)
    ax.set_ylim(low - 0.5, high + 0.5)
    ax.set_xlabel("bar")
    ax.set_ylabel("pitch")
    return notes


def plot_pianoroll(
    midi: Path | symusic.Score,
    out: Path,
    title: str | None = None,
    given: Sequence[int] = (),
    generated_span: tuple[float, float] | None = None,
) -> Path:
    """Draw ``midi`` (a file or a score) as a piano roll into the PNG ``out``.

    ``given`` tracks are drawn grey and hatched (what the model was given); ``generated_span``
    ``(start, end)`` in bars is shaded (what it wrote, where the rest was given).
    """
    score = midi if isinstance(midi, symusic.Score) else read_midi(midi)
    fig = Figure(figsize=roll_figsize(score), dpi=110)
    ax = fig.subplots()
    notes = draw_roll(ax, score, given=given)
    extra = []
    if generated_span is not None:
        extra.append(ax.axvspan(*generated_span, color=SPAN_COLOUR, zorder=0.5, lw=0, label="generated span"))
    name = title or (Path(midi).name if not isinstance(midi, symusic.Score) else "piano roll")
    ax.set_title(f"{name}: {len(notes)} notes, {math.ceil(ax.get_xlim()[1] - 1e-9)} bars", loc="left")
    add_track_legend(ax, score, extra, given)
    fig.tight_layout()
    return save(fig, out)


def roll_figsize(score: symusic.Score, height: float = 5.0) -> tuple[float, float]:
    """A figure size that gives each bar about 1.3 inches (within 8..28 inches)."""
    n_bars = score.end() / (score.tpq * beats_per_bar(score)) if score.end() else 1
    return min(28.0, max(8.0, 2.5 + 1.3 * n_bars)), height


def add_track_legend(ax: Axes, score: symusic.Score, extra: Sequence[Artist] = (), given: Sequence[int] = ()) -> None:
    """A legend of the tracks that have notes (``given`` ones marked so) and ``extra`` handles, right of the axes."""
    handles = [
        Patch(
            facecolor=GIVEN_COLOUR,
            hatch=GIVEN_HATCH,
            edgecolor="0.15",
            lw=0.4,
            label=f"{t.name or f'track {i + 1}'} (given)",
        )
        if i in given
        else Patch(facecolor=track_colour(i), edgecolor="0.15", lw=0.4, label=t.name or f"track {i + 1}")
        for i, t in enumerate(score.tracks)
        if len(t.notes)
    ] + list(extra)
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1), fontsize=8, frameon=False)


def save(fig: Figure, out: Path) -> Path:
    """Write ``fig`` to ``out`` (creating its folder).

    Figures here are plain :class:`~matplotlib.figure.Figure` objects, not pyplot's:
    drawing files never touches the global backend (a notebook's inline plots keep
    working) and nothing needs closing.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def _draw_grid(ax: Axes, low: int, high: int, n_bars: float, beats: float) -> None:
    """Black-key rows, a line under every C, bar and beat lines; bars numbered from 1."""
    for pitch in range(low, high + 1):
        if pitch % 12 in BLACK_KEYS:
            ax.axhspan(pitch - 0.5, pitch + 0.5, color="0.94", lw=0, zorder=0)
        elif pitch % 12 == 0:
            ax.axhline(pitch - 0.5, color="0.75", lw=0.6, zorder=0)
    for beat in range(int(n_bars * beats) + 1):
        ax.axvline(
            beat / beats, color="0.55" if beat % beats == 0 else "0.88", lw=0.8 if beat % beats == 0 else 0.5, zorder=1
        )
    every = max(1, math.ceil(n_bars / 32))
    bars = range(0, math.ceil(n_bars - 1e-9), every)
    ax.set_xticks([b + 0.5 for b in bars], [str(b + 1) for b in bars])
    ax.tick_params(axis="x", length=0)
    cs = [p for p in range(low, high + 1) if p % 12 in (0, 7)]  # every C and G
    ax.set_yticks(cs, [note_name(p) for p in cs])
