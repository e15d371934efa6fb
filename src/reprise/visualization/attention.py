"""Where a note looks back: token attention turned into note-to-note arcs over a piano roll.

Attention probabilities come from forward pre-hooks on every block's attention
module, which receive ``ln_attn(x)`` and hand it to the module's ``weights()``
(``(batch, heads, T, T)``); the model itself is not changed. The tokenizer's
:meth:`~reprise.data.tokenizer.Tokenizer.token_notes` says which note every token
belongs to, so the attention that a note's first token (where the note is heard)
pays to earlier tokens adds up, note by note, into the weight of one arc.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import symusic
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import PathPatch, Rectangle
from matplotlib.path import Path as CurvePath

from reprise.data.tokenizer import Tokenizer
from reprise.data.windows import aligned_down, reading_windows
from reprise.errors import RepriseError
from reprise.models.transformer import MusicTransformer
from reprise.models.transposition import TranspositionEnsemble
from reprise.visualization.pianoroll import (
    RollNote,
    add_track_legend,
    beats_per_bar,
    draw_roll,
    note_name,
    roll_figsize,
    roll_notes,
    save,
)

HEAD_COLOURS = ("#6a3d9a", "#111111", "#e7298a", "#b15928", "#008b8b", "#7a7a00", "#4b0082", "#808080")
MEAN_COLOUR = "#111111"
MIN_ARC = 0.02  # arcs lighter than this share of a note's attention are not drawn
MAX_ARCS = 8  # per head and panel: the strongest ones
ARC_ROOM = 8  # semitones of headroom above the highest note for the arcs
MAX_WEIGHT_BYTES = 2**28  # the (layers, heads, notes, notes) weights of a longer piece are cut to its first notes


@dataclass
class NoteAttention:
    """Note-to-note attention of one piece under one model.

    ``weights[l, h, i, j]`` is the attention that note ``i``'s first token pays
    (in layer ``l``, head ``h``) to the tokens of note ``j``; it is non-zero only
    for notes heard before ``i``. What is left of each row goes to the note's own
    token and to tokens of no note (``BOS``, silences).
    """

    score: symusic.Score
    notes: list[RollNote]
    onsets: np.ndarray  # (notes,) position of each note's first token; -1 for notes without a token
    weights: np.ndarray  # (layers, heads, notes, notes)
    caveat: str = ""  # what of the piece is not shown, when it was too long to show whole

    def order(self) -> np.ndarray:
        """Indices of the notes that have tokens, in the order the model reads them."""
        heard = np.flatnonzero(self.onsets >= 0)
        return heard[np.argsort(self.onsets[heard], kind="stable")]

    def pick(self, number: int) -> int:
        """The note index of the ``number``-th note read (negative counts from the end)."""
        order = self.order()
        if not -len(order) <= number < len(order):
            shown = f" ({self.caveat})" if self.caveat else ""
            raise RepriseError(
                f"--note {number}: the piece has {len(order)} notes{shown} (0..{len(order) - 1}, or -1 for the last)"
            )
        return int(order[number])

    def describe(self, note: int) -> str:
        """``E4 Alto, bar 3 beat 2`` for note index ``note``."""
        n = self.notes[note]
        track = self.score.tracks[n.track].name or f"track {n.track + 1}"
        beats = beats_per_bar(self.score)
        bar, beat = divmod(n.start * beats, beats)
        return f"{note_name(n.pitch)} {track}, bar {int(bar) + 1}, beat {beat + 1:g}"


def token_attention(model: MusicTransformer, ids: np.ndarray, frame: int = 1) -> np.ndarray:
    """``(layers, heads, T, T)`` attention probabilities of every token over the earlier ones.

    A sequence longer than the model's context is read in windows that hop by
    half a context (on ``frame`` boundaries), the way generation slides; each
    query's row comes from the window that shows it the most history. The result
    takes layers x heads x T^2 floats: for long pieces use :func:`note_attention`.
    """
    model = _one_network(model)
    ids = np.asarray(ids)
    out = np.zeros((model.config.n_layers, model.config.n_heads, len(ids), len(ids)), dtype=np.float32)
    for rows, start, weights in _windows(model, ids, frame):
        out[:, :, rows, start : start + weights.shape[-1]] = weights
    return out


def note_attention(
    model: MusicTransformer, tokenizer: Tokenizer, ids: np.ndarray, max_bytes: int = MAX_WEIGHT_BYTES
) -> NoteAttention:
    """The note-to-note attention of the piece ``ids`` (``BOS`` first).

    Token attention is summed into notes window by window, so memory grows with
    the notes squared, not the tokens; a piece whose notes' weights would take
    more than ``max_bytes`` is cut to its first notes, and ``caveat`` says so.
    """
    model = _one_network(model)
    ids, caveat = _fit(model, tokenizer, np.asarray(ids), max_bytes)
    score = tokenizer.decode(ids)
    notes = roll_notes(score)
    owner = tokenizer.token_notes(ids)
    onsets = _onsets(owner, len(notes))
    weights = np.zeros((model.config.n_layers, model.config.n_heads, len(notes), len(notes)), dtype=np.float32)
    for rows, start, window in _windows(model, ids, tokenizer.frame):
        _add_notes(weights, window, rows, start, owner, onsets)
    return NoteAttention(score, notes, onsets, weights, caveat)


def view(weights: np.ndarray, layer: str, head: str) -> list[tuple[str, list[tuple[str, str, np.ndarray]]]]:
    """The panels to draw from ``(L, H, N, N)`` weights: ``(title, [(label, colour, N x N) per head])``.

    ``layer`` and ``head`` are ``all`` (one panel per layer / one colour per head),
    ``mean`` (averaged) or a number counted from 1.
    """
    heads = _choose(head, weights.shape[1], "head")
    return [
        (title, [(label, _head_colour(index), matrix) for index, label, matrix in heads(by_layer)])
        for _, title, by_layer in _choose(layer, weights.shape[0], "layer")(weights)
    ]


def plot_attention(
    attention: NoteAttention, query: int, out: Path, layer: str = "all", head: str = "all", title: str = ""
) -> Path:
    """Draw the arcs from note index ``query`` to the notes it attends to, one panel per layer, into ``out``."""
    panels = view(attention.weights, layer, head)
    width, height = roll_figsize(attention.score, 3.2)
    fig = Figure(figsize=(width, 0.9 + height * len(panels)), dpi=110)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)
    for ax, (panel_title, heads) in zip(axes[:, 0], panels):
        draw_roll(ax, attention.score, alpha=0.35)
        for _, colour, matrix in heads:
            _draw_arcs(ax, attention.notes, query, matrix[query], colour)
        _mark(ax, attention.notes[query], "black", 1.6)
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + ARC_ROOM)
        ax.set_title(panel_title, loc="left", fontsize=9)
        ax.set_xlabel("")
    axes[-1, 0].set_xlabel("bar")
    heads = [Line2D([], [], color=colour, lw=2, label=label) for label, colour, _ in panels[0][1]]
    add_track_legend(axes[0, 0], attention.score, heads)
    caveat = f"\n({attention.caveat})" if attention.caveat else ""
    fig.suptitle(f"{title}attention from {attention.describe(query)} to earlier notes{caveat}", x=0.01, ha="left")
    fig.tight_layout()
    return save(fig, out)


def _hooked_weights(model: MusicTransformer, ids: np.ndarray) -> np.ndarray:
    """``(layers, heads, T, T)`` from one forward pass over ``ids``, caught by pre-hooks on the attention modules."""
    caught: list[torch.Tensor] = []

    def catch(module: torch.nn.Module, args: tuple) -> None:
        if not hasattr(module, "weights"):
            raise RepriseError(f"{type(module).__name__} attention cannot report its weights")
        caught.append(module.weights(args[0])[0])

    hooks = [block.attn.register_forward_pre_hook(catch) for block in model.blocks]
    try:
        with torch.no_grad():
            model(torch.as_tensor(ids, dtype=torch.long, device=next(model.parameters()).device)[None])
    finally:
        for hook in hooks:
            hook.remove()
    return torch.stack(caught).float().cpu().numpy()


def _windows(model: MusicTransformer, ids: np.ndarray, frame: int) -> Iterator[tuple[np.ndarray, int, np.ndarray]]:
    """For each of :func:`reading_windows`: the query positions it answers for, where it starts, and their
    ``(layers, heads, queries, window)`` attention over its tokens."""
    for start, stop, rows in reading_windows(len(ids), model.config.context, frame):
        yield rows, start, _hooked_weights(model, ids[start:stop])[:, :, rows - start]


def _one_network(model: torch.nn.Module) -> MusicTransformer:
    """The transformer whose attention is shown: a transposition ensemble's one network, reading the piece as
    written."""
    if isinstance(model, TranspositionEnsemble):
        model = model.model
    if not isinstance(model, MusicTransformer):
        raise RepriseError(f"a {type(model).__name__} has no attention to show; use a transformer checkpoint")
    return model


def _onsets(owner: np.ndarray, n_notes: int) -> np.ndarray:
    """Each note's first position in ``owner`` (``token_notes``), -1 for notes without a token."""
    onsets = np.full(n_notes, -1, dtype=np.int64)
    for position in np.flatnonzero(owner >= 0)[::-1]:
        onsets[owner[position]] = position
    return onsets


