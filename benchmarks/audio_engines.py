"""MIDI-to-WAV synthesisers compared: render time, length, loudness and pitch.

    python benchmarks/audio_engines.py --midi ../shared/data/pop909/001.mid \
        --json audio.json [--markdown docs/audio.md] [--synth symusic --synth midirenderer]

Each synthesiser that works here (``reprise.audio.available_synths``; ask for others
with ``--synth`` to record why they fail) renders, through ``reprise.audio.render_audio``
and the default SoundFont (TimGM6mb.sf2 from pretty_midi); ``--synth symusic`` also
tries symusic's own synthesiser, which reprise does not use (it fails in symusic 0.6.0;
run with an older symusic first on PYTHONPATH to measure that one):

- the ``--midi`` file, timed (fastest of ``--repeats``); checked: the WAV lasts as
  long as the music plus the release tail, and how many quarter seconds of the
  music are silent (peak under 1% of full scale);
- single two-second piano notes (A2, C4, A4, A5), whose strongest frequency must be
  the note's fundamental: the largest error in cents is reported.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import symusic

from reprise.audio import (
    ENGINES,
    PEAK,
    TAIL_SECONDS,
    available_synths,
    default_soundfont,
    midi_seconds,
    render_audio,
)
from reprise.errors import RepriseError

PITCHES = (45, 60, 69, 81)  # A2, C4, A4, A5


def note_midi(pitch: int, folder: Path) -> Path:
    """A MIDI file of one two-second grand-piano note."""
    score = symusic.Score(480)
    score.tempos.append(symusic.Tempo(0, 120.0))
    track = symusic.Track(name="piano", program=0)
    track.notes.append(symusic.Note(0, 1920, pitch, 90))
    score.tracks.append(track)
    path = folder / f"note{pitch}.mid"
    score.dump_midi(str(path))
    return path


def pitch_error_cents(audio: np.ndarray, rate: int, pitch: int) -> float:
    """How far (cents) the first second's fundamental is from ``pitch``'s.

    The fundamental is the peak of the harmonic product spectrum (the magnitude
    spectrum times itself compressed 2x and 3x): a piano's second harmonic is often
    louder than its first, so the plain strongest frequency can be an octave high.
    """
    first = audio[:rate, 0].astype(float)
    spectrum = np.abs(np.fft.rfft(first * np.hanning(len(first))))
    n = len(spectrum) // 3
    product = spectrum[:n] * spectrum[: 2 * n : 2] * spectrum[: 3 * n : 3]
    product[: int(30 * len(first) / rate)] = 0  # nothing below 30 Hz
    peak_hz = np.argmax(product) * rate / len(first)
    expected = 440.0 * 2 ** ((pitch - 69) / 12)
    return float(1200 * abs(np.log2(max(peak_hz, 1.0) / expected)))


def symusic_audio(midi: Path) -> tuple[np.ndarray, int]:
    """``midi`` through symusic's synthesiser, fitted like ``render_audio``'s output (int16, music + tail)."""
    try:
        synth = symusic.Synthesizer(str(default_soundfont()), 44100, 0)
        audio = np.asarray(synth.render(symusic.Score(str(midi)), True))
    except TypeError as err:  # symusic 0.6.0: "Unable to convert function return value to a Python type"
        first_line = str(err).splitlines()[0]
        raise RepriseError(f"symusic {symusic.__version__}: render() cannot return audio ({first_line})") from err
    frames = round((midi_seconds(midi) + TAIL_SECONDS) * 44100)
    audio = np.pad(audio.T[:frames], ((0, max(0, frames - audio.shape[1])), (0, 0)))
    return np.round(audio * (PEAK * 32767 / max(np.abs(audio).max(), 1e-9))).astype(np.int16), 44100


def render(synth: str, midi: Path) -> tuple[np.ndarray, int]:
    return symusic_audio(midi) if synth == "symusic" else render_audio(midi, synth=synth)


def measure(synth: str, midi: Path, repeats: int, folder: Path) -> dict:
    """One synthesiser's row: timing and sanity on ``midi``, pitch error on single notes."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        audio, rate = render(synth, midi)
        best = min(best, time.perf_counter() - started)
    seconds = midi_seconds(midi)
    quarters = audio[: int(seconds * rate) // (rate // 4) * (rate // 4)].reshape(-1, rate // 4 * audio.shape[1])
    silent = int((np.abs(quarters.astype(float)).max(-1) < 0.01 * 32767).sum())
    cents = max(pitch_error_cents(*render(synth, note_midi(p, folder)), p) for p in PITCHES)
    return {
        "synth": synth,
        "render_seconds": round(best, 3),
        "music_seconds": round(seconds, 2),
        "realtime_factor": round(seconds / best, 1),
        "wav_seconds": round(len(audio) / rate, 3),
        "length_ok": abs(len(audio) / rate - seconds - TAIL_SECONDS) < 2 / rate,
        "rate": rate,
        "silent_quarters": silent,
        "quarters": len(quarters),
        "max_pitch_error_cents": round(cents, 1),
    }


def markdown(rows: list[dict], midi: Path, command: str) -> str:
    lines = [
        "| synthesiser | render time | × real time | WAV length ok | silent ¼-seconds | worst pitch error |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['synth']} | fails: {r['error']} | | | | |")
        else:
            lines.append(
                f"| {r['synth']} | {r['render_seconds']:.2f} s | {r['realtime_factor']:g}× | "
                f"{'yes' if r['length_ok'] else 'NO'} ({r['wav_seconds']:.2f} s) | "
                f"{r['silent_quarters']} of {r['quarters']} | {r['max_pitch_error_cents']:.0f} cents |"
            )
    return (
        f"Produced by `{command}` on `{midi.name}` ({rows[0].get('music_seconds', '?')} s of music).\n\n"
        + "\n".join(lines)
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--midi", type=Path, required=True, help="MIDI file to time (e.g. a POP909 song).")
    parser.add_argument(
        "--synth", action="append", choices=(*ENGINES, "symusic"), help="Synthesisers [default: all present]."
    )
    parser.add_argument("--repeats", type=int, default=2, help="Renders of --midi per synthesiser (fastest kept).")
    parser.add_argument("--json", type=Path, required=True, help="Where to write the rows.")
    parser.add_argument("--markdown", type=Path, help="Also write the table here (replacing the file).")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for synth in args.synth or available_synths():
            try:
                rows.append(measure(synth, args.midi, args.repeats, Path(tmp)))
            except RepriseError as err:
                rows.append({"synth": synth, "error": str(err)})
            print(json.dumps(rows[-1]))
    args.json.write_text(json.dumps(rows, indent=1))
    if args.markdown:
        args.markdown.write_text(
            markdown(
                rows,
                args.midi,
                "python benchmarks/audio_engines.py " + " ".join(f"--synth {s}" for s in args.synth or []),
            )
        )


if __name__ == "__main__":
    main()
