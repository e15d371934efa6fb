"""What every tokenizer offers the rest of the pipeline, and the registry of them.

A tokenizer turns music into a sequence of integer ids and back. Training,
sampling and evaluation only see ids, so they work with any tokenizer that
implements this interface; the registry lets a checkpoint name the tokenizer it
was trained with and rebuild it from JSON.

Every tokenizer encodes a ``symusic.Score`` (:meth:`Tokenizer.encode_score`), so
any source that can produce a score (MIDI, **kern, ABC, a chorale grid) feeds any
tokenizer. Two hooks exist because some encodings depend on the corpus: ``fit``
sees the training pieces' ids after encoding (the chorale grid's voice ranges,
miditok's BPE merges) and ``compress`` rewrites ids with what it learned.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import symusic

from reprise.data.midi import read_midi
from reprise.errors import RepriseError


class Tokenizer(ABC):
    """Maps pieces of music to id sequences (``BOS ... EOS``) and back.

    ``frame`` is the number of tokens that describe one time step; training
    windows start on frame boundaries so a model always sees whole steps.
    """

    name: ClassVar[str]
    pad_id: ClassVar[int] = 0
    bos_id: ClassVar[int] = 1
    eos_id: ClassVar[int] = 2
    frame: int = 1

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of distinct ids, special tokens included."""

    @abstractmethod
    def token_names(self) -> list[str]:
        """A readable name for every id, in id order (for plots and debugging)."""

    @abstractmethod
    def decode(self, ids: np.ndarray) -> symusic.Score:
        """Turn ids (with or without BOS/EOS) into a score that can be saved as MIDI."""

    @abstractmethod
    def encode_score(self, score: symusic.Score) -> np.ndarray:
        """A score's ids, ``BOS ... EOS``; raises :class:`RepriseError` saying why a score is unusable."""

    def translate(self, ids: np.ndarray, source: Tokenizer) -> np.ndarray | None:
        """``ids`` of ``source``'s encoding in this one, or ``None`` when it cannot say the same thing."""
        return ids if source.to_json() == self.to_json() else None

    @property
    def task(self) -> str:
        """What a decoder-only model of this stream does: continue music, or (a stream that carries
        given music) the conditional task that gives it (``harmonize``, ``accompany``)."""
        return "continue"

    @property
    def predicted(self) -> np.ndarray | None:
        """Which ids a model ever predicts (a mask), or ``None`` for all: ids that only stand for given
        music (an anticipated melody) are left out of every softmax, in training, scoring and sampling."""
        return None

    @property
    def grown_from(self) -> dict[int, int]:
        """For a model initialised from one with a smaller vocabulary (``--init``): new ids that start as
        a copy of an old id's embedding, because they mean nearly the same."""
        return {}

    def scored(self, ids: np.ndarray) -> np.ndarray | None:
        """Which of ``ids`` an NLL counts (a mask), or ``None`` for all after ``BOS``: a stream that
        carries given music (a harmoniser's melody) scores only what the model writes."""
        return None

    def encode_midi(self, path: Path) -> np.ndarray:
        """Read a MIDI file into ids, ``BOS`` first and without ``EOS`` (a primer)."""
        score = read_midi(path)
        try:
            return self.compress(self.encode_score(score))[:-1]
        except RepriseError as err:
            raise RepriseError(f"{path}: {err}") from err

    def fit(self, train: list[np.ndarray]) -> None:  # noqa: B027 (an optional hook, not an abstract one)
        """Learn corpus-dependent settings from the training pieces' ids (a no-op unless overridden)."""

    def compress(self, ids: np.ndarray) -> np.ndarray:
        """Ids rewritten with what :meth:`fit` learned (e.g. BPE merges); identity unless overridden."""
        return ids

    @abstractmethod
    def to_json(self) -> dict[str, Any]:
        """Everything needed to rebuild this tokenizer, including its ``name``."""

    @classmethod
    @abstractmethod
    def from_json(cls, data: dict[str, Any]) -> Tokenizer:
        """Rebuild a tokenizer saved with :meth:`to_json`."""

    def tokens_per_bar(self) -> int | None:
        """How many tokens one bar takes, where that is fixed (grids); else ``None``."""
        return None

    def allowed_next(self, position: int) -> np.ndarray | None:
        """Boolean mask of ids that may stand at ``position`` (0 is BOS), or ``None`` for any.

        Sampling uses it to keep structured encodings well-formed, e.g. so that the
        chorale grid's soprano slot only ever receives a soprano pitch.
        """
        return None

    # -- augmentation hooks (reprise.data.augment draws the random choices) --------------
    stretches_time: ClassVar[bool] = False  # whether ids carry time that :meth:`stretched` can scale

    def transpose_bounds(self, ids: np.ndarray) -> tuple[int, int] | None:
        """``(down, up)``: the shifts in semitones (``down`` <= 0 <= ``up`` when the window fits) that keep
        every pitch of the window ``ids`` in range, or ``None`` when it has no pitch to move (or the
        tokenizer cannot transpose)."""
        return None

    def transposed(self, ids: np.ndarray, shift: int) -> np.ndarray:
        """The window ``ids`` with every pitch moved by ``shift`` semitones (within :meth:`transpose_bounds`)."""
        raise NotImplementedError(f"the {self.name} tokenizer cannot transpose")

    def stretched(self, ids: np.ndarray, factor: float) -> np.ndarray:
        """The window ``ids`` with time scaled by ``factor`` (only where ``stretches_time``)."""
        raise NotImplementedError(f"the {self.name} tokenizer has no time to stretch")

    def token_notes(self, ids: np.ndarray) -> np.ndarray:
        """Which note each position of ``ids`` describes: an index into
        ``score_notes(self.decode(ids))``, or -1 for tokens of no note (BOS, silence, ...).

        Attention plots use it to turn token-to-token attention into note-to-note
        attention. A note may own several positions (the chorale grid repeats a
        held pitch at every step); its first position is where it is heard.

        The default decodes every prefix ``ids[:i + 1]`` and gives position ``i``
        the note that first appears when it is added (notes are matched by track,
        onset and pitch), so each note owns the one token that completes it (the
        first of the notes that one token completes gets it). It
        works for any tokenizer whose ``decode`` accepts every prefix, in
        ``len(ids)`` decodes; override it with a direct, linear-time mapping.
        """
        ids = np.asarray(ids)
        final: dict[tuple, int] = {}
        for index, key in enumerate(_note_keys(self.decode(ids))):
            final.setdefault(key, index)
        owner = np.full(len(ids), -1, dtype=np.int64)
        seen: set[tuple] = set()
        for i in range(len(ids)):
            keys = set(_note_keys(self.decode(ids[: i + 1])))
            new = sorted(final[key] for key in keys - seen if key in final)
            if new:
                owner[i] = new[0]
            seen |= keys
        return owner