def _fit(model: MusicTransformer, tokenizer: Tokenizer, ids: np.ndarray, max_bytes: int) -> tuple[np.ndarray, str]:
    """``ids`` cut (on a frame boundary) to the notes whose weights fit ``max_bytes``, and what was left out."""
    per_pair = 4 * model.config.n_layers * model.config.n_heads  # float32 bytes per (query, key) note pair
    owner = tokenizer.token_notes(ids)
    total = int(owner.max(initial=-1)) + 1
    keep = int(np.sqrt(max_bytes / per_pair))
    if total <= keep:
        return ids, ""
    onsets = _onsets(owner, total)
    first_left_out = np.sort(onsets[onsets >= 0])[keep]
    cut = 1 + aligned_down(first_left_out - 1, tokenizer.frame)  # BOS, then whole frames
    return ids[:cut], (
        f"the first {keep:,} of {total:,} notes: all of them would take "
        f"{per_pair * total**2 / 2**30:,.1f} GiB at {model.config.n_layers} layers x "
        f"{model.config.n_heads} heads"
    )


def _add_notes(
    out: np.ndarray, weights: np.ndarray, rows: np.ndarray, start: int, owner: np.ndarray, onsets: np.ndarray
) -> None:
    """Fill ``out[:, :, note]`` for the notes heard at positions ``rows``, whose ``(L, H, rows, window)`` token
    attention over the positions from ``start`` is ``weights``: each row summed over each earlier note's tokens."""
    heard = np.flatnonzero(np.isin(onsets, rows))
    if not len(heard):
        return
    keys = start + np.flatnonzero(owner[start : start + weights.shape[-1]] >= 0)
    membership = np.zeros((len(keys), out.shape[-1]), dtype=np.float32)
    membership[np.arange(len(keys)), owner[keys]] = 1.0
    local = weights[:, :, np.searchsorted(rows, onsets[heard])][..., keys - start]  # (L, H, heard, keys)
    earlier = keys[None, :] < onsets[heard][:, None]  # a note's own token is not an arc
    out[:, :, heard] = (local * earlier) @ membership


