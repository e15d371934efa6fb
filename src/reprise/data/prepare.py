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
import multiprocessing
import os
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

from reprise.data.chorale_grid import ChoraleGrid
from reprise.data.chorales import split_of
from reprise.data.dataset import EncodedPiece, write_dataset
from reprise.data.miditok_adapter import MiditokTokenizer
from reprise.data.sources import Item, list_source, read_item, select_tracks
from reprise.data.tokenizer import Tokenizer, tokenizer_class, tokenizer_from_json
from reprise.errors import RepriseError

CRASHED = "its parser crashed the worker process (e.g. a segfault); skipped"


@dataclass(frozen=True)
class Limits:
    """What ``prepare`` accepts of one file; a file over a limit is skipped, with the reason in the manifest.

    They keep hostile or broken input from exhausting the machine: ``max_file_mb``
    bounds what a worker reads (a 2 MB zip may unpack to gigabytes); ``max_minutes``
    and ``max_tokens`` catch pieces that would flood the training set (one note held
    for days is hundreds of thousands of time shifts); ``timeout`` (seconds to read
    and tokenize one file) stops a parser that hangs.
    """

    max_file_mb: float = 64.0
    max_minutes: float = 60.0
    max_tokens: int = 500_000
    timeout: float = 60.0


def prepare(
    source: str,
    out: Path,
    tokenizer: str | None = None,
    valid: float = 0.1,
    test: float = 0.1,
    workers: int | None = None,
    tracks: tuple[str, ...] = (),
    bpe: int | None = None,
    limits: Limits = Limits(),
    soprano_ahead: int = 0,
    voice_order: str = "SATB",
) -> Path:
    """Read ``source``, tokenize every piece and write the dataset to ``out``.

    ``tokenizer`` defaults to the one that suits the source (the chorale grid for
    chorales, the melody grid for **kern and ABC folk songs, performance events
    for MIDI); ``tracks`` keeps only the named tracks (or program numbers) of
    multi-track files; ``bpe`` is the vocabulary size to learn BPE merges up to
    (miditok tokenizers only); files over ``limits`` are skipped.
    """
    items, suggested = list_source(source)
    tok = make_tokenizer(tokenizer or suggested, bpe, soprano_ahead, voice_order)
    workers = workers or min(4, os.cpu_count() or 1)
    results = encode_items(items, tok, tracks, workers, limits)
    pieces, skipped = _collect(items, results, valid, test)
    if not pieces:
        reasons = sorted({r for _, r in skipped})[:3]
        raise RepriseError(f"{source}: no usable pieces for {tok.name} (e.g. {'; '.join(reasons)})")
    tok.fit([p.ids for p in pieces if p.split == "train"] or [p.ids for p in pieces])
    pieces = [EncodedPiece(p.name, tok.compress(p.ids), p.split, p.source_sha1) for p in pieces]
    return write_dataset(out, pieces, tok, source, skipped)


def make_tokenizer(name: str, bpe: int | None = None, soprano_ahead: int = 0, voice_order: str = "SATB") -> Tokenizer:
    """A fresh tokenizer by registry name; ``bpe`` only for the miditok ones, ``soprano_ahead`` and
    ``voice_order`` for the chorale grid."""
    cls = tokenizer_class(name)
    if soprano_ahead or voice_order != "SATB":
        if cls is not ChoraleGrid:
            option = "--soprano-ahead" if soprano_ahead else "--voice-order"
            raise RepriseError(f"{option} works with chorale-grid, not {name}")
        return ChoraleGrid(soprano_ahead=soprano_ahead, voice_order=voice_order.upper())
    if bpe is None:
        return cls()
    if not issubclass(cls, MiditokTokenizer):
        raise RepriseError(f"--bpe works with remi, tsd and midilike, not {name}")
    return cls(bpe_vocab=bpe)


def encode_items(
    items: list[Item], tok: Tokenizer, tracks: tuple[str, ...], workers: int, limits: Limits = Limits()
) -> list[tuple[np.ndarray, str] | str]:
    """Each item's ``(ids, sha1 of its file)``, or why it was skipped.

    Every worker process reads and tokenizes one item at a time, so a worker that
    dies (a parser's segfault) or runs past ``limits.timeout`` (it is killed) costs
    that one item, and a fresh worker takes its place.
    """
    results: list[tuple[np.ndarray, str] | str | None] = [None] * len(items)
    todo = deque(range(len(items)))
    pool = [_Worker(tok.to_json(), tracks, limits) for _ in range(min(workers, len(items)))]
    try:
        while todo or any(w.index is not None for w in pool):
            for worker in pool:
                if worker.index is None and todo:
                    worker.give(todo.popleft(), items)
            busy = [w for w in pool if w.index is not None]
            soonest = min(w.deadline for w in busy) - time.monotonic()
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy], max(0.0, soonest))
            for worker in busy:
                index, result = worker.index, worker.collect()
                if result is not None:
                    results[index] = result
    finally:
        for worker in pool:
            worker.stop()
    return results


