"""Conditional generation with the encoder-decoder: harmonise a soprano, accompany a melody, fill a gap.

:func:`sample_targets` is ``generate.py``'s loop with a source. The encoder
reads the source window once per decoder window, every cross-attention layer
computes the memory's keys and values once (``CrossCache``), and each new token
costs one row of self- and cross-attention. When the target outgrows the
context, the decoder window slides as in ``generate.py`` (to the last
half-context, on a frame boundary) and the source window follows it, exactly as
training and scoring cut their windows (:func:`reprise.data.pairs.decoder_window`).

The task wrappers turn the result into music: :func:`harmonize` returns whole
chorales whose soprano is the given one, :func:`infill` the whole piece with the
span filled, :func:`accompany` the accompaniment's events.

The last section reads the music a user brings (a melody track, a transposition,
a range of bars) and assembles an accompanied song, with the checks and one-line
errors that ``reprise harmonize/accompany/infill`` and the studio share.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import symusic
import torch
from torch import nn

from reprise.data.anticipation import MelodyAhead, accompaniment_of, melody_notes
from reprise.data.chorale_grid import SILENCE, ChoraleGrid
from reprise.data.fill import FillTokenizer
from reprise.data.given_melody import fit_soprano
from reprise.data.melody_condition import MelodyFollower
from reprise.data.pairs import (
    Pair,
    Task,
    harmonize_pair,
    infill_pair,
    join_harmony,
    join_infill,
    source_window,
)
from reprise.data.performance import Performance
from reprise.data.sources import select_tracks
from reprise.data.windows import slide_start
from reprise.errors import RepriseError
from reprise.generation.generate import generate
from reprise.generation.sampling import SamplingConfig, sample
from reprise.models.encoder_decoder import EncoderDecoder

ACCOMPANY_TAIL = 200  # time steps (2 s of 10 ms) an accompaniment may ring on after the melody ends


@torch.no_grad()
def sample_targets(
    model: nn.Module,
    task: Task,
    pair: Pair,
    n_tokens: int,
    num_samples: int = 1,
    sampling: SamplingConfig | None = None,
    seed: int = 0,
    use_cache: bool = True,
    end_time: int | None = None,
    on_token: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """``num_samples`` targets for ``pair.source``, each ``BOS`` and its tokens (no ``EOS``).

    Without ``end_time`` every target has exactly ``n_tokens`` tokens and ``EOS``
    is never sampled; with it, a target ends at its ``EOS`` (forced once it
    reaches ``end_time``) or after ``n_tokens``. ``on_token(i)`` is called after the
    ``i``-th token (progress; an exception it raises stops sampling, e.g. to cancel).
    """
    sampling = sampling or SamplingConfig()
    if sampling.strict:
        raise RepriseError("strict voice leading needs a decoder-only chorale-grid model, not an encoder-decoder")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    model.eval()
    tokenizer, context = task.tokenizer, model.config.context
    seq = np.full((num_samples, 1), tokenizer.bos_id, dtype=np.int64)
    banned = torch.zeros(model.config.vocab_size, dtype=torch.bool, device=device)
    banned[[tokenizer.pad_id, tokenizer.bos_id] + ([tokenizer.eos_id] if end_time is None else [])] = True
    source_where = task.source_clock.where(pair.source)
    ended = np.zeros(num_samples, dtype=bool)
    start, logits = 0, None
    for i in range(n_tokens):
        if seq.shape[1] - start > context:  # the window is full: slide it
            start, logits = slide_start(seq.shape[1], context, task.target_frame), None
        where = _following(task, pair, seq, start)
        if logits is None:  # (re)read the source and prefill the window (every step when not caching)
            t0 = where[:, 0, 0].copy()
            memory = model.encode(*_source_windows(model, pair, source_where, t0, device))
            caches = model.new_caches(num_samples, context) if use_cache else None
            logits = model.decode(memory, _tensor(seq[:, start:], device), _tensor(_from(where, t0), device), caches)[
                :, -1
            ]
        disallowed = banned | _disallowed(task, seq.shape[1], device)
        if end_time is not None:
            disallowed = disallowed.expand(num_samples, -1).clone()
            late = torch.from_numpy(where[:, -1, 0] >= end_time).to(device)
            disallowed[late] = True
            disallowed[late, tokenizer.eos_id] = False
        token = sample(logits.masked_fill(disallowed, float("-inf")), sampling, generator).cpu().numpy()
        seq = np.concatenate([seq, token[:, None]], 1)
        if on_token is not None:
            on_token(i + 1)
        ended |= token == tokenizer.eos_id
        if ended.all():
            break
        full = seq.shape[1] - start > context
        if caches is None or full or i == n_tokens - 1:
            logits = None
        else:
            new = _from(_following(task, pair, seq, seq.shape[1] - 1), t0)
            logits = model.decode(memory, _tensor(seq[:, -1:], device), _tensor(new, device), caches)[:, -1]
    return [row[: _end(row, tokenizer.eos_id)] for row in seq]


def _following(task: Task, pair: Pair, seq: np.ndarray, start: int) -> np.ndarray:
    """``(B, n - start, 2)``: where the tokens that ``seq[:, start:]`` predict sit (absolute time)."""
    return np.stack([task.target_clock.following(row, pair.target_offset)[start:] for row in seq])


def _from(where: np.ndarray, t0: np.ndarray) -> np.ndarray:
    """``where`` ``(B, T, 2)`` with each row's time counted from its ``t0``."""
    out = where.copy()
    out[..., 0] -= t0[:, None]
    return out


