"""A melody given to an accompaniment model as features added to each token, where it sounds.

The accompaniment is one plain stream of ``performance`` events, the very tokens a
model of the accompaniment alone (``pop-piano``) reads and writes. Beside each
token stands what the melody does at the stream's clock after that token (the time
the next event happens, unless it is a time shift): the pitches sounding, those
starting within the next half second and how soon the next one starts, the pitch
classes of the two seconds around, and the pitch classes of the whole melody (its
key). The model adds a learned projection of these features to the token's
embedding (:class:`reprise.models.transformer.MusicTransformer`, ``condition``).
That projection starts at zero, so a model grown from ``pop-piano`` starts exactly
where ``pop-piano`` is and can only learn to use the melody; no token is inserted,
so the stream is as long, and as fast to train, as the accompaniment alone. The
features at a token depend only on the melody (given in advance) and on the tokens
up to it, so the model stays causal in what it writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reprise.data.anticipation import melodies_and_parts
from reprise.data.augment import Augmentation
from reprise.data.dataset import TokenDataset
from reprise.data.performance import NOTE_ON, STEPS_PER_SECOND, TIME_SHIFT, VELOCITY, Performance
from reprise.data.tokenizer import register, shift_bounds
from reprise.data.windows import crop_start
from reprise.errors import RepriseError

SOON = STEPS_PER_SECOND // 2  # notes starting within this many 10 ms steps count as coming
AROUND = 2 * STEPS_PER_SECOND  # the pitch classes of the melody this far either side
ONSET_BIN, ONSET_BINS = 5, 20  # how soon the next note starts: 50 ms bins up to 1 s, then "later"
SOUNDING, COMING, NEAR, KEY, NEXT = 0, 128, 256, 268, 280
N_FEATURES = NEXT + ONSET_BINS + 1


@register
@dataclass
class MelodyConditioned(Performance):
    """Performance events of an accompaniment that a model writes given a melody's features
    (the module doc); the ids are ``performance``'s, so ``pop-piano`` is its initialisation."""

    name = "performance-melody"
    stretches_time = False  # a stretch would have to move the melody's times too

    @property
    def task(self) -> str:
        return "accompany"


def times_after(ids: np.ndarray) -> np.ndarray:
    """The stream's clock (10 ms steps) after each token: when the next event happens, unless it is a shift."""
    ids = np.asarray(ids)
    return np.cumsum(np.where((ids >= TIME_SHIFT) & (ids < VELOCITY), ids - TIME_SHIFT + 1, 0))


def key_profile(notes: np.ndarray) -> np.ndarray:
    """The melody's pitch classes weighted by duration, summing to 1: what key it is in."""
    profile = np.bincount(notes[:, 2] % 12, weights=notes[:, 1] - notes[:, 0], minlength=12)
    return (profile / max(profile.sum(), 1e-9)).astype(np.float32)


