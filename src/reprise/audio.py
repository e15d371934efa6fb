"""MIDI to WAV through a General MIDI SoundFont, with synthesisers that pip installs.

Two synthesisers, tried in this order by ``synth="auto"``:

- ``fluidsynth``: FluidSynth through pyfluidsynth, when the FluidSynth library
  itself is installed (Debian: ``apt-get install libfluidsynth3``); the reference
  SoundFont player.
- ``midirenderer``: a self-contained wheel (a Rust SoundFont synthesiser) that
  needs nothing outside PyPI; always available.

symusic's own synthesiser is not used: in symusic 0.6.0 ``Synthesizer.render``
cannot return its buffer to Python ("Unable to convert function return value"),
and pinning symusic below 0.6 would hold back every other user of symusic.

The default SoundFont is TimGM6mb.sf2 (6 MB, General MIDI), which ships inside the
pretty_midi package, so nothing is ever downloaded. Every synthesiser's output is
cut or padded to the MIDI file's length plus a short release tail, so the WAV's
duration always matches the music, and scaled to the same peak level.
"""

from __future__ import annotations

import functools
import io
import tempfile
import wave
from importlib import resources
from pathlib import Path
from typing import BinaryIO

import numpy as np

from reprise.data.midi import read_midi
from reprise.errors import RepriseError

SYNTHS = ("auto", "fluidsynth", "midirenderer")
TAIL_SECONDS = 1.0  # room for the last notes' release after the music ends
PEAK = 0.7  # loudest sample as a fraction of full scale (-3 dBFS): synthesisers' levels differ a lot


def default_soundfont() -> Path:
    """TimGM6mb.sf2 from the installed pretty_midi package."""
    return Path(str(resources.files("pretty_midi") / "TimGM6mb.sf2"))


@functools.cache
def fluidsynth_available() -> bool:
    """Whether pyfluidsynth can load the FluidSynth library on this machine."""
    try:
        import fluidsynth  # noqa: F401  (pyfluidsynth raises ImportError without libfluidsynth)
    except (ImportError, OSError):
        return False
    return True


def midi_seconds(midi: Path) -> float:
    """How long the music in ``midi`` lasts, in seconds (tempo changes included)."""
    return float(read_midi(midi).to("second").end())


def render_wav(midi: Path, out: Path, soundfont: Path | None = None, synth: str = "auto") -> Path:
    """Render the MIDI file ``midi`` to the 16-bit stereo WAV ``out`` and return ``out``."""
    midi, soundfont = Path(midi), Path(soundfont) if soundfont else default_soundfont()
    seconds = midi_seconds(midi)  # also checks that the file is readable MIDI
    if not soundfont.is_file():
        raise RepriseError(f"{soundfont}: no such SoundFont file")
    audio, rate = _render(_pick(synth), midi, soundfont)
    audio = _normalise(_fit(audio, round((seconds + TAIL_SECONDS) * rate)))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_wav(out, audio, rate)
    return out


def read_wav(source: Path | BinaryIO) -> tuple[np.ndarray, int]:
    """A 16-bit PCM WAV (a file or a stream) as ``(frames, channels)`` int16 samples and its sample rate."""
    with wave.open(str(source) if isinstance(source, Path) else source, "rb") as f:
        if f.getsampwidth() != 2:
            raise RepriseError(f"{source}: expected 16-bit PCM audio, got {8 * f.getsampwidth()}-bit")
        samples = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
        return samples.reshape(-1, f.getnchannels()), f.getframerate()


def _pick(synth: str) -> str:
    """The synthesiser that ``synth`` names, resolving ``auto`` to the best one present."""
    if synth not in SYNTHS:
        raise RepriseError(f"unknown synthesiser {synth!r}; choose one of {', '.join(SYNTHS)}")
    if synth == "fluidsynth" and not fluidsynth_available():
        raise RepriseError("fluidsynth: the FluidSynth library is not installed (apt-get install libfluidsynth3)")
    if synth == "auto":
        return "fluidsynth" if fluidsynth_available() else "midirenderer"
    return synth


def _render(synth: str, midi: Path, soundfont: Path) -> tuple[np.ndarray, int]:
    """``(frames, 2)`` int16 audio and its sample rate from the chosen synthesiser."""
    try:
        return _fluidsynth(midi, soundfont) if synth == "fluidsynth" else _midirenderer(midi, soundfont)
    except (ValueError, RuntimeError, OSError) as err:
        raise RepriseError(f"{midi}: {synth} could not render it with {soundfont.name} ({err})") from err


def _midirenderer(midi: Path, soundfont: Path) -> tuple[np.ndarray, int]:
    import midirenderer

    data = midirenderer.render_wave_from(soundfont.read_bytes(), midi.read_bytes())
    return read_wav(io.BytesIO(data))


def _fluidsynth(midi: Path, soundfont: Path) -> tuple[np.ndarray, int]:
    import fluidsynth

    synth = fluidsynth.Synth(samplerate=44100.0)
    try:
        if synth.sfload(str(soundfont)) < 0:
            raise RuntimeError("FluidSynth cannot load the SoundFont")
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "out.wav"
            synth.midi2audio(str(midi), str(wav))
            return read_wav(wav)
    finally:
        synth.delete()


def _fit(audio: np.ndarray, frames: int) -> np.ndarray:
    """``audio`` cut, or padded with silence, to exactly ``frames`` frames."""
    if len(audio) >= frames:
        return audio[:frames]
    return np.concatenate([audio, np.zeros((frames - len(audio), audio.shape[1]), dtype=audio.dtype)])


def _normalise(audio: np.ndarray) -> np.ndarray:
    """``audio`` scaled so that its loudest sample is at ``PEAK`` (silence stays silent)."""
    peak = int(np.abs(audio.astype(np.int32)).max(initial=0))
    if peak == 0:
        return audio
    return np.round(audio * (PEAK * 32767 / peak)).astype(np.int16)


def _write_wav(out: Path, audio: np.ndarray, rate: int) -> None:
    with wave.open(str(out), "wb") as f:
        f.setnchannels(audio.shape[1])
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(audio.astype("<i2").tobytes())