def _choose(spec: str, count: int, what: str) -> Callable[[np.ndarray], list[tuple[int | None, str, np.ndarray]]]:
    """For ``all``, ``mean`` or a number: a function from an array indexed by ``what`` first to
    ``(index or None for a mean, label, slice)`` triples."""
    if spec == "all":
        return lambda a: [(i, f"{what} {i + 1}", a[i]) for i in range(count)]
    if spec == "mean":
        return lambda a: [(None, f"mean of {count} {what}s", a.mean(0))]
    if spec.isdigit() and 1 <= int(spec) <= count:
        return lambda a: [(int(spec) - 1, f"{what} {spec}", a[int(spec) - 1])]
    raise RepriseError(f"--{what} {spec!r}: expected all, mean or a number from 1 to {count}")


def _head_colour(index: int | None) -> str:
    return MEAN_COLOUR if index is None else HEAD_COLOURS[index % len(HEAD_COLOURS)]


def _draw_arcs(ax: Axes, notes: list[RollNote], query: int, weights: np.ndarray, colour: str) -> None:
    """Arcs bulging upwards from the query note to its strongest earlier notes; thickness is weight."""
    source = notes[query]
    strongest = np.argsort(weights)[::-1][:MAX_ARCS]
    for target in strongest[weights[strongest] >= MIN_ARC]:
        note = notes[target]
        start, end = (note.start, note.pitch), (source.start, source.pitch)
        lift = 1 + (ARC_ROOM - 1) * min(1.0, (source.start - note.start) / 2)
        control = ((start[0] + end[0]) / 2, max(start[1], end[1]) + lift)
        curve = CurvePath([start, control, end], [CurvePath.MOVETO, CurvePath.CURVE3, CurvePath.CURVE3])
        w = float(weights[target])
        ax.add_patch(
            PathPatch(
                curve, fill=False, color=colour, lw=0.6 + 7 * w, alpha=min(1.0, 0.35 + w), zorder=3, capstyle="round"
            )
        )
        _mark(ax, note, colour, 0.8)


def _mark(ax: Axes, note: RollNote, colour: str, lw: float) -> None:
    ax.add_patch(
        Rectangle(
            (note.start, note.pitch - 0.5), note.end - note.start, 1.0, fill=False, edgecolor=colour, lw=lw, zorder=4
        )
    )
