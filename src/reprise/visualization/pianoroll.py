"""Piano-roll pictures of MIDI files: pitch against time, one colour per track, bar lines."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import symusic  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(pitch: int) -> str:
    """Scientific pitch notation, e.g. 60 -> ``C4``."""
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def plot_pianoroll(midi: Path | symusic.Score, out: Path, title: str | None = None) -> Path:
    """Draw ``midi`` as a piano roll into the PNG ``out``; x in bars, y in note names."""
    score = midi if isinstance(midi, symusic.Score) else symusic.Score(str(midi))
    bar = score.tpq * _beats_per_bar(score)
    tracks = [t for t in score.tracks if len(t.notes)]
    pitches = [n.pitch for t in tracks for n in t.notes] or [60]
    low, high = min(pitches) - 2, max(pitches) + 2
    n_bars = max(1.0, score.end() / bar)
    fig, ax = plt.subplots(figsize=(min(24, 3 + n_bars * 0.6), 5), dpi=100)
    colours = plt.get_cmap("tab10").colors
    for i, track in enumerate(tracks):
        colour = colours[i % len(colours)]
        for n in track.notes:
            ax.add_patch(Rectangle((n.time / bar, n.pitch - 0.4), n.duration / bar, 0.8, color=colour, lw=0))
    for b in range(int(n_bars) + 1):
        ax.axvline(b, color="0.8", lw=0.6, zorder=0)
    ax.set_xlim(0, n_bars)
    ax.set_ylim(low, high)
    ticks = [p for p in range(low, high + 1) if p % 12 in (0, 7)]  # every C and G
    ax.set_yticks(ticks, [note_name(p) for p in ticks])
    ax.set_xlabel("bar")
    ax.set_ylabel("pitch")
    ax.set_title(title or (Path(midi).name if not isinstance(midi, symusic.Score) else "piano roll"))
    names = [t.name or f"track {i + 1}" for i, t in enumerate(tracks)]
    ax.legend(handles=[Patch(color=colours[i % 10], label=n) for i, n in enumerate(names)], loc="upper right", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out)
    plt.close(fig)
    return out


def _beats_per_bar(score: symusic.Score) -> float:
    """Quarter notes per bar from the first time signature (4/4 when there is none)."""
    if not len(score.time_signatures):
        return 4.0
    ts = score.time_signatures[0]
    return ts.numerator * 4 / ts.denominator
