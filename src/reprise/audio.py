"""MIDI to WAV through a General MIDI SoundFont, with synthesisers that pip installs.

Three synthesisers, tried in this order by ``synth="auto"`` (docs/audio.md compares them):

- ``fluidsynth``: FluidSynth through pyfluidsynth, when the FluidSynth library
  itself is installed (Debian: ``apt-get install libfluidsynth3``; the ``fluidsynth``
  extra installs pyfluidsynth); the reference SoundFont player.
- ``tinysoundfont``: TinySoundFont (maintained; 1.5x faster than midirenderer), when
  installed with ``pip install --no-deps tinysoundfont``: its declared dependency
  pyaudio, used only for live playback, has no wheel for Linux or macOS and fails to
  build without PortAudio's headers, so it cannot be a required dependency.
- ``midirenderer``: a self-contained wheel (a Rust SoundFont synthesiser) that needs
  nothing outside PyPI; always available, so every install can render.

symusic's own synthesiser is not among them: in symusic 0.6.0 ``render`` cannot
return its buffer to Python, and 0.5.9's plays TimGM6mb's notes 13 to 26 semitones
sharp (measured in benchmarks/audio_engines.py).

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
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import BinaryIO

import numpy as np

from reprise.data.midi import read_midi
from reprise.errors import RepriseError

ENGINES = ("fluidsynth", "tinysoundfont", "midirenderer")  # ``auto`` takes the first available
SYNTHS = ("auto", *ENGINES)
TAIL_SECONDS = 1.0  # room for the last notes' release after the music ends
PEAK = 0.7  # loudest sample as a fraction of full scale (-3 dBFS): synthesisers' levels differ a lot
RATE = 44100  # sample rate asked of the synthesisers that take one


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


@functools.cache
def tinysoundfont_available() -> bool:
    """Whether the tinysoundfont package is installed."""
    try:
        import tinysoundfont  # noqa: F401
    except ImportError:
        return False
    return True


def available_synths() -> tuple[str, ...]:
    """The synthesisers that work on this machine, in ``auto``'s order of preference."""
    checks = {
        "fluidsynth": fluidsynth_available,
        "tinysoundfont": tinysoundfont_available,
        "midirenderer": lambda: True,
    }
    return tuple(name for name in ENGINES if checks[name]())


def midi_seconds(midi: Path) -> float:
    """How long the music in ``midi`` lasts, in seconds (tempo changes included)."""
    return float(read_midi(midi).to("second").end())


def render_wav(midi: Path, out: Path, soundfont: Path | None = None, synth: str = "auto") -> Path:
    """Render the MIDI file ``midi`` to the 16-bit stereo WAV ``out`` and return ``out``."""
    audio, rate = render_audio(midi, soundfont, synth)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_wav(out, audio, rate)
    return out


def render_audio(midi: Path, soundfont: Path | None = None, synth: str = "auto") -> tuple[np.ndarray, int]:
    """``midi`` as ``(frames, 2)`` int16 samples (the music plus ``TAIL_SECONDS``, peak at ``PEAK``) and their rate."""
    midi, soundfont = Path(midi), Path(soundfont) if soundfont else default_soundfont()
    seconds = midi_seconds(midi)  # also checks that the file is readable MIDI
    if not soundfont.is_file():
        raise RepriseError(f"{soundfont}: no such SoundFont file")
    name = _pick(synth)
    try:
        audio, rate = _RENDERERS[name](midi, soundfont, seconds + TAIL_SECONDS)
    except (ValueError, RuntimeError, OSError, TypeError) as err:
        raise RepriseError(f"{midi}: {name} could not render it with {soundfont.name} ({err})") from err
    return _normalise(_fit(audio, round((seconds + TAIL_SECONDS) * rate))), rate


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
    present = available_synths()
    if synth == "auto":
        return present[0]
    if synth not in present:
        raise RepriseError(f"{synth}: {_MISSING[synth]}")
    return synth


_MISSING = {
    "fluidsynth": "the FluidSynth library is not installed (apt-get install libfluidsynth3)",
    "tinysoundfont": "not installed (pip install --no-deps tinysoundfont)",
}


def _midirenderer(midi: Path, soundfont: Path, seconds: float) -> tuple[np.ndarray, int]:
    import midirenderer

    return read_wav(io.BytesIO(midirenderer.render_wave_from(soundfont.read_bytes(), midi.read_bytes())))


def _tinysoundfont(midi: Path, soundfont: Path, seconds: float) -> tuple[np.ndarray, int]:
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=RATE)
    synth.sfload(str(soundfont))
    tinysoundfont.Sequencer(synth).midi_load(str(midi))
    frames = round(seconds * RATE)
    return np.frombuffer(synth.generate(frames), dtype=np.float32).reshape(frames, 2), RATE


def _fluidsynth(midi: Path, soundfont: Path, seconds: float) -> tuple[np.ndarray, int]:
    import fluidsynth

    synth = fluidsynth.Synth(samplerate=float(RATE))
    try:
        if synth.sfload(str(soundfont)) < 0:
            raise RuntimeError("FluidSynth cannot load the SoundFont")
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "out.wav"
            synth.midi2audio(str(midi), str(wav))
            return read_wav(wav)
    finally:
        synth.delete()


_RENDERERS: dict[str, Callable[[Path, Path, float], tuple[np.ndarray, int]]] = {
    "fluidsynth": _fluidsynth,
    "tinysoundfont": _tinysoundfont,
    "midirenderer": _midirenderer,
}


def _fit(audio: np.ndarray, frames: int) -> np.ndarray:
    """``audio`` cut, or padded with silence, to exactly ``frames`` frames."""
    if len(audio) >= frames:
        return audio[:frames]
    return np.concatenate([audio, np.zeros((frames - len(audio), audio.shape[1]), dtype=audio.dtype)])


def _normalise(audio: np.ndarray) -> np.ndarray:
    """``audio`` (int16 or float samples) as int16 whose loudest sample is at ``PEAK`` (silence stays silent)."""
    audio = audio.astype(np.float64)
    peak = np.abs(audio).max(initial=0.0)
    if peak == 0:
        return audio.astype(np.int16)
    return np.round(audio * (PEAK * 32767 / peak)).astype(np.int16)


def _write_wav(out: Path, audio: np.ndarray, rate: int) -> None:
    with wave.open(str(out), "wb") as f:
        f.setnchannels(audio.shape[1])
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(audio.astype("<i2").tobytes())
