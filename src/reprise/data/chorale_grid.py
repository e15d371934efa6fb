"""The chorale grid: four voices on a 16th-note grid, serialised in raster-scan order.

This is the encoding of the Music Transformer paper's JSB Chorales experiment
(after Coconet): at every 16th-note step the soprano, alto, tenor and bass each
get one token, either a pitch or silence. A note held for several steps repeats
its pitch, so a repeated note and a held note look the same; decoding therefore
merges consecutive equal pitches of a voice into one held note.

Ids: ``PAD``, ``BOS``, ``EOS``, ``SILENCE``, then one id per MIDI pitch from
``pitch_min`` to ``pitch_max``.

With ``soprano_ahead = k`` > 0 the soprano runs ``k`` steps ahead of the other
voices: frame ``f`` holds the soprano of step ``f`` and the alto, tenor and bass
of step ``f - k`` (``SILENCE`` where a step does not exist: the first ``k``
frames' lower voices, the last ``k`` frames' soprano). A decoder-only model of
this stream writes each chord knowing the melody a bar or two ahead, as a
harmoniser must; the soprano is then given (forced) and not scored
(:meth:`ChoraleGrid.scored`), as in the anticipation of Thickstun et al. (2023).

``voice_order`` is the order the voices are written in within a step, soprano first:
"SATB" (the paper's raster scan) or e.g. "SBAT", the outer voices first and then the
inner ones, as four-part harmony is taught, so that the voice written last, which
must avoid parallels with all three before it, is an inner voice with chord tones to
choose from rather than the bass (docs/quality.md, round 6). A frame's slot ``j``
holds the voice ``voice_order[j]``; grids (:meth:`decode_grid`) are always S, A, T, B.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import symusic

from reprise.constants import TICKS_PER_QUARTER, TICKS_PER_STEP
from reprise.data.tokenizer import Tokenizer, known_fields, register, shift_bounds
from reprise.errors import RepriseError

VOICES = ("Soprano", "Alto", "Tenor", "Bass")
VOICE_LETTERS = "SATB"
SILENCE = -1  # pitch value for "this voice is silent" in grids, as in the JSB JSON
STEPS_PER_BAR = 16


@dataclass
class ChoraleGrid(Tokenizer):
    """Raster-scan tokenizer for 4-voice grids; ``voice_ranges`` bound sampling."""

    pitch_min: int = 21
    pitch_max: int = 108
    voice_ranges: list[tuple[int, int]] = field(default_factory=lambda: [(21, 108)] * 4)
    tempo_qpm: float = 80.0
    soprano_ahead: int = 0  # steps the soprano runs ahead of alto, tenor and bass (a harmoniser's stream)
    voice_order: str = "SATB"  # the order of the voices within a step; the soprano first

    def __post_init__(self) -> None:
        if sorted(self.voice_order) != sorted(VOICE_LETTERS) or self.voice_order[0] != "S":
            raise RepriseError(
                f"voice order {self.voice_order!r} must name S, A, T and B once each, soprano first (e.g. SBAT)"
            )

    name = "chorale-grid"
    frame = 4
    silence_id = 3

    @property
    def vocab_size(self) -> int:
        return 4 + self.pitch_max - self.pitch_min + 1

    @property
    def slot_voices(self) -> np.ndarray:
        """The voice (0 = soprano ... 3 = bass) that each slot of a frame holds."""
        return np.array([VOICE_LETTERS.index(letter) for letter in self.voice_order])

    def token_names(self) -> list[str]:
        return ["PAD", "BOS", "EOS", "SILENCE"] + [f"PITCH_{p}" for p in range(self.pitch_min, self.pitch_max + 1)]

    # -- grid <-> ids ---------------------------------------------------------
    def encode_grid(self, grid: np.ndarray, eos: bool = True) -> np.ndarray:
        """``(steps, 4)`` pitches (-1 = silence) -> ``BOS s0 a0 t0 b0 s1 ... [EOS]``."""
        grid = np.asarray(grid)
        if grid.ndim != 2 or grid.shape[1] != 4:
            raise RepriseError(f"a chorale grid needs 4 voices per step, got shape {grid.shape}")
        sounding = grid[grid != SILENCE]
        if sounding.size and (sounding.min() < self.pitch_min or sounding.max() > self.pitch_max):
            raise RepriseError(
                f"pitch {int(sounding.min())}..{int(sounding.max())} outside the vocabulary "
                f"{self.pitch_min}..{self.pitch_max}"
            )
        frames = self._frames(grid)[:, self.slot_voices]
        body = np.where(frames == SILENCE, self.silence_id, frames - self.pitch_min + 4).reshape(-1)
        parts = [[self.bos_id], body, [self.eos_id] if eos else []]
        return np.concatenate(parts).astype(np.int64)

    def decode_grid(self, ids: np.ndarray) -> np.ndarray:
        """Ids -> ``(steps, 4)`` pitch grid; specials are dropped, a ragged tail is cut."""
        ids = np.asarray(ids)
        body = ids[ids >= self.silence_id]
        body = body[: len(body) // 4 * 4]
        frames = np.where(body == self.silence_id, SILENCE, body - 4 + self.pitch_min).reshape(-1, 4)
        frames = frames[:, np.argsort(self.slot_voices)]
        k = self.soprano_ahead
        if not k:
            return frames
        steps = max(0, len(frames) - k)
        return np.concatenate([frames[:steps, :1], frames[k : k + steps, 1:]], axis=1)

    def _frames(self, grid: np.ndarray) -> np.ndarray:
        """The frames of a grid: its steps, or with ``soprano_ahead`` the soprano moved that far ahead."""
        k = self.soprano_ahead
        if not k:
            return grid
        frames = np.full((len(grid) + k, 4), SILENCE, dtype=grid.dtype)
        frames[: len(grid), 0], frames[k:, 1:] = grid[:, 0], grid[:, 1:]
        return frames

    def translate(self, ids: np.ndarray, source: Tokenizer) -> np.ndarray | None:
        """Another chorale grid's ids over the same pitches (e.g. without the soprano ahead) in this grid."""
        if not isinstance(source, ChoraleGrid) or (source.pitch_min, source.pitch_max) != (
            self.pitch_min,
            self.pitch_max,
        ):
            return None
        return self.encode_grid(source.decode_grid(ids), eos=bool(len(ids)) and ids[-1] == self.eos_id)

    @property
    def task(self) -> str:
        return "harmonize" if self.soprano_ahead else "continue"

    def scored(self, ids: np.ndarray) -> np.ndarray | None:
        """With ``soprano_ahead``, the soprano is given: only alto, tenor and bass of real steps and the
        end are scored. ``None`` (all) otherwise."""
        if not self.soprano_ahead:
            return None
        return self.lower_voices(ids) | (np.asarray(ids) == self.eos_id)

    def lower_voices(self, ids: np.ndarray) -> np.ndarray:
        """Which of ``ids`` (``BOS`` first) are alto, tenor or bass of a real step (not a filler)."""
        ids = np.asarray(ids)
        frame, voice = np.divmod(np.arange(len(ids)) - 1, 4)
        return (voice > 0) & (frame >= self.soprano_ahead) & (ids >= self.silence_id)

    def id_pitches(self) -> np.ndarray:
        """The MIDI pitch each id stands for, ``SILENCE`` (-1) for silence and the specials."""
        return np.r_[np.full(4, SILENCE), np.arange(self.pitch_min, self.pitch_max + 1)]

    # -- MIDI ---------------------------------------------------------------------
    def decode(self, ids: np.ndarray) -> symusic.Score:
        return grid_to_score(self.decode_grid(ids), self.tempo_qpm)

    def encode_score(self, score: symusic.Score) -> np.ndarray:
        return self.encode_grid(score_to_grid(score))

    # -- structure ---------------------------------------------------------------
    def tokens_per_bar(self) -> int:
        return STEPS_PER_BAR * 4

    def allowed_next(self, position: int) -> np.ndarray:
        mask = np.zeros(self.vocab_size, dtype=bool)
        if position == 0:
            mask[self.bos_id] = True
            return mask
        voice = self.slot_voices[(position - 1) % 4]
        low, high = self.voice_ranges[voice]
        mask[self.silence_id] = True
        mask[low - self.pitch_min + 4 : high - self.pitch_min + 5] = True
        mask[self.eos_id] = voice == 0
        return mask

    def token_notes(self, ids: np.ndarray) -> np.ndarray:
        """Every step's token of a voice belongs to the held note it repeats (-1: silence, specials)."""
        ids = np.asarray(ids)
        grid = self.decode_grid(ids)
        notes = np.full(grid.shape, -1, dtype=np.int64)
        first = 0
        for v in range(4):
            column = grid[:, v]
            onset = np.r_[True, column[1:] != column[:-1]][: len(column)]  # where grid_to_score starts a run
            sounding = column != SILENCE
            notes[:, v] = np.where(sounding, np.cumsum(onset & sounding) - 1 + first, -1)
            first += int((onset & sounding).sum())
        body = np.flatnonzero(ids >= self.silence_id)
        frame, slot = np.divmod(np.arange(len(body)), 4)
        voice = self.slot_voices[slot]
        step = frame - np.where(voice > 0, self.soprano_ahead, 0)
        real = (step >= 0) & (step < len(grid))
        owner = np.full(len(ids), -1, dtype=np.int64)
        owner[body[real]] = notes[step[real], voice[real]]
        return owner

    def fit(self, train: list[np.ndarray]) -> None:
        """Set each voice's sampling range to the pitches it uses in the training pieces."""
        stacked = np.concatenate([self.decode_grid(ids) for ids in train])
        ranges = []
        for v in range(4):
            sounding = stacked[:, v][stacked[:, v] != SILENCE]
            ranges.append((int(sounding.min()), int(sounding.max())))
        self.voice_ranges = ranges

    def transpose_bounds(self, ids: np.ndarray) -> tuple[int, int] | None:
        """Shifts that keep every voice inside its (fitted) voice range.

        Windows start at ``BOS`` or on a step boundary, so token ``j`` belongs to
        slot ``(j - 1) % 4``.
        """
        voice = self.slot_voices[(np.arange(len(ids)) - 1) % 4]
        pitched = ids > self.silence_id
        if not pitched.any():
            return None
        used = [v for v in range(4) if pitched[voice == v].any()]
        lows = np.array([ids[pitched & (voice == v)].min() for v in used]) - 4 + self.pitch_min
        highs = np.array([ids[pitched & (voice == v)].max() for v in used]) - 4 + self.pitch_min
        ranges = np.array([self.voice_ranges[v] for v in used])
        return shift_bounds(lows, highs, ranges[:, 0], ranges[:, 1])

    def transposed(self, ids: np.ndarray, shift: int) -> np.ndarray:
        return np.where(ids > self.silence_id, ids + shift, ids)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChoraleGrid:
        fields = known_fields(cls, data)
        fields["voice_ranges"] = [tuple(r) for r in fields["voice_ranges"]]
        return cls(**fields)


