"""Prepared datasets on disk, and the training windows drawn from them.

A dataset directory holds, for each split, every piece's ids concatenated into
one ``SPLIT.npy`` array with piece boundaries in ``SPLIT.offsets.npy``; the
tokenizer as ``tokenizer.json``; and ``manifest.json`` (source, counts, the split
of every piece, skipped inputs with reasons, content hashes). Arrays are
memory-mapped, so a corpus larger than memory still trains. A directory is built
under a temporary name and renamed when complete: an interrupted ``prepare``
never leaves a half-written dataset behind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reprise.config import read_json
from reprise.data.augment import Augmentation
from reprise.data.tokenizer import Tokenizer, tokenizer_from_json
from reprise.data.windows import crop_start
from reprise.errors import RepriseError, checked

SPLITS = ("train", "valid", "test")


@dataclass
class EncodedPiece:
    """A piece's ids (``BOS ... EOS``) and where it came from."""

    name: str
    ids: np.ndarray
    split: str
    source_sha1: str = ""  # of the file (or tune, or grid) it was read from


def write_dataset(
    out: Path,
    pieces: list[EncodedPiece],
    tokenizer: Tokenizer,
    source: str,
    skipped: list[tuple[str, str]],
) -> Path:
    """Write a dataset directory atomically; an existing one at ``out`` is replaced."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        dtype = np.int16 if tokenizer.vocab_size < 2**15 else np.int32
        for split in SPLITS:
            chosen = [p.ids for p in pieces if p.split == split]
            ids = np.concatenate(chosen).astype(dtype) if chosen else np.zeros(0, dtype)
            offsets = np.cumsum([0] + [len(c) for c in chosen]).astype(np.int64)
            np.save(tmp / f"{split}.npy", ids)
            np.save(tmp / f"{split}.offsets.npy", offsets)
        manifest = {
            "source": source,
            "tokenizer": tokenizer.name,
            "tokenizer_config": tokenizer.to_json(),
            "vocab_size": tokenizer.vocab_size,
            "vocabulary": tokenizer.token_names(),
            "counts": {
                s: {
                    "pieces": sum(p.split == s for p in pieces),
                    "tokens": int(sum(len(p.ids) for p in pieces if p.split == s)),
                }
                for s in SPLITS
            },
            "pieces": [
                {
                    "name": p.name,
                    "split": p.split,
                    "tokens": len(p.ids),
                    "sha1": hashlib.sha1(np.asarray(p.ids, np.int64).tobytes()).hexdigest(),
                    "source_sha1": p.source_sha1,
                }
                for p in pieces
            ],
            "skipped": [{"name": n, "reason": r} for n, r in skipped],
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        (tmp / "tokenizer.json").write_text(json.dumps(tokenizer.to_json(), indent=1))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


class TokenDataset:
    """One split of a prepared dataset: its pieces, and random training windows."""

    scored_only = False  # subclasses that build their pieces in memory train on every target

    def __init__(self, directory: Path, split: str, scored_only: bool = False):
        directory = Path(directory)
        if not (directory / "manifest.json").is_file():
            raise RepriseError(f"{directory}: not a prepared dataset (no manifest.json); run `reprise prepare`")
        if split not in SPLITS:
            raise RepriseError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        self.directory = directory
        self.split = split
        self.scored_only = scored_only
        self.tokenizer = load_tokenizer(directory)
        manifest = directory / "manifest.json"
        listed = checked(manifest, lambda: int(read_manifest(directory)["counts"][split]["pieces"]))
        self.ids = np.load(directory / f"{split}.npy", mmap_mode="r")
        self.offsets = np.load(directory / f"{split}.offsets.npy")
        if len(self) != listed:
            raise RepriseError(
                f"{manifest}: lists {listed} {split} pieces, but {split}.offsets.npy holds {len(self)}; "
                "the dataset is damaged: prepare it again"
            )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def piece(self, i: int) -> np.ndarray:
        """The ids of piece ``i``, ``BOS`` to ``EOS``."""
        return np.asarray(self.ids[self.offsets[i] : self.offsets[i + 1]], dtype=np.int64)

    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    def batch(
        self, rng: np.random.Generator, batch_size: int, context: int, augment: Augmentation | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(inputs, targets)`` of shape ``(batch, context)``; padding targets are ``pad_id``.

        Pieces are drawn in proportion to their length, and a window starts at
        ``BOS`` or on a frame boundary, so that every token is equally likely to be
        trained on and structured encodings stay aligned. ``augment`` varies each window.
        """
        if len(self) == 0:
            raise RepriseError(f"{self.directory}: the {self.split} split has no pieces")
        lengths = np.diff(self.offsets)
        chosen = rng.choice(len(self), size=batch_size, p=lengths / lengths.sum())
        frame = self.tokenizer.frame
        window = np.full((batch_size, context + 1), self.tokenizer.pad_id, dtype=np.int64)
        given = np.zeros_like(window, dtype=bool)
        for row, i in enumerate(chosen):
            ids = self.piece(i)
            start = crop_start(len(ids), context, frame, rng)
            kept = self._given(ids)[start : start + context + 1]
            given[row, : len(kept)] = kept
            ids = ids[start : start + context + 1]
            ids = augment(ids, self.tokenizer, rng)[: context + 1] if augment else ids
            window[row, : len(ids)] = ids
        return window[:, :-1], np.where(given[:, 1:], self.tokenizer.pad_id, window[:, 1:])

    def _given(self, ids: np.ndarray) -> np.ndarray:
        """Which of a piece's ids are not targets: with ``scored_only``, those an NLL does not score."""
        scored = self.tokenizer.scored(ids) if self.scored_only else None
        return np.zeros(len(ids), dtype=bool) if scored is None else ~scored


def load_tokenizer(directory: Path) -> Tokenizer:
    """The tokenizer stored in a dataset or checkpoint directory."""
    path = Path(directory) / "tokenizer.json"
    if not path.is_file():
        raise RepriseError(f"{directory}: no tokenizer.json")
    data = read_json(path)
    return checked(path, lambda: tokenizer_from_json(data))


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of a prepared dataset; a one-line error naming it if it is damaged."""
    return read_json(Path(directory) / "manifest.json")
