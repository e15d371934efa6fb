"""Pairs of music for the encoder-decoder: what it is given (the *source*) and what it writes (the *target*).

Three tasks, chosen when training (``EncoderDecoderConfig.task``):

- ``harmonize`` (chorale grid): source = the soprano, one token per 16th step;
  target = alto, tenor and bass in raster order, three tokens per step. The
  chorale is the soprano and the target interleaved again (:func:`join_harmony`),
  so the given soprano is kept exactly.
- ``accompany`` (performance events): a dataset folder holding two prepared
  datasets of the same pieces, ``source/`` (e.g. POP909 prepared with
  ``--tracks MELODY``) and ``target/`` (``--tracks PIANO``); pieces are paired by
  name within a split. Both were encoded from time 0 of the same file, so they
  are aligned by absolute time (10 ms steps).
- ``infill`` (chorale grid, melody grid): source = the piece with a span of bars
  replaced by ``MASK`` tokens (one per token, so every other token keeps its
  place), target = the span. A bar is 16 steps of the grid counted from the first
  step (the grids store no time signature: a 3/4 piece or a pickup shifts them).

A :class:`Clock` says where each token sits: its time step and its *slot*, its
rank among the tokens of that step. The model embeds both for source and target
alike, so a target token can find the source at its own time. Windows of a long
pair (:func:`decoder_window`, :func:`source_window`) measure time from the first
token the window predicts; training, scoring and generation all use them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reprise.data.augment import Augmentation, transpose
from reprise.data.chorale_grid import ChoraleGrid
from reprise.data.dataset import TokenDataset, read_manifest
from reprise.data.melody_grid import MelodyGrid
from reprise.data.performance import NOTE_ON, TIME_SHIFT, VELOCITY, Performance
from reprise.data.tokenizer import Tokenizer
from reprise.data.windows import crop_start
from reprise.errors import RepriseError

TASKS = ("harmonize", "accompany", "infill")
STEPS_PER_BAR = 16
MAX_INFILL_BARS = 4  # training spans are 1 to this many bars
EVAL_INFILL_BARS = 2  # scoring fills this many bars of each piece, at a place fixed by the piece's index


@dataclass(frozen=True)
class Clock:
    """When tokens sound: ``frame`` tokens per time step (grids), or ``frame`` 0 for performance
    events, whose ``TIME_SHIFT`` tokens move time on by 10 ms steps. ``BOS`` sits one step before
    everything; ``offset`` is the time of the first step (an infill span's start)."""

    frame: int = 1

    def times(self, ids: np.ndarray, offset: int = 0) -> np.ndarray:
        """The time step of each token of ``ids`` (``BOS`` first)."""
        ids = np.asarray(ids)
        if self.frame:
            return offset + (np.arange(len(ids)) - 1) // self.frame
        shift = np.where((ids >= TIME_SHIFT) & (ids < VELOCITY), ids - TIME_SHIFT + 1, 0)
        times = offset + np.cumsum(shift) - shift
        times[:1] = offset - 1
        return times

    def where(self, ids: np.ndarray, offset: int = 0) -> np.ndarray:
        """``(len(ids), 2)``: each token's time step and its rank among the tokens of that step."""
        times = self.times(ids, offset)
        index = np.arange(len(times))
        run_start = np.r_[True, times[1:] != times[:-1]] if len(times) else np.zeros(0, bool)
        slot = index - np.maximum.accumulate(np.where(run_start, index, 0))
        return np.stack([times, slot], -1)

    def following(self, ids: np.ndarray, offset: int = 0) -> np.ndarray:
        """``(len(ids), 2)``: where the token after each one sits, the last's successor included
        (decoder inputs carry the where of the token they predict)."""
        return self.where(np.r_[ids, NOTE_ON], offset)[1:]  # NOTE_ON: a token that takes no time


@dataclass(frozen=True)
class Task:
    """A conditional task on data of one tokenizer: its clocks, vocabularies and sampling constraints."""

    name: str
    tokenizer: Tokenizer

    def __post_init__(self) -> None:
        allowed = {"harmonize": (ChoraleGrid,), "infill": (ChoraleGrid, MelodyGrid), "accompany": (Performance,)}
        if self.name not in allowed:
            raise RepriseError(f"unknown task {self.name!r}; choose one of {', '.join(TASKS)}")
        if not isinstance(self.tokenizer, allowed[self.name]):
            kinds = " or ".join(k.name for k in allowed[self.name])
            raise RepriseError(
                f"{self.name} needs {kinds} tokens, not {self.tokenizer.name}"
                + (" (REMI infilling is not supported yet)" if self.name == "infill" else "")
            )

    @property
    def source_clock(self) -> Clock:
        """The soprano's one token per step; the grid's frame; performance time."""
        return Clock({"harmonize": 1, "infill": self.tokenizer.frame, "accompany": 0}[self.name])

    @property
    def target_clock(self) -> Clock:
        """Alto, tenor and bass: three tokens per step; the grid's frame; performance time."""
        return Clock({"harmonize": 3, "infill": self.tokenizer.frame, "accompany": 0}[self.name])

    @property
    def target_frame(self) -> int:
        """Tokens per step of the target: decoder windows start on these boundaries."""
        return max(1, self.target_clock.frame)

    @property
    def mask_id(self) -> int:
        """The id that hides an infill span's tokens in the source: one past the tokenizer's vocabulary."""
        return self.tokenizer.vocab_size

    @property
    def source_vocab_size(self) -> int:
        return self.tokenizer.vocab_size + (self.name == "infill")

    def allowed(self, position: int) -> np.ndarray | None:
        """Ids that may stand at target ``position`` (0 is ``BOS``): the voice ranges of the chorale grid."""
        if not isinstance(self.tokenizer, ChoraleGrid):
            return None
        if self.name == "harmonize":  # A, T, B of step s stand at positions 4s + 2, 3, 4 of the chorale
            step, voice = divmod(position - 1, 3)
            return self.tokenizer.allowed_next(4 * step + voice + 2)
        return self.tokenizer.allowed_next(position)

    def bars(self, first: int, last: int, n_steps: int) -> tuple[int, int]:
        """Steps ``[start, stop)`` of bars ``first..last`` (from 1) of an ``n_steps``-step piece, checked."""
        n_bars = -(-n_steps // STEPS_PER_BAR)
        if not 1 <= first <= last:
            raise RepriseError(f"bars {first}-{last}: give bars from 1 up, first <= last (e.g. 5-8)")
        if last > n_bars:
            raise RepriseError(f"bars {first}-{last}: the piece has {n_bars} bars of {STEPS_PER_BAR} steps")
        return (first - 1) * STEPS_PER_BAR, min(last * STEPS_PER_BAR, n_steps)


@dataclass
class Pair:
    """A source and a target (each ``BOS ... EOS``); ``target_offset`` is the time of the target's first step."""

    name: str
    source: np.ndarray
    target: np.ndarray
    target_offset: int = 0
    span: tuple[int, int] | None = None  # infill: the masked steps [start, stop)


# -- the tasks' pairs -------------------------------------------------------------------
def harmonize_pair(name: str, ids: np.ndarray, tokenizer: ChoraleGrid) -> Pair:
    """A chorale (``BOS`` raster ``EOS``) as soprano -> alto, tenor, bass."""
    grid = _steps(ids, 4)
    source = np.r_[tokenizer.bos_id, grid[:, 0], tokenizer.eos_id]
    target = np.r_[tokenizer.bos_id, grid[:, 1:].reshape(-1), tokenizer.eos_id]
    return Pair(name, source, target)


def join_harmony(source: np.ndarray, target: np.ndarray, tokenizer: ChoraleGrid) -> np.ndarray:
    """The chorale (``BOS`` raster ``EOS``) of a soprano source and an A/T/B target, with or without ``EOS``."""
    soprano, lower = _steps(source, 1), _steps(target, 3)
    if len(lower) != len(soprano):
        raise RepriseError(f"{len(lower)} steps of alto, tenor and bass for {len(soprano)} steps of soprano")
    return np.r_[tokenizer.bos_id, np.concatenate([soprano, lower], 1).reshape(-1), tokenizer.eos_id]


def infill_pair(name: str, ids: np.ndarray, span: tuple[int, int], task: Task) -> Pair:
    """A piece with the steps ``[start, stop)`` masked -> those steps' tokens."""
    frame, tokenizer = task.tokenizer.frame, task.tokenizer
    first, last = 1 + span[0] * frame, 1 + span[1] * frame
    if not 0 <= span[0] < span[1] or last > len(ids) - 1:
        raise RepriseError(f"steps {span[0]}..{span[1]} are not a span of this {(len(ids) - 2) // frame}-step piece")
    source = np.asarray(ids).copy()
    source[first:last] = task.mask_id
    target = np.r_[tokenizer.bos_id, ids[first:last], tokenizer.eos_id]
    return Pair(name, source, target, target_offset=span[0], span=span)


def join_infill(pair: Pair, target: np.ndarray, frame: int) -> np.ndarray:
    """The source piece with its masked span replaced by ``target``'s tokens."""
    first, last = (1 + s * frame for s in pair.span)
    body = np.asarray(target)[1 : 1 + last - first]
    if len(body) != last - first:
        raise RepriseError(f"the infill has {len(body)} tokens for a span of {last - first}")
    return np.r_[pair.source[:first], body, pair.source[last:]]


def infill_span(n_steps: int, bars: int, rng: np.random.Generator) -> tuple[int, int]:
    """Steps ``[start, stop)`` of ``bars`` whole bars (fewer in a shorter piece) at a random bar."""
    n_bars = -(-n_steps // STEPS_PER_BAR)
    bars = min(bars, max(1, n_bars - 1))
    first = int(rng.integers(0, n_bars - bars + 1))
    return first * STEPS_PER_BAR, min((first + bars) * STEPS_PER_BAR, n_steps)


def training_span(n_steps: int, rng: np.random.Generator, most: int = MAX_INFILL_BARS) -> tuple[int, int]:
    """A training span: 1 to ``most`` bars (``MAX_INFILL_BARS``), at a random bar."""
    return infill_span(n_steps, int(rng.integers(1, most + 1)), rng)


def eval_span(n_steps: int, index: int) -> tuple[int, int]:
    """The ``EVAL_INFILL_BARS`` bars that scoring fills in piece ``index`` of a split: fixed by the index,
    so that every infilling model is scored on the same tokens."""
    return infill_span(n_steps, EVAL_INFILL_BARS, np.random.default_rng([index]))


def transpose_pair(
    source: np.ndarray, target: np.ndarray, tokenizer: Tokenizer, max_shift: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A melody and its accompaniment transposed together, by one shift that keeps both in range."""
    moved = transpose(np.r_[source, target], tokenizer, max_shift, rng)
    return moved[: len(source)], moved[len(source) :]


def _steps(ids: np.ndarray, frame: int) -> np.ndarray:
    """The body of ``BOS ... [EOS]`` as ``(steps, frame)``; a ragged tail is cut."""
    ids = np.asarray(ids)
    body = ids[1:-1] if len(ids) > 1 and ids[-1] == Tokenizer.eos_id else ids[1:]
    return body[: len(body) // frame * frame].reshape(-1, frame)


# -- windows ----------------------------------------------------------------------------
@dataclass
class Window:
    """Model inputs for target tokens ``[start + 1, stop)`` of a pair; time counted from the first of them."""

    source: np.ndarray  # (S,)
    source_where: np.ndarray  # (S, 2)
    inputs: np.ndarray  # (T,) target[start : stop - 1]
    where: np.ndarray  # (T, 2): where the token each input predicts sits
    targets: np.ndarray  # (T,) target[start + 1 : stop]


def source_window(
    source: np.ndarray, where: np.ndarray, t0: int, length: int, offset: float
) -> tuple[np.ndarray, np.ndarray]:
    """``length`` source tokens, ``offset`` of them before time ``t0`` where the source allows, timed from ``t0``."""
    first = int(np.searchsorted(where[:, 0], t0)) - round(offset * length)
    first = max(0, min(first, len(source) - length))
    chosen = where[first : first + length].copy()
    chosen[:, 0] -= t0
    return np.asarray(source[first : first + length]), chosen


def decoder_window(pair: Pair, task: Task, start: int, stop: int, source_context: int, source_offset: float) -> Window:
    """The window predicting ``pair.target[start + 1 : stop]``, with its source window."""
    following = task.target_clock.following(pair.target[:stop], pair.target_offset)
    t0 = int(following[start, 0])
    where = following[start : stop - 1].copy()
    where[:, 0] -= t0
    source_where = task.source_clock.where(pair.source)
    source, source_where = source_window(pair.source, source_where, t0, source_context, source_offset)
    return Window(source, source_where, pair.target[start : stop - 1], where, pair.target[start + 1 : stop])


def collate(windows: list[Window], pad_id: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """``((source, source_where, inputs, where), targets)`` padded to the longest window (targets with ``pad_id``)."""

    def stack(arrays: list[np.ndarray], fill: int) -> np.ndarray:
        out = np.full((len(arrays), max(len(a) for a in arrays), *arrays[0].shape[1:]), fill, dtype=np.int64)
        for row, a in enumerate(arrays):
            out[row, : len(a)] = a
        return out

    columns = [[getattr(w, name) for w in windows] for name in ("source", "source_where", "inputs", "where")]
    return tuple(stack(c, pad_id) for c in columns), stack([w.targets for w in windows], pad_id)


# -- the paired dataset ---------------------------------------------------------------------
class PairedDataset:
    """One split of the pairs of a task, read from prepared datasets on disk.

    ``harmonize`` and ``infill`` read one prepared dataset; ``accompany`` reads a
    folder with ``source/`` and ``target/`` prepared datasets (see the module doc).
    Training pairs are drawn afresh (augmented, random infill spans);
    :meth:`pair` without a generator gives the fixed pairs that scoring uses.
    """

    def __init__(self, directory: Path, split: str, task: str, source_context: int = 768, source_offset: float = 0.25):
        directory = Path(directory)
        self.directory, self.split = directory, split
        self.source_context, self.source_offset = source_context, source_offset
        if task == "accompany":
            if not (directory / "source" / "manifest.json").is_file():
                raise RepriseError(
                    f"{directory}: accompaniment data is a folder with source/ and target/ prepared "
                    "datasets (see `reprise prepare-pairs --help`)"
                )
            self.target_set = TokenDataset(directory / "target", split)
            self.source_set = TokenDataset(directory / "source", split)
            if self.source_set.tokenizer.to_json() != self.target_set.tokenizer.to_json():
                raise RepriseError(f"{directory}: source/ and target/ were tokenized differently")
            self.index = paired_indices(directory, split)
        else:
            self.target_set = self.source_set = TokenDataset(directory, split)
            self.index = [(i, i) for i in range(len(self.target_set))]
        self.tokenizer = self.target_set.tokenizer
        self.task = Task(task, self.tokenizer)
        offsets = self.target_set.offsets
        self.lengths = np.array([offsets[t + 1] - offsets[t] for _, t in self.index])

    def __len__(self) -> int:
        return len(self.index)

    def pair(self, i: int, rng: np.random.Generator | None = None, augment: Augmentation | None = None) -> Pair:
        """Pair ``i``: fixed without ``rng``; with it, a random infill span (and ``augment``'s variation if given).

        An accompaniment pair is only transposed (melody and accompaniment together), not stretched.
        """
        source_index, target_index = self.index[i]
        name = f"{self.split}/{i}"
        target = self.target_set.piece(target_index)
        if self.task.name == "accompany":
            source = self.source_set.piece(source_index)
            if augment and rng is not None:
                source, target = transpose_pair(source, target, self.tokenizer, augment.max_transpose, rng)
            return Pair(name, source, target)
        if augment and rng is not None:
            target = augment(target, self.tokenizer, rng)
        if self.task.name == "harmonize":
            return harmonize_pair(name, target, self.tokenizer)
        n_steps = (len(target) - 2) // self.tokenizer.frame
        span = eval_span(n_steps, i) if rng is None else training_span(n_steps, rng)
        return infill_pair(name, target, span, self.task)

    def batch(
        self, rng: np.random.Generator, batch_size: int, context: int, augment: Augmentation | None = None
    ) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """Training windows, ``((source, source_where, inputs, where), targets)``; pairs drawn by length."""
        if not len(self):
            raise RepriseError(f"{self.directory}: the {self.split} split has no pairs")
        frame = self.task.target_frame
        windows = []
        for i in rng.choice(len(self), size=batch_size, p=self.lengths / self.lengths.sum()):
            pair = self.pair(int(i), rng, augment)
            start = crop_start(len(pair.target), context, frame, rng)
            stop = min(start + context + 1, len(pair.target))
            windows.append(decoder_window(pair, self.task, start, stop, self.source_context, self.source_offset))
        return collate(windows, self.tokenizer.pad_id)


def paired_indices(directory: Path, split: str) -> list[tuple[int, int]]:
    """``(source index, target index)`` of the pieces of ``split`` present, by name, in both datasets."""

    def indices(side: str) -> dict[str, int]:
        pieces = [p["name"] for p in read_manifest(directory / side)["pieces"] if p["split"] == split]
        return {name: i for i, name in enumerate(pieces)}

    source, target = indices("source"), indices("target")
    return [(source[name], target[name]) for name in sorted(source.keys() & target.keys())]


def write_pair_manifest(directory: Path, task: str, source: str, tracks: tuple[str, str]) -> None:
    """Note in ``pairs.json`` what the ``source/`` and ``target/`` datasets of a pair folder hold."""
    counts = {s: len(paired_indices(directory, s)) for s in ("train", "valid", "test")}
    info = {"task": task, "source": source, "source_tracks": tracks[0], "target_tracks": tracks[1], "pairs": counts}
    (Path(directory) / "pairs.json").write_text(json.dumps(info, indent=1))