def _source_windows(
    model: nn.Module, pair: Pair, source_where: np.ndarray, t0: np.ndarray, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's source window for its decoder window starting at time ``t0[row]``, padded with ``PAD``."""
    config = model.config
    rows = [source_window(pair.source, source_where, int(t), config.source_context, config.source_offset) for t in t0]
    width = max(len(ids) for ids, _ in rows)
    source = np.zeros((len(rows), width), dtype=np.int64)
    where = np.zeros((len(rows), width, 2), dtype=np.int64)
    for r, (ids, w) in enumerate(rows):
        source[r, : len(ids)], where[r, : len(ids)] = ids, w
    return _tensor(source, device), _tensor(where, device)


def _disallowed(task: Task, position: int, device) -> torch.Tensor:
    allowed = task.allowed(position)
    if allowed is None:
        return torch.zeros((), dtype=torch.bool, device=device)
    return ~torch.from_numpy(allowed).to(device)


def _tensor(array: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def _end(row: np.ndarray, eos: int) -> int:
    stops = np.flatnonzero(row == eos)
    return int(stops[0]) if len(stops) else len(row)


# -- the tasks -------------------------------------------------------------------------------
def harmonize(model: nn.Module, tokenizer: ChoraleGrid, soprano: np.ndarray, **options) -> list[np.ndarray]:
    """Chorales (``BOS`` frames ``EOS`` of ``tokenizer``) whose soprano is ``soprano`` (a pitch per 16th
    step, -1 silent): an encoder-decoder writes alto, tenor and bass given the soprano; a decoder-only
    chorale model writes them with the soprano tokens forced, which with ``soprano_ahead`` it reads
    that many steps before the chord it writes."""
    grid = np.full((len(soprano), 4), SILENCE, dtype=np.int64)
    grid[:, 0] = soprano
    if not isinstance(model, EncoderDecoder):
        ids = tokenizer.encode_grid(grid)
        forced = np.where(tokenizer.lower_voices(ids), -1, ids)[1:]
        return list(generate(model, tokenizer, ids[:1], len(forced), forced=forced, **options))
    pair = harmonize_pair("given", tokenizer.encode_grid(grid), tokenizer)
    targets = sample_targets(model, Task("harmonize", tokenizer), pair, 3 * len(soprano), **options)
    return [join_harmony(pair.source, target, tokenizer) for target in targets]


def infill(model: nn.Module, task: Task, ids: np.ndarray, span: tuple[int, int], **options) -> list[np.ndarray]:
    """The piece ``ids`` (``BOS ... [EOS]``) with the steps ``[start, stop)`` of ``span`` written anew, by an
    encoder-decoder or by a decoder-only model of fill-in-the-middle streams (:func:`fill_middle`)."""
    ids = np.asarray(ids)
    if ids[-1] != task.tokenizer.eos_id:
        ids = np.r_[ids, task.tokenizer.eos_id]
    if not isinstance(model, EncoderDecoder):
        return fill_middle(model, FillTokenizer(task.tokenizer), ids, span, **options)
    pair = infill_pair("given", ids, span, task)
    targets = sample_targets(model, task, pair, len(pair.target) - 2, **options)
    return [join_infill(pair, target, task.tokenizer.frame) for target in targets]


def fill_middle(
    model: nn.Module, tokenizer: FillTokenizer, ids: np.ndarray, span: tuple[int, int], **options
) -> list[np.ndarray]:
    """The piece ``ids`` (``BOS ... EOS``) with steps ``[start, stop)`` written by a decoder-only model of
    fill-in-the-middle streams: it reads the bars around the gap (as many as its context holds), then writes
    exactly the span's tokens; everything outside the span is kept as it was."""
    stream = tokenizer.arrange(ids, span, model.config.context + 1)
    given = len(stream) - len(tokenizer.parts(stream)[2])
    rows = generate(model, tokenizer, stream[:given], len(stream) - given, **options)
    first, last = (1 + step * tokenizer.frame for step in span)
    return [np.r_[ids[:first], row[given:], ids[last:]] for row in rows]


def accompany(model: nn.Module, task: Task, melody: np.ndarray, max_tokens: int, **options) -> list[np.ndarray]:
    """Accompaniments (``BOS`` and events) of the performance events ``melody``, ending with it: an
    encoder-decoder writes them given the melody; a decoder-only model of anticipated streams writes
    them with the melody's notes forced into its stream ahead of when they sound, or (a conditioned model)
    with the melody's features beside each token it reads."""
    melody = np.asarray(melody)
    if melody[-1] != task.tokenizer.eos_id:
        melody = np.r_[melody, task.tokenizer.eos_id]
    end = int(task.source_clock.times(melody)[-1]) + ACCOMPANY_TAIL
    if not isinstance(model, EncoderDecoder):
        samples, notes, bos = options.pop("num_samples", 1), melody_notes(melody), np.array([task.tokenizer.bos_id])
        if getattr(
            model.config, "condition", 0
        ):  # the melody beside each token; the stream ends once the clock passes the end
            ending, beside = MelodyAhead(notes[:0], samples, end), MelodyFollower(notes)
            streams = generate(
                model, task.tokenizer, bos, max_tokens, samples, forced=ending, condition=beside, **options
            )
        else:
            ahead = MelodyAhead(notes, samples, end, task.tokenizer.anticipation)
            streams = generate(model, task.tokenizer, bos, max_tokens, samples, forced=ahead, **options)
        return [accompaniment_of(row[: _end(row, task.tokenizer.eos_id)]) for row in streams]
    pair = Pair("given", melody, np.array([task.tokenizer.bos_id]))
    return sample_targets(model, task, pair, max_tokens, end_time=end, **options)


# -- the music a user brings -----------------------------------------------------------------
def melody_track(score: symusic.Score, name: str | None = None) -> symusic.Score:
    """The score with only the melody track: ``name`` (a track name or program number), else the only
    pitched track with notes, or of several the one named ``MELODY`` (POP909's; none: an error listing them)."""
    if name:
        return select_tracks(score, (name,))
    tracks = [t for t in score.tracks if len(t.notes) and not t.is_drum]
    if any(t.name.strip().upper() == "MELODY" for t in tracks) and len(tracks) > 1:
        return select_tracks(score, ("MELODY",))
    if len(tracks) > 1:
        names = ", ".join(t.name or f"program {t.program}" for t in tracks)
        raise RepriseError(f"{len(tracks)} tracks have notes ({names}); choose the melody with --melody-track")
    return select_tracks(score)


def fitted_soprano(steps: np.ndarray, tokenizer: ChoraleGrid, transpose: int = 0) -> np.ndarray:
    """The melody ``steps`` (a pitch per 16th step, -1 silent) moved by ``transpose`` semitones, refused
    unless it lies in the soprano range of the model's training chorales."""
    soprano = np.where(steps >= 0, steps + transpose, steps)
    fit_soprano(soprano, tokenizer)
    return soprano


def bar_span(bars: str, task: Task, ids: np.ndarray) -> tuple[int, int]:
    """The steps ``[start, stop)`` that ``bars`` ("5" or "5-8", from 1) names in the piece ``ids``."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+))?\s*", bars)
    if not match:
        raise RepriseError(f"--bars {bars!r}: expected a bar (5) or a range of bars (5-8)")
    n_steps = int((ids > task.tokenizer.eos_id).sum()) // task.tokenizer.frame
    return task.bars(int(match[1]), int(match[2] or match[1]), n_steps)


def melody_events(score: symusic.Score, name: str | None = None) -> np.ndarray:
    """The performance events of a song's melody track (:func:`melody_track`), what every accompanist is given."""
    return Performance().encode_score(melody_track(score, name))


def accompanied(melody: np.ndarray, part: np.ndarray) -> symusic.Score:
    """One song of two tracks: the ``melody`` as given, then the accompaniment ``part`` (both events)."""
    tokenizer = Performance()
    score = tokenizer.decode(melody)
    score.tracks[0].name = "Melody"
    accompaniment = tokenizer.decode(part).tracks[0]
    accompaniment.name = "Accompaniment"
    score.tracks.append(accompaniment)
    return score
