"""Fill in the middle: a piece rearranged so that a decoder-only model writes a span of bars knowing both sides.

A left-to-right model that fills a gap sees only the music before it. Rearranged
as in the fill-in-the-middle training of Bavarian et al. (2022), a piece becomes
one stream that ends with the gap, so the model writes the gap as a left-to-right
model would, but knowing where the music must arrive. Two layouts, one per grid
(:func:`layout_of`; docs/conditional.md measures both against the left-only model):

- the chorale grid, "landing": the bars before the gap, then the one bar after it
  where the gap must land, next to the middle,

      BOS  before  FILL (one per bar of the gap)  landing  MIDDLE  middle

  (it beats the left-only model; the bars further after the gap are left out);
- the melody grid, suffix-prefix-middle ("SPM"): all the bars after the gap first,
  so that the bars before it stand next to the middle,

      BOS  after  FILL (one per bar of the gap)  before  MIDDLE  middle

  because a melody-grid hold continues the note just before it; with the landing
  bar in between, the melody model lost far more to the left-only one.

``FILL`` and ``MIDDLE`` are two ids appended after the grid's vocabulary (a plain
grid model's ids keep their meaning). ``FILL`` stands once per bar of the gap, so
the model knows how long the middle is and where it must join the bars after it
(without that, a first 10-minute melody model lost to the left-only one); each
marker is repeated ``frame`` times so that every grid token keeps its voice
position (the chorale grid's slot is its index modulo 4). The piece's ``EOS`` is
left out: it would break that alignment.

A stream longer than the context is cut around the gap: the middle is kept whole,
and the before and after keep the steps next to it (SPM: half the room each, a
side that is shorter leaving its share to the other; landing: the landing bar, at most
half the room, and the rest for the bars before). Training draws a span of 1 to
``MAX_INFILL_BARS`` bars per window and learns every token of the stream; scoring
counts only the middle (:meth:`FillTokenizer.scored`), with the span of
``EVAL_INFILL_BARS`` bars that the encoder-decoder's scoring fills in the same piece.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import symusic

from reprise.data.augment import Augmentation
from reprise.data.chorale_grid import ChoraleGrid
from reprise.data.dataset import TokenDataset
from reprise.data.pairs import MAX_INFILL_BARS, STEPS_PER_BAR, eval_span, training_span
from reprise.data.tokenizer import Tokenizer, register, tokenizer_from_json
from reprise.data.windows import aligned_down
from reprise.errors import RepriseError

LANDING_BARS = 1  # bars after the gap that the stream keeps: where the gap must land


@register
class FillTokenizer(Tokenizer):
    """A grid tokenizer (``base``) plus ``FILL`` and ``MIDDLE``: the vocabulary of fill-in-the-middle streams.

    It encodes and decodes plain pieces as ``base`` does; :meth:`arrange` turns a
    piece and a span into a stream, :meth:`decode` puts a stream back in order.
    """

    name = "fill"

    def __init__(self, base: Tokenizer):
        if isinstance(base, FillTokenizer):
            raise RepriseError("the data is already fill-in-the-middle streams")
        self.base = base
        self.frame = base.frame
        self.layout = layout_of(base)

    @property
    def vocab_size(self) -> int:
        return self.base.vocab_size + 2

    @property
    def fill_id(self) -> int:
        """Stands between the two sides of the gap, once per bar of the gap (its length)."""
        return self.base.vocab_size

    @property
    def middle_id(self) -> int:
        """Ends the music around the gap: the gap's tokens follow."""
        return self.base.vocab_size + 1

    def token_names(self) -> list[str]:
        return self.base.token_names() + ["FILL", "MIDDLE"]

    def encode_score(self, score: symusic.Score) -> np.ndarray:
        return self.base.encode_score(score)

    def decode(self, ids: np.ndarray) -> symusic.Score:
        return self.base.decode(self.in_order(ids))

    def tokens_per_bar(self) -> int | None:
        return self.base.tokens_per_bar()

    def allowed_next(self, position: int) -> np.ndarray | None:
        """The base grid's choices (every grid token keeps its voice position), never a marker."""
        allowed = self.base.allowed_next(position)
        allowed = np.ones(self.base.vocab_size, dtype=bool) if allowed is None else allowed
        return np.r_[allowed, False, False]

    def scored(self, ids: np.ndarray) -> np.ndarray | None:
        """Only the middle (the tokens after the ``MIDDLE`` markers) counts; a plain piece counts whole."""
        marks = np.flatnonzero(np.asarray(ids) == self.middle_id)
        if not len(marks):
            return None
        return np.arange(len(ids)) > marks[-1]

    def transposed(self, ids: np.ndarray, shift: int) -> np.ndarray:
        """The grid's pitches moved as the grid moves them; the markers stay (a transposition ensemble of a
        fill-in-the-middle model reads its streams this way)."""
        ids = np.asarray(ids)
        grid = ids < self.base.vocab_size
        return np.where(grid, self.base.transposed(np.where(grid, ids, self.base.bos_id), shift), ids)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "base": self.base.to_json(), "layout": self.layout}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FillTokenizer:
        tokenizer = cls(tokenizer_from_json(data["base"]))
        layout = data.get("layout", "spm")  # models saved before the landing layout are suffix-prefix-middle
        if layout != tokenizer.layout:
            raise RepriseError(
                f"this fill-in-the-middle model reads the {layout!r} layout, which {tokenizer.base.name} streams "
                f"no longer use (they are {tokenizer.layout!r} now); train it again with --task infill"
            )
        return tokenizer

    # -- the layout ---------------------------------------------------------------------
    def arrange(self, ids: np.ndarray, span: tuple[int, int], length: int) -> np.ndarray:
        """The stream of piece ``ids`` (``BOS ... [EOS]``) with steps ``[start, stop)`` as the middle, cut to
        at most ``length`` tokens around the gap (a model of context C reads C + 1)."""
        body, frame = _body(ids, self.base.eos_id), self.frame
        first, last = span[0] * frame, span[1] * frame
        if not 0 <= span[0] < span[1] or last > len(body):
            raise RepriseError(f"steps {span[0]}..{span[1]} are not a span of this {len(body) // frame}-step piece")
        before, middle, after = body[:first], body[first:last], body[last:]
        marks = frame * (1 + gap_bars(span))  # FILL per bar, MIDDLE once
        room = length - 1 - marks - len(middle)
        if room < 0:
            raise RepriseError(
                f"a span of {span[1] - span[0]} steps takes {len(middle)} tokens, more than this model's context "
                f"({length - 1}) holds with the markers around it; fill fewer bars at a time"
            )
        fill, then = np.full(marks - frame, self.fill_id), np.full(frame, self.middle_id)
        if self.layout == "spm":
            n_before, n_after = _shares(len(before), len(after), room, frame)
            return np.r_[self.base.bos_id, after[:n_after], fill, before[len(before) - n_before :], then, middle]
        n_after = min(len(after), LANDING_BARS * STEPS_PER_BAR * frame, aligned_down(room // 2, frame))
        n_before = min(len(before), aligned_down(room - n_after, frame))
        return np.r_[self.base.bos_id, before[len(before) - n_before :], fill, after[:n_after], then, middle]

    def parts(self, stream: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(before, after, middle)`` of a stream (the middle may be partial, as while sampling)."""
        stream = np.asarray(stream)
        fill, middle = (np.flatnonzero(stream == marker) for marker in (self.fill_id, self.middle_id))
        if not len(fill) or not len(middle):
            raise RepriseError("not a fill-in-the-middle stream (no FILL and MIDDLE markers)")
        first, second = stream[1 : fill[0]], stream[fill[-1] + 1 : middle[0]]
        before, after = (second, first) if self.layout == "spm" else (first, second)
        return before, after, stream[middle[-1] + 1 :]

    def in_order(self, ids: np.ndarray) -> np.ndarray:
        """``BOS before middle after``: a stream's music in time order; plain ids as they are."""
        ids = np.asarray(ids)
        if not np.isin([self.fill_id, self.middle_id], ids).all():
            return ids[ids < self.fill_id]
        before, after, middle = self.parts(ids)
        return np.r_[self.base.bos_id, before, middle, after]


def layout_of(base: Tokenizer) -> str:
    """Where a grid's streams put the bars after the gap: ``"landing"`` (one bar, next to the middle) on
    the chorale grid, whose tokens spell every pitch; ``"spm"`` (suffix-prefix-middle: all of them,
    first) on the melody grid, whose holds continue the note just before them, so the bars before the
    gap must stand next to it (docs/conditional.md measures both)."""
    return "landing" if isinstance(base, ChoraleGrid) else "spm"


def gap_bars(span: tuple[int, int]) -> int:
    """How many bars (a last one may be partial) the steps ``[start, stop)`` cover: the ``FILL`` markers."""
    return -(-(span[1] - span[0]) // STEPS_PER_BAR)


def _body(ids: np.ndarray, eos: int) -> np.ndarray:
    """The steps' tokens of ``BOS ... [EOS]``."""
    ids = np.asarray(ids)
    return ids[1:-1] if len(ids) > 1 and ids[-1] == eos else ids[1:]


def _shares(n_before: int, n_after: int, room: int, frame: int) -> tuple[int, int]:
    """How many tokens of the before and of the after fit in ``room``: half each, whole frames, and what
    one side does not need goes to the other."""
    half = aligned_down(room // 2, frame)
    kept_before = min(n_before, max(half, aligned_down(room - min(n_after, half), frame)))
    return kept_before, min(n_after, aligned_down(room - kept_before, frame))


class FillDataset:
    """One split of a prepared grid dataset, served as fill-in-the-middle streams of ``context + 1`` tokens
    at most (``None``: uncut); the decoder-only trainer reads it as it reads a :class:`TokenDataset`."""

    def __init__(self, directory: Path, split: str, context: int | None = None):
        self.pieces = TokenDataset(directory, split)
        self.directory, self.split, self.context = self.pieces.directory, split, context
        if self.pieces.tokenizer.name not in ("chorale-grid", "melody-grid"):
            raise RepriseError(
                f"{directory}: infilling needs chorale-grid or melody-grid data, not {self.pieces.tokenizer.name}"
            )
        self.tokenizer = FillTokenizer(self.pieces.tokenizer)

    def __len__(self) -> int:
        return len(self.pieces)

    def n_tokens(self) -> int:
        return self.pieces.n_tokens()

    def piece(self, i: int) -> np.ndarray:
        """Piece ``i``'s stream for scoring: its middle is the span the encoder-decoder's scoring fills."""
        ids = self.pieces.piece(i)
        n_steps = len(_body(ids, self.tokenizer.eos_id)) // self.tokenizer.frame
        length = len(ids) + 2 * self.tokenizer.frame if self.context is None else self.context + 1
        return self.tokenizer.arrange(ids, eval_span(n_steps, i), length)

    def most_bars(self, context: int) -> int:
        """The longest training span, in bars: ``MAX_INFILL_BARS``, or fewer where the context holds fewer."""
        fits = (context - self.tokenizer.frame) // ((STEPS_PER_BAR + 1) * self.tokenizer.frame)
        if fits < 1:
            raise RepriseError(f"a context of {context} tokens holds no bar to fill with the markers around it")
        return min(MAX_INFILL_BARS, fits)

    def batch(
        self, rng: np.random.Generator, batch_size: int, context: int, augment: Augmentation | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(inputs, targets)`` of shape ``(batch, context)``: streams of random spans of pieces drawn by length,
        each piece varied by ``augment`` first; padding targets are ``PAD``."""
        if not len(self):
            raise RepriseError(f"{self.directory}: the {self.split} split has no pieces")
        lengths = np.diff(self.pieces.offsets)
        window = np.full((batch_size, context + 1), self.tokenizer.pad_id, dtype=np.int64)
        for row, i in enumerate(rng.choice(len(self), size=batch_size, p=lengths / lengths.sum())):
            ids = self.pieces.piece(int(i))
            ids = augment(ids, self.pieces.tokenizer, rng) if augment else ids
            n_steps = len(_body(ids, self.tokenizer.eos_id)) // self.tokenizer.frame
            stream = self.tokenizer.arrange(ids, training_span(n_steps, rng, self.most_bars(context)), context + 1)
            window[row, : len(stream)] = stream
        return window[:, :-1], window[:, 1:]
