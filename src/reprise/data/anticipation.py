"""Anticipation: a melody interleaved into its accompaniment's stream, ahead of when it sounds.

After the Anticipatory Music Transformer (Thickstun et al. 2023). One decoder reads
and writes one stream: the accompaniment's performance events, with the notes of
the given melody (the *controls*) inserted ``anticipation`` (2 s; 0: where they sound) before they
sound. A model writing the accompaniment at time t has read the melody up to
about t + 2 s in its own stream, the music just written right before it; no
encoder, no cross-attention. Its accompaniment tokens are exactly the
``performance`` tokenizer's ids, so a model of the accompaniment alone
(``pop-piano``) is its initialisation (``--init``) and the two NLLs count the same
tokens (only the accompaniment is scored, :meth:`Anticipated.scored`).

A melody note is three control tokens: ``AT d`` (it sounds ``d`` 10 ms steps after
the stream's clock where it stands), ``PITCH p`` and ``DURATION`` (20 ms bins, up
to 2 s). A control stands before the first accompaniment event at whose clock
its anticipated time (onset - ``anticipation``) has come: a time shift moves the
clock by at most 1 s, so ``d`` is between 1 and 2 s, except at the start, where
everything due in the first 2 s stands right after ``BOS``. Generation
(:class:`MelodyAhead`) inserts the controls by the same rule while the model
writes, so what it sees when writing is what it was trained on.

Ids: the performance events' 391, then ``AT`` 0..200, ``PITCH`` 0..127, ``DURATION`` 1..100.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import symusic

from reprise.data.augment import Augmentation
from reprise.data.dataset import TokenDataset
from reprise.data.pairs import paired_indices
from reprise.data.performance import (
    NOTE_ON,
    QPM,
    STEPS_PER_SECOND,
    TIME_SHIFT,
    TPQ,
    VELOCITY,
    VOCAB_SIZE,
    Performance,
    notes_of,
    sustained_notes,
)
from reprise.data.tokenizer import register, shift_bounds
from reprise.errors import RepriseError

ANTICIPATION = 2 * STEPS_PER_SECOND  # controls stand up to this many 10 ms steps before their onset
DURATION_STEP, DURATION_BINS = 2, 100  # a melody note's length in 20 ms bins, up to 2 s
AT = VOCAB_SIZE  # AT + d: the note sounds d steps after the clock where it stands (0..ANTICIPATION)
PITCH = AT + ANTICIPATION + 1
DURATION = PITCH + 128  # DURATION + b - 1: b bins long
ANTICIPATED_VOCAB = DURATION + DURATION_BINS
MELODY_TRACK = "MELODY"  # the track a MIDI file's melody is read from when a whole song is encoded


@dataclass
class Anticipated(Performance):
    """Performance events of an accompaniment with its melody anticipated (see the module doc)."""

    name = "performance-anticipated"
    stretches_time = False  # a stretch would have to move the controls' AT offsets too
    anticipation: int = ANTICIPATION  # 10 ms steps a melody note stands ahead of its onset (0: where it sounds)

    def __post_init__(self) -> None:
        if not 0 <= self.anticipation <= ANTICIPATION:
            raise RepriseError(f"anticipation {self.anticipation / STEPS_PER_SECOND:g} s: choose 0 to 2 s")

    @property
    def vocab_size(self) -> int:
        return ANTICIPATED_VOCAB

    def token_names(self) -> list[str]:
        return (
            super().token_names()
            + [f"MELODY_AT_{10 * d}ms" for d in range(ANTICIPATION + 1)]
            + [f"MELODY_PITCH_{p}" for p in range(128)]
            + [f"MELODY_DURATION_{DURATION_STEP * 10 * b}ms" for b in range(1, DURATION_BINS + 1)]
        )

    def encode_score(self, score: symusic.Score) -> np.ndarray:
        """A song whose track named ``MELODY`` is the melody and whose other tracks are the accompaniment."""
        melody = [t for t in score.tracks if t.name.strip().upper() == MELODY_TRACK]
        if not melody:
            raise RepriseError(f"no track named {MELODY_TRACK} (the melody an anticipated stream carries)")
        rest = score.copy()
        rest.tracks = [t for t in score.tracks if t.name.strip().upper() != MELODY_TRACK]
        accompaniment = Performance().encode_score(rest)
        start, end, pitch, _ = sustained_notes(_with_tracks(score, melody))
        return interleave(accompaniment, np.stack([start, end, pitch], 1), self.anticipation)

    def decode(self, ids: np.ndarray) -> symusic.Score:
        """The accompaniment (``Piano``) and, as a second track, the melody its controls carry."""
        score = super().decode(ids)
        melody = symusic.Track(name="Melody", program=0)
        ticks_per_step = TPQ * QPM / 60 / STEPS_PER_SECOND
        for on, off, pitch in controls_of(np.asarray(ids)):
            melody.notes.append(symusic.Note(round(on * ticks_per_step), round((off - on) * ticks_per_step), pitch, 90))
        score.tracks.append(melody)
        return score

    @property
    def task(self) -> str:
        return "accompany"

    def scored(self, ids: np.ndarray) -> np.ndarray:
        """The accompaniment and the end count; the melody is given."""
        return np.asarray(ids) < VOCAB_SIZE

    @property
    def predicted(self) -> np.ndarray:
        """The accompaniment's ids: a control's place follows from the melody and the clock, so where an
        event stands it is known not to be a control, and no probability goes to them."""
        return np.arange(ANTICIPATED_VOCAB) < VOCAB_SIZE

    @property
    def grown_from(self) -> dict[int, int]:
        """A melody note's pitch starts as the note-on of that pitch: a model of the accompaniment alone
        then reads the melody's pitches as harmony from its first step (random rows it ignored: a
        ``pop-piano`` fine-tuned 300 steps scored the same with the melody a tritone off)."""
        return {PITCH + p: NOTE_ON + p for p in range(128)}

    def allowed_next(self, position: int) -> np.ndarray:
        """Never a control on the model's own: the melody comes from the user (:class:`MelodyAhead`)."""
        return self.predicted

    def transpose_bounds(self, ids: np.ndarray) -> tuple[int, int] | None:
        pitches = _pitches(ids)
        if not len(pitches):
            return None
        return shift_bounds(pitches.min(keepdims=True), pitches.max(keepdims=True), [0], [127])

    def transposed(self, ids: np.ndarray, shift: int) -> np.ndarray:
        moved = ((ids >= NOTE_ON) & (ids < TIME_SHIFT)) | ((ids >= PITCH) & (ids < DURATION))
        return np.where(moved, ids + shift, ids)

    @classmethod
    def from_json(cls, data: dict) -> Anticipated:
        return cls(int(data.get("anticipation", ANTICIPATION)))