def score_notes(score: symusic.Score) -> list[tuple[int, symusic.Note]]:
    """Every note of ``score`` with its track's index: track by track in score order,
    each track's notes in stored order. This numbering is what :meth:`Tokenizer.token_notes` indexes."""
    return [(t, note) for t, track in enumerate(score.tracks) for note in track.notes]


def _note_keys(score: symusic.Score) -> list[tuple]:
    """What identifies each note across decodes of growing prefixes: track, onset and pitch (not length)."""
    tracks = [(track.name, track.program, track.is_drum) for track in score.tracks]
    return [(*tracks[t], note.time, note.pitch) for t, note in score_notes(score)]


def shift_bounds(lows: np.ndarray, highs: np.ndarray, floors: np.ndarray, ceilings: np.ndarray) -> tuple[int, int]:
    """The shifts ``(down, up)`` that keep every ``lows[i]..highs[i]`` inside ``floors[i]..ceilings[i]``.

    Each index is one pitch set (a voice, or the whole window) with its allowed range.
    """
    return int(np.max(np.asarray(floors) - lows)), int(np.min(np.asarray(ceilings) - highs))


def known_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``data`` that are fields of the dataclass ``cls``: keys an older reprise wrote
    (``max_transpose``, now a training setting) are ignored, so old tokenizer.json files still load."""
    names = {f.name for f in dataclass_fields(cls)}
    return {k: v for k, v in data.items() if k in names}


_REGISTRY: dict[str, type[Tokenizer]] = {}


def register(cls: type[Tokenizer]) -> type[Tokenizer]:
    """Class decorator that makes a tokenizer loadable by name from JSON."""
    _REGISTRY[cls.name] = cls
    return cls


def tokenizer_class(name: str) -> type[Tokenizer]:
    """The registered tokenizer called ``name``."""
    if name not in _REGISTRY:
        raise RepriseError(f"unknown tokenizer {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def tokenizer_from_json(data: dict[str, Any]) -> Tokenizer:
    """Rebuild whichever tokenizer ``data`` describes."""
    return tokenizer_class(data.get("name")).from_json(data)
