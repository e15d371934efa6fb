"""``reprise prepare``: turn a source of music into a dataset directory.

:mod:`reprise.data.sources` lists the pieces of a source; worker processes read
and tokenize them (:func:`encode_items`), each failure becoming a skipped piece
with its reason; the tokenizer is fitted on the training pieces; and
:func:`reprise.data.dataset.write_dataset` writes everything atomically. Pieces
are ordered by name and splits drawn from a hash of it, so preparing the same
source twice gives the same bytes.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from reprise.errors import RepriseError
from reprise.data.chorales import split_of
from reprise.data.dataset import EncodedPiece, write_dataset
from reprise.data.sources import Item, list_source, read_item, select_tracks
from reprise.data.miditok_adapter import MiditokTokenizer
from reprise.data.tokenizer import Tokenizer, tokenizer_class, tokenizer_from_json

CHUNK = 4  # items per task: few enough that a crash re-reads little, enough to amortise the hand-off
CRASHED = "its parser crashed the worker process (e.g. a segfault); skipped"


def prepare(
    source: str,
    out: Path,
    tokenizer: str | None = None,
    valid: float = 0.1,
    test: float = 0.1,
    workers: int | None = None,
    tracks: tuple[str, ...] = (),
    bpe: int | None = None,
) -> Path:
    """Read ``source``, tokenize every piece and write the dataset to ``out``.

    ``tokenizer`` defaults to the one that suits the source (the chorale grid for
    chorales, the melody grid for **kern and ABC folk songs, performance events
    for MIDI); ``tracks`` keeps only the named tracks (or program numbers) of
    multi-track files; ``bpe`` is the vocabulary size to learn BPE merges up to
    (miditok tokenizers only).
    """
    items, suggested = list_source(source)
    tok = make_tokenizer(tokenizer or suggested, bpe)
    workers = workers or min(4, os.cpu_count() or 1)
    results = encode_items(items, tok, tracks, workers)
    pieces, skipped = _collect(items, results, valid, test)
    if not pieces:
        reasons = sorted({r for _, r in skipped})[:3]
        raise RepriseError(f"{source}: no usable pieces for {tok.name} (e.g. {'; '.join(reasons)})")
    tok.fit([p.ids for p in pieces if p.split == "train"] or [p.ids for p in pieces])
    pieces = [EncodedPiece(p.name, tok.compress(p.ids), p.split, p.source_sha1) for p in pieces]
    return write_dataset(out, pieces, tok, source, skipped)


def make_tokenizer(name: str, bpe: int | None = None) -> Tokenizer:
    """A fresh tokenizer by registry name; ``bpe`` only for the miditok ones."""
    cls = tokenizer_class(name)
    if bpe is None:
        return cls()
    if not issubclass(cls, MiditokTokenizer):
        raise RepriseError(f"--bpe works with remi, tsd and midilike, not {name}")
    return cls(bpe_vocab=bpe)


def encode_items(items: list[Item], tok: Tokenizer, tracks: tuple[str, ...], workers: int) -> list[np.ndarray | str]:
    """Each item's ids, or why it was skipped; a worker that dies costs one item, not the run.

    Items go to a process pool in chunks. When a worker dies, every unfinished
    chunk fails with it; the first ``workers + 1`` of them (where the culprit must
    be, as the pool hands out chunks in order) are retried one item per process,
    and the rest go back to a fresh pool.
    """
    results: list[np.ndarray | str | None] = [None] * len(items)
    pending = list(range(len(items)))
    config = (tok.to_json(), tracks)
    while pending:
        pending = _run_pool(items, pending, results, config, workers)
        suspects, pending = pending[: (workers + 1) * CHUNK], pending[(workers + 1) * CHUNK :]
        for i in suspects:
            results[i] = _run_alone(items[i], config)
    return results


def _run_pool(items, pending, results, config, workers) -> list[int]:
    """Fill ``results`` for ``pending``; returns the indices left unfinished by a dead worker."""
    chunks = [pending[i : i + CHUNK] for i in range(0, len(pending), CHUNK)]
    failed: list[int] = []
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=config) as pool:
        futures = [pool.submit(_encode_chunk, [items[i] for i in chunk]) for chunk in chunks]
        for chunk, future in zip(chunks, futures):
            try:
                for i, result in zip(chunk, future.result()):
                    results[i] = result
            except BrokenProcessPool:
                failed += chunk
    return failed


def _run_alone(item: Item, config) -> np.ndarray | str:
    """One item in a process of its own, so that a crash is pinned on it."""
    with ProcessPoolExecutor(1, initializer=_init_worker, initargs=config) as pool:
        try:
            return pool.submit(_encode_chunk, [item]).result()[0]
        except BrokenProcessPool:
            return CRASHED


_worker: dict = {}


def _init_worker(tokenizer_json: dict, tracks: tuple[str, ...]) -> None:
    _worker.update(tokenizer=tokenizer_from_json(tokenizer_json), tracks=tracks)


def _encode_chunk(chunk: list[Item]) -> list[np.ndarray | str]:
    return [_encode(item) for item in chunk]


def _encode(item: Item) -> np.ndarray | str:
    """An item's ids (``BOS ... EOS``), or a one-line reason it cannot be used (runs in a worker)."""
    tok = _worker["tokenizer"]
    try:
        ids = tok.encode_score(select_tracks(read_item(item), _worker["tracks"]))
    except RepriseError as err:
        return str(err)
    except Exception as err:  # a parser's own bug must not end the run
        return f"cannot read it ({type(err).__name__}: {err})"[:300]
    dtype = np.int16 if tok.vocab_size < 2**15 else np.int32
    return ids.astype(dtype)


def _collect(items, results, valid: float, test: float) -> tuple[list[EncodedPiece], list[tuple[str, str]]]:
    """Pieces in name order with their splits (duplicates dropped), and ``(name, reason)`` for the rest."""
    pieces, skipped, seen = [], [], {}
    for item, result in sorted(zip(items, results), key=lambda pair: pair[0].name):
        if isinstance(result, str):
            skipped.append((item.name, result))
            continue
        digest = hashlib.sha1(result.astype(np.int64).tobytes()).digest()
        if digest in seen:
            skipped.append((item.name, f"duplicate of {seen[digest]}"))
            continue
        seen[digest] = item.name
        split = item.split or split_of(item.name, valid, test)
        pieces.append(EncodedPiece(item.name, result.astype(np.int64), split, item.sha1))
    return pieces, skipped