register(Anticipated)


def _with_tracks(score: symusic.Score, tracks: list) -> symusic.Score:
    chosen = score.copy()
    chosen.tracks = list(tracks)
    return chosen


def _pitches(ids: np.ndarray) -> np.ndarray:
    """Every pitch in ``ids``: accompaniment notes and melody controls."""
    notes = ids[(ids >= NOTE_ON) & (ids < TIME_SHIFT)]
    return np.r_[(notes - NOTE_ON) % 128, ids[(ids >= PITCH) & (ids < DURATION)] - PITCH]


def clock(ids: np.ndarray) -> np.ndarray:
    """The time (10 ms steps) before each token of a performance stream."""
    ids = np.asarray(ids)
    shift = np.where((ids >= TIME_SHIFT) & (ids < VELOCITY), ids - TIME_SHIFT + 1, 0)
    return np.cumsum(shift) - shift


def melody_notes(melody: np.ndarray) -> np.ndarray:
    """``(n, 3)`` onset, end and pitch (10 ms steps) of a melody's performance events, by onset."""
    notes = notes_of(np.asarray(melody))
    return np.array([(on, off, pitch) for on, off, pitch, _ in notes], dtype=np.int64).reshape(-1, 3)


def control_tokens(note: np.ndarray, now: int) -> list[int]:
    """The three controls of ``note`` (onset, end, pitch) standing where the clock reads ``now``."""
    onset, end, pitch = (int(x) for x in note)
    bins = int(np.clip(-(-(end - onset) // DURATION_STEP), 1, DURATION_BINS))
    return [AT + int(np.clip(onset - now, 0, ANTICIPATION)), PITCH + pitch, DURATION + bins - 1]


def interleave(accompaniment: np.ndarray, notes: np.ndarray, anticipation: int = ANTICIPATION) -> np.ndarray:
    """The stream of an accompaniment (``BOS`` events ``EOS``) with the melody ``notes`` (``(n, 3)`` onset,
    end, pitch) anticipated: each before the first event whose clock reaches its onset - ``anticipation``."""
    accompaniment = np.asarray(accompaniment)
    times = clock(accompaniment)
    notes = notes[np.argsort(notes[:, 0], kind="stable")]
    last = len(accompaniment) - 1 if accompaniment[-1] == Performance.eos_id else len(accompaniment)
    where = np.minimum(np.searchsorted(times[1:], notes[:, 0] - anticipation) + 1, last)
    controls = [control_tokens(note, times[min(i, len(times) - 1)]) for note, i in zip(notes, where)]
    return np.insert(accompaniment, np.repeat(where, 3), np.array(controls, dtype=np.int64).reshape(-1))


def accompaniment_of(ids: np.ndarray) -> np.ndarray:
    """The stream without its controls: the accompaniment's performance events."""
    ids = np.asarray(ids)
    return ids[ids < VOCAB_SIZE]


def controls_of(ids: np.ndarray) -> list[tuple[int, int, int]]:
    """``(onset, end, pitch)`` of the melody notes a stream's controls carry."""
    times, notes = clock(ids), []
    at = np.flatnonzero((ids >= AT) & (ids < PITCH))
    for i in at[at + 2 < len(ids)]:
        if PITCH <= ids[i + 1] < DURATION <= ids[i + 2] < ANTICIPATED_VOCAB:
            onset = int(times[i] + ids[i] - AT)
            notes.append((onset, onset + DURATION_STEP * int(ids[i + 2] - DURATION + 1), int(ids[i + 1] - PITCH)))
    return notes


class MelodyAhead:
    """While a model writes an accompaniment, what each sample's stream must say next: the melody's
    controls when their time has come (the rule of :func:`interleave`), ``EOS`` once the clock passes
    ``end``, else nothing (-1, the model chooses)."""

    def __init__(self, notes: np.ndarray, samples: int, end: int, anticipation: int = ANTICIPATION):
        self.notes = notes[np.argsort(notes[:, 0], kind="stable")]
        self.end, self.anticipation = end, anticipation
        self.clock = np.zeros(samples, np.int64)
        self.next_note = np.zeros(samples, np.int64)
        self.pending: list[list[int]] = [[] for _ in range(samples)]

    def __call__(self, last: np.ndarray) -> np.ndarray:
        """The forced next id of each sample (-1: free), given the id each wrote last."""
        forced = np.full(len(last), -1, np.int64)
        for row, token in enumerate(np.asarray(last).tolist()):
            if TIME_SHIFT <= token < VELOCITY:
                self.clock[row] += token - TIME_SHIFT + 1
            if not self.pending[row]:
                self._queue(row)
            if self.pending[row]:
                forced[row] = self.pending[row].pop(0)
            elif self.clock[row] >= self.end:
                forced[row] = Performance.eos_id
        return forced

    def _queue(self, row: int) -> None:
        """The next due note's controls, if its anticipated time has come."""
        k = self.next_note[row]
        if k < len(self.notes) and self.notes[k, 0] - self.anticipation <= self.clock[row]:
            self.pending[row] = control_tokens(self.notes[k], int(self.clock[row]))
            self.next_note[row] += 1


class AnticipatedPairs(TokenDataset):
    """One split of a pair folder (``reprise prepare-pairs``: melody in ``source/``, accompaniment in
    ``target/``) as anticipated streams, in memory: what a decoder-only ``--task accompany`` trains on."""

    def __init__(self, directory: Path, split: str, tokenizer: Anticipated | None = None):
        self.directory, self.split = Path(directory), split
        self.tokenizer = tokenizer or Anticipated()
        notes, parts = melodies_and_parts(self.directory, split, "anticipation")
        pieces = [interleave(part, n, self.tokenizer.anticipation) for part, n in zip(parts, notes)]
        self.ids = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
        self.offsets = np.r_[0, np.cumsum([len(p) for p in pieces])].astype(np.int64)

    def batch(
        self, rng: np.random.Generator, batch_size: int, context: int, augment: Augmentation | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Training windows whose controls are read but not predicted: the melody is given, and the
        model's capacity goes to the accompaniment, the only part scored."""
        inputs, targets = super().batch(rng, batch_size, context, augment)
        return inputs, np.where(targets >= VOCAB_SIZE, self.tokenizer.pad_id, targets)


def melodies_and_parts(directory: Path, split: str, design: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The melody notes (:func:`melody_notes`) and accompaniment events of a pair folder's ``split``, pair by
    pair; a one-line error unless it is a pair folder of plain performance events (``design`` needs them)."""
    if not (directory / "source" / "manifest.json").is_file():
        raise RepriseError(
            f"{directory}: accompaniment data is a folder with source/ and target/ prepared "
            "datasets (see `reprise prepare-pairs --help`)"
        )
    source, target = TokenDataset(directory / "source", split), TokenDataset(directory / "target", split)
    for side in (source, target):
        if type(side.tokenizer) is not Performance:
            raise RepriseError(f"{side.directory}: {design} needs performance events")
    pairs = paired_indices(directory, split)
    return [melody_notes(source.piece(s)) for s, _ in pairs], [target.piece(t) for _, t in pairs]


def is_pair_folder(directory: Path) -> bool:
    """Whether ``directory`` holds the ``source/`` and ``target/`` datasets of ``reprise prepare-pairs``."""
    return all((Path(directory) / side / "manifest.json").is_file() for side in ("source", "target"))
