"""REMI, TSD and MIDI-like tokens through miditok 3, behind reprise's Tokenizer interface.

miditok does the encoding; this adapter only fits it to the pipeline: every
selected (non-drum) track is merged into one before encoding, so a piece is one
token stream (``use_programs`` off); ``BOS``/``EOS`` are miditok's own special
tokens, which sit at ids 1 and 2 as reprise expects; and optional BPE (miditok's
``train``, over whole sequences: ``encode_ids_split="no"``, so that ids can be
compressed without the score they came from) is learned by :meth:`fit` from the
training pieces.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import miditok
import numpy as np
import symusic

from reprise.data.performance import clip_restruck
from reprise.data.tokenizer import Tokenizer, register, shift_bounds
from reprise.errors import RepriseError

_KINDS = ("Pitch", "NoteOn", "NoteOff")
_PITCH_TOKEN = re.compile(r"^(Pitch|NoteOn|NoteOff)_(\d+)$")
SPECIALS = ["PAD", "BOS", "EOS"]


class MiditokTokenizer(Tokenizer):
    """A miditok tokenizer (``miditok_class``) with optional BPE to ``bpe_vocab`` ids."""

    miditok_class: ClassVar[type[miditok.MusicTokenizer]]

    def __init__(self, bpe_vocab: int | None = None, params: dict[str, Any] | None = None):
        self.bpe_vocab = bpe_vocab
        self.tok = _load(self.miditok_class, params) if params else self.miditok_class(_config())
        vocab = self.tok.vocab
        if [vocab[f"{s}_None"] for s in SPECIALS] != [self.pad_id, self.bos_id, self.eos_id]:
            raise RepriseError(f"{self.name}: miditok's special tokens are not at ids 0, 1, 2")
        matches = [_PITCH_TOKEN.match(n) for n in sorted(vocab, key=vocab.get)]
        self._pitch = np.array([int(m[2]) if m else -1 for m in matches])  # base id -> pitch (-1: none)
        self._kind = np.array([_KINDS.index(m[1]) if m else 0 for m in matches])  # base id -> token kind
        self._by_kind_pitch = np.full((len(_KINDS), 128), -1)  # (kind, pitch) -> base id
        for i, m in enumerate(matches):
            if m:
                self._by_kind_pitch[_KINDS.index(m[1]), int(m[2])] = i
        self._pitch_range = self.tok.config.pitch_range

    @property
    def vocab_size(self) -> int:
        return self.tok.vocab_size

    def token_names(self) -> list[str]:
        if not self.tok.is_trained:
            vocab = self.tok.vocab
            return sorted(vocab, key=vocab.get)
        learned = self.tok._vocab_learned_bytes_to_tokens  # miditok keeps no public inverse
        model_vocab = self.tok.vocab_model
        return ["+".join(learned[b]) for b in sorted(model_vocab, key=model_vocab.get)]

    def encode_score(self, score: symusic.Score) -> np.ndarray:
        merged = merge_tracks(score)
        if not len(merged.tracks[0].notes):
            raise RepriseError("no notes")
        quantized = self.tok.preprocess_score(merged)  # onto miditok's grid, then no same-pitch overlaps
        if not len(quantized.tracks) or not len(quantized.tracks[0].notes):  # a time signature alone encodes
            raise RepriseError(f"no notes in {self.name}'s pitch range {self._pitch_range}")
        quantized.tracks[0].notes = _without_overlaps(quantized.tracks[0].notes)
        ids = self.tok.encode(quantized, encode_ids=False)[0].ids
        return np.array([self.bos_id, *ids, self.eos_id], dtype=np.int64)

    def decode(self, ids: np.ndarray) -> symusic.Score:
        ids = np.asarray(ids)
        body = ids[ids > self.eos_id].tolist()
        return self.tok.decode([miditok.TokSequence(ids=body, are_ids_encoded=self.tok.is_trained)])

    def fit(self, train: list[np.ndarray]) -> None:
        """Learn BPE merges over the training pieces when ``bpe_vocab`` asks for them."""
        if not self.bpe_vocab:
            return
        if self.bpe_vocab <= len(self.tok.vocab):
            raise RepriseError(f"--bpe {self.bpe_vocab} must exceed the base vocabulary ({len(self.tok.vocab)})")
        texts = [self._bytes(ids[1:-1]) for ids in train]
        self.tok.train(self.bpe_vocab, model="BPE", iterator=texts)

    def compress(self, ids: np.ndarray) -> np.ndarray:
        if not self.tok.is_trained:
            return ids
        seq = miditok.TokSequence(ids=ids[1:-1].tolist())
        self.tok.encode_token_ids(seq)
        return np.array([ids[0], *seq.ids, ids[-1]], dtype=np.int64)

    def transpose_bounds(self, ids: np.ndarray) -> tuple[int, int] | None:
        """Shifts inside the pitch range; with BPE, read through the base tokens."""
        pitch = self._pitch[self._expand(self._body(ids))]
        pitched = pitch >= 0
        if not pitched.any():
            return None
        low, high = self._pitch_range[0], self._pitch_range[1] - 1
        return shift_bounds(pitch[pitched].min(keepdims=True), pitch[pitched].max(keepdims=True), [low], [high])

    def transposed(self, ids: np.ndarray, shift: int) -> np.ndarray:
        """Pitches moved through the base tokens and, with BPE, merged again."""
        body = self._body(ids)
        base = self._expand(body)
        pitch = self._pitch[base]
        pitched = pitch >= 0
        moved = base.copy()
        moved[pitched] = self._by_kind_pitch[self._kind[base[pitched]], pitch[pitched] + shift]
        if self.tok.is_trained:
            moved = self.compress(np.r_[self.bos_id, moved, self.eos_id])[1:-1]
        head = int(ids[:1].tolist() == [self.bos_id])
        return np.r_[ids[:head], moved, ids[head + len(body) :]]

    def _body(self, ids: np.ndarray) -> np.ndarray:
        """``ids`` without a leading ``BOS`` and a trailing ``EOS``."""
        head, tail = (ids[:1] == self.bos_id).sum(), (ids[-1:] == self.eos_id).sum()
        return ids[head : len(ids) - tail]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "bpe_vocab": self.bpe_vocab, "params": self.tok.to_dict()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MiditokTokenizer:
        return cls(data["bpe_vocab"], data["params"])  # older files also hold max_transpose, now a training setting

    # -- helpers -------------------------------------------------------------
    def _bytes(self, ids: np.ndarray) -> str:
        """Base ids as the one-character-per-token text BPE trains on (as miditok's own training iterator does)."""
        return self.tok._ids_to_bytes(ids.tolist(), as_one_str=True)

    def _expand(self, ids: np.ndarray) -> np.ndarray:
        """BPE ids back to base ids (unchanged when no BPE was learned)."""
        if not self.tok.is_trained:
            return ids
        seq = miditok.TokSequence(ids=ids.tolist(), are_ids_encoded=True)
        self.tok.decode_token_ids(seq)
        return np.asarray(seq.ids, dtype=np.int64)


@register
class REMI(MiditokTokenizer):
    """REMI (Huang & Yang 2020): bars, positions, pitch, velocity and duration tokens."""

    name = "remi"
    miditok_class = miditok.REMI


@register
class TSD(MiditokTokenizer):
    """TSD: time shifts instead of bars and positions, with note durations."""

    name = "tsd"
    miditok_class = miditok.TSD


@register
class MIDILike(MiditokTokenizer):
    """MIDI-like: note-on and note-off events with time shifts, on a beat grid."""

    name = "midilike"
    miditok_class = miditok.MIDILike


def merge_tracks(score: symusic.Score) -> symusic.Score:
    """The score with all its pitched (non-drum) tracks merged into one piano track.

    Notes are ordered by onset, then pitch, so that simultaneous notes come out in
    the same order from a file as from the score its tokens decode to.
    """
    merged = symusic.Score(score.tpq)
    merged.tempos, merged.time_signatures = score.tempos.copy(), score.time_signatures.copy()
    track = symusic.Track(name="merged", program=0)
    columns = [t.notes.numpy() for t in score.tracks if not t.is_drum and len(t.notes)]
    if columns:
        notes = {k: np.concatenate([c[k] for c in columns]) for k in ("time", "duration", "pitch", "velocity")}
        order = np.lexsort((notes["duration"], notes["pitch"], notes["time"]))
        track.notes = symusic.Note.from_numpy(**{k: v[order] for k, v in notes.items()})
    merged.tracks.append(track)
    return merged


def _without_overlaps(notes) -> Any:
    """Notes with one per pitch and onset (the loudest), none sounding past the next onset of
    its pitch (see :func:`clip_restruck`)."""
    cols = notes.numpy()
    order = np.lexsort((-cols["velocity"].astype(np.int64), cols["time"], cols["pitch"]))
    cols = {k: v[order] for k, v in cols.items()}
    first = np.r_[True, (cols["pitch"][1:] != cols["pitch"][:-1]) | (cols["time"][1:] != cols["time"][:-1])]
    cols = {k: v[first] for k, v in cols.items()}
    end = clip_restruck(cols["time"], cols["time"] + cols["duration"], cols["pitch"])
    cols["duration"] = end - cols["time"]
    order = np.lexsort((cols["duration"], cols["pitch"], cols["time"]))
    return symusic.Note.from_numpy(**{k: v[order] for k, v in cols.items()})


def _config() -> miditok.TokenizerConfig:
    """miditok's defaults, with 32 velocities, one stream, no MASK and BPE over whole sequences."""
    return miditok.TokenizerConfig(
        num_velocities=32, use_programs=False, special_tokens=list(SPECIALS), encode_ids_split="no"
    )


def _load(cls: type[miditok.MusicTokenizer], params: dict[str, Any]) -> miditok.MusicTokenizer:
    """A miditok tokenizer from its ``to_dict()`` (miditok loads parameters only from a file)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenizer.json"
        path.write_text(json.dumps(params))
        return cls(params=path)