def features(times: np.ndarray, notes: np.ndarray, key: np.ndarray | None = None) -> np.ndarray:
    """``(len(times), N_FEATURES)`` float32: what the melody ``notes`` (``(n, 3)`` onset, end, pitch, by onset)
    does at each clock time (see the module doc); ``key`` is :func:`key_profile` of the whole melody. Each
    group sums to at most 1, so that its projection weighs like one token's embedding, not like twenty
    (unscaled, a model trained from scratch was 0.5 nats worse than one without the melody)."""
    out = np.zeros((len(times), N_FEATURES), np.float32)
    out[:, KEY : KEY + 12] = key_profile(notes) if key is None else key
    if not len(notes):
        out[:, NEXT + ONSET_BINS] = 1
        return out
    t = np.asarray(times)[:, None]
    on, off, pitch = notes[:, 0][None], notes[:, 1][None], notes[:, 2]
    rows, which = np.nonzero((on <= t) & (t < off))
    out[rows, SOUNDING + pitch[which]] = 1
    rows, which = np.nonzero((on > t) & (on <= t + SOON))
    out[rows, COMING + pitch[which]] = 1
    rows, which = np.nonzero((on < t + AROUND) & (off > t - AROUND))
    out[rows, NEAR + pitch[which] % 12] = 1
    following = np.searchsorted(notes[:, 0], times, side="right")
    wait = notes[np.minimum(following, len(notes) - 1), 0] - times
    bins = np.where(following < len(notes), np.minimum((wait - 1) // ONSET_BIN, ONSET_BINS), ONSET_BINS)
    out[np.arange(len(times)), NEXT + bins] = 1
    for group in (slice(SOUNDING, COMING), slice(COMING, NEAR), slice(NEAR, KEY)):  # each a mean of its rows
        out[:, group] /= np.maximum(out[:, group].sum(1, keepdims=True), 1)
    return out


class MelodyFollower:
    """While a model writes an accompaniment: the melody's features at each sample's clock, for the tokens
    just written (:func:`reprise.generation.generate.generate`'s ``condition``)."""

    def __init__(self, notes: np.ndarray):
        self.notes = notes[np.argsort(notes[:, 0], kind="stable")]
        self.key = key_profile(self.notes)

    def __call__(self, ids: np.ndarray, start: int) -> np.ndarray:
        """``(samples, len - start, N_FEATURES)``: the features of tokens ``start..`` of the ``(samples, len)`` ids."""
        rows = [features(times_after(row)[start:], self.notes, self.key) for row in np.asarray(ids)]
        return np.stack(rows)


class MelodyPairs(TokenDataset):
    """One split of a pair folder (``reprise prepare-pairs``: melody in ``source/``, accompaniment in
    ``target/``): the accompaniments as plain streams, each with its melody's notes for the features."""

    def __init__(self, directory: Path, split: str):
        self.directory, self.split = Path(directory), split
        self.tokenizer = MelodyConditioned()
        self.melodies, pieces = melodies_and_parts(self.directory, split, "a melody-conditioned accompanist")
        self.ids = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
        self.offsets = np.r_[0, np.cumsum([len(p) for p in pieces])].astype(np.int64)

    def condition(self, i: int) -> np.ndarray:
        """The features beside each token of piece ``i``."""
        return features(times_after(self.piece(i)), self.melodies[i])

    def batch(
        self, rng: np.random.Generator, batch_size: int, context: int, augment: Augmentation | None = None
    ) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        """``((inputs, features), targets)``: windows drawn as :meth:`TokenDataset.batch` draws them, the
        accompaniment and its melody transposed together (no time stretch)."""
        if not len(self):
            raise RepriseError(f"{self.directory}: the {self.split} split has no pieces")
        lengths = np.diff(self.offsets)
        window = np.full((batch_size, context + 1), self.tokenizer.pad_id, dtype=np.int64)
        condition = np.zeros((batch_size, context, N_FEATURES), np.float32)
        for row, i in enumerate(rng.choice(len(self), size=batch_size, p=lengths / lengths.sum())):
            ids, notes = self.piece(i), self.melodies[i]
            start = crop_start(len(ids), context, 1, rng)
            times = times_after(ids)[start : start + context]
            ids = ids[start : start + context + 1]
            if augment and augment.max_transpose:
                ids, notes = self._transposed(ids, notes, augment.max_transpose, rng)
            window[row, : len(ids)] = ids
            condition[row, : len(times)] = features(times, notes)
        return (window[:, :-1], condition), window[:, 1:]

    def _transposed(
        self, ids: np.ndarray, notes: np.ndarray, most: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """The window and the melody moved by one shift that keeps both inside the piano's 128 pitches."""
        played = ids[(ids >= NOTE_ON) & (ids < TIME_SHIFT)]
        pitches = np.r_[(played - NOTE_ON) % 128, notes[:, 2]]
        if not len(pitches):
            return ids, notes
        down, up = shift_bounds(pitches.min(keepdims=True), pitches.max(keepdims=True), [0], [127])
        down, up = max(-most, down), min(most, up)
        if down > up:
            return ids, notes
        shift = int(rng.integers(down, up + 1))
        return self.tokenizer.transposed(ids, shift), notes + np.array([0, 0, shift])