register(ChoraleGrid)


def grid_to_score(grid: np.ndarray, tempo_qpm: float = 80.0) -> symusic.Score:
    """A 4-track score (S, A, T, B) where runs of equal pitch become one held note."""
    score = symusic.Score(TICKS_PER_QUARTER)
    score.tempos.append(symusic.Tempo(0, tempo_qpm))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    for v, voice in enumerate(VOICES):
        track = symusic.Track(name=voice, program=0)
        column = grid[:, v] if len(grid) else np.zeros(0, dtype=int)
        start = 0
        for step in range(1, len(column) + 1):
            if step == len(column) or column[step] != column[start]:
                if column[start] != SILENCE:
                    track.notes.append(
                        symusic.Note(
                            start * TICKS_PER_STEP,
                            (step - start) * TICKS_PER_STEP,
                            int(column[start]),
                            80,
                        )
                    )
                start = step
        score.tracks.append(track)
    return score


def score_to_grid(score: symusic.Score) -> np.ndarray:
    """A 4-voice score (one voice per pitched track with notes) on the 16th grid, highest voice first.

    Voices are ordered by their mean pitch over the steps they sound, which a
    decoded grid keeps, so that reading it back gives the same grid.
    """
    tracks = [t for t in score.tracks if len(t.notes) and not t.is_drum]
    if len(tracks) != 4:
        raise RepriseError(f"the chorale grid needs 4 voice tracks with notes, found {len(tracks)}")
    step = score.tpq / 4
    spans = [[(round(n.time / step), round((n.time + n.duration) / step)) for n in t.notes] for t in tracks]
    n_steps = max(max(end, start + 1) for notes in spans for start, end in notes)  # to the last note's end
    grid = np.full((n_steps, 4), SILENCE, dtype=np.int64)
    for v, (track, notes) in enumerate(zip(tracks, spans)):
        for note, (start, end) in zip(track.notes, notes):
            grid[start : max(end, start + 1), v] = note.pitch
    height = [grid[:, v][grid[:, v] != SILENCE].mean() for v in range(4)]
    return grid[:, np.argsort(-np.array(height), kind="stable")]