class _Worker:
    """A process that encodes the items it is given, one at a time, and the item it is on."""

    def __init__(self, tokenizer_json: dict, tracks: tuple[str, ...], limits: Limits) -> None:
        self.args, self.limits = (tokenizer_json, tracks, limits), limits
        self.index: int | None = None
        self.deadline = 0.0
        self._start()

    def _start(self) -> None:
        self.conn, child = multiprocessing.Pipe()
        self.process = multiprocessing.Process(target=_serve, args=(child, *self.args), daemon=True)
        self.process.start()
        child.close()

    def give(self, index: int, items: list[Item]) -> None:
        self.index, self.deadline = index, time.monotonic() + self.limits.timeout
        self.conn.send(items[index])

    def collect(self) -> tuple[np.ndarray, str] | str | None:
        """The item's result once there is one, or the reason it has none: the worker died or ran out of
        time (it is replaced); ``None`` while it is still working."""
        if self.conn.poll():
            try:
                result = self.conn.recv()
            except (EOFError, OSError):  # it died, perhaps while sending
                result = self._restart(CRASHED)
        elif not self.process.is_alive():
            result = self._restart(CRASHED)
        elif time.monotonic() >= self.deadline:
            result = self._restart(f"timed out after {self.limits.timeout:g} s (--timeout); its worker was stopped")
        else:
            return None
        self.index = None
        return result

    def _restart(self, reason: str) -> str:
        """Replace the dead or stuck process with a fresh one; returns ``reason``."""
        self.stop()
        self._start()
        return reason

    def stop(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()


def _serve(conn, tokenizer_json: dict, tracks: tuple[str, ...], limits: Limits) -> None:
    """A worker's loop: encode each item received, send back the result, until the pipe closes."""
    _state.update(tokenizer=tokenizer_from_json(tokenizer_json), tracks=tracks, limits=limits)
    while True:
        try:
            item = conn.recv()
        except EOFError:
            return
        conn.send(_encode(item))


_state: dict = {}  # a worker's tokenizer, tracks and limits


def _encode(item: Item) -> tuple[np.ndarray, str] | str:
    """An item's ids (``BOS ... EOS``) and its file's SHA-1, or a one-line reason it cannot be used (runs in a
    worker)."""
    tok, limits = _state["tokenizer"], _state["limits"]
    try:
        score, sha1 = read_item(item, round(limits.max_file_mb * 2**20))
        score = select_tracks(score, _state["tracks"])
        minutes = score.to("second").end() / 60
        if minutes > limits.max_minutes:
            return f"lasts {minutes:,.1f} minutes, over the limit of {limits.max_minutes:g} (--max-minutes)"
        ids = tok.encode_score(score)
    except RepriseError as err:
        return str(err)
    except Exception as err:  # a parser's own bug must not end the run
        return f"cannot read it ({type(err).__name__}: {err})"[:300]
    if len(ids) > limits.max_tokens:
        return f"{len(ids):,} tokens, over the limit of {limits.max_tokens:,} (--max-tokens)"
    dtype = np.int16 if tok.vocab_size < 2**15 else np.int32
    return ids.astype(dtype), sha1


def _collect(items, results, valid: float, test: float) -> tuple[list[EncodedPiece], list[tuple[str, str]]]:
    """Pieces in name order with their splits (duplicates dropped), and ``(name, reason)`` for the rest."""
    pieces, skipped, seen = [], [], {}
    for item, result in sorted(zip(items, results), key=lambda pair: pair[0].name):
        if isinstance(result, str):
            skipped.append((item.name, result))
            continue
        ids, sha1 = result
        digest = hashlib.sha1(ids.astype(np.int64).tobytes()).digest()
        if digest in seen:
            skipped.append((item.name, f"duplicate of {seen[digest]}"))
            continue
        seen[digest] = item.name
        split = item.split or split_of(item.name, valid, test)
        pieces.append(EncodedPiece(item.name, ids.astype(np.int64), split, sha1))
    return pieces, skipped
