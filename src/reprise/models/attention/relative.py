"""Relative self-attention with the Music Transformer's skewing (Huang et al., 2018).

Music is made of relations: an interval, a rhythm, a motif return the same
wherever they occur. Relative attention lets a logit depend on how far apart a
query and a key are, not on where they are, so it works without any absolute
position signal (``--positions none``).

Shaw et al. (2018) add to each logit ``q_i·k_j`` a term ``q_i·r_(i-j)``, with
``r_d`` a learned embedding per distance ``d``, clipped at a maximum distance.
Computed directly (``relative_shaw.py``), that needs an ``(L, L, D_h)`` tensor of
embeddings per head. The Music Transformer's observation: with ``E`` the
``(L, D_h)`` embeddings of distances ``L-1, ..., 1, 0``, every term needed is an
entry of ``Q·Eᵀ`` (``L×L``), only in the wrong column: row ``i`` holds the term
for distance ``d`` at column ``L-1-d``, while key ``k = i-d`` wants it at
column ``k``. The *skew* moves every row into place (:func:`skew`: a strided
view, no copy)::

    S_rel = skew(Q·Eᵀ);   attention = softmax((Q·Kᵀ + S_rel) / sqrt(D_h)) · V

Non-causal attention (an encoder's) needs distances in both directions: ``E``
then embeds ``L-1, ..., 0, ..., -(L-1)`` (``2L-1`` rows; negative distances have
their own embeddings) and the same skew applies.

Training goes through :class:`_RelativeAttention`, a hand-written forward and
backward over chunks of queries (as FlashAttention does): each chunk meets only
the keys it may see (the causal upper triangle is skipped), its probabilities
are kept for the backward pass, and the skew's adjoint is a strided view too.
It computes 9 products of ``L×L×D_h`` size per layer where causal SDPA computes
7 (``docs/speed.md``). Embeddings are learned per layer, per head or shared by
all heads (``relative_shared_heads``). During cached decoding a new query needs
one row of ``Q·Eᵀ``: O(t·D_h) per head and step.

Dropout on the attention probabilities (``attention_dropout``) defaults to 0
here, whatever ``dropout`` is: the model's other dropouts still regularise, and
a set value is honoured at the cost of a mask per chunk.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from reprise.device import native_bf16
from reprise.models.attention.full import FullAttention, require_causal
from reprise.models.cache import KVCache

if TYPE_CHECKING:
    from reprise.models.config import ModelConfig

CHUNK_ROWS = 64
GPU_CHUNK_ROWS = 512


def skew(rel: torch.Tensor, keys: int) -> torch.Tensor:
    """Move each relative logit to the key it belongs to: a strided view of ``rel``, no copy.

    ``rel[..., i, j] = q_i·e_(D-j)`` for ``T`` consecutive queries, ``D`` the
    distance of the last query to the first key and ``rel`` contiguous in its
    last two dimensions. Returns ``out[..., i, k] = rel[..., i, k - i + T - 1]``,
    the term of query ``i`` for key ``k``: a window of ``keys`` columns that moves
    one column left per row. Causal attention has ``keys`` columns (distances
    ``keys - 1 .. 0``; entries of keys after the query are junk, for the causal
    mask to remove), non-causal ``keys + T - 1`` (down to distance ``-(keys - 1)``).
    """
    *lead, queries, width = rel.shape
    return rel.as_strided(
        (*lead, queries, keys), (*rel.stride()[:-2], width - 1, 1), rel.storage_offset() + queries - 1
    )


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The precision to attend in: ``x``'s, except bfloat16 on CPUs that only emulate it (float32 is faster there)."""
    if x.dtype == torch.bfloat16 and not native_bf16(x.device.type):
        return torch.float32
    return x.dtype


def _chunk_size(queries: int, device: torch.device) -> int:
    """Queries per chunk. On a CPU ``CHUNK_ROWS``, small enough that causal chunks skip nearly half of
    the products (whole-model step on a 2-core CPU, relative / full at L = 2048: 1.26-1.39× with 64,
    1.43× with 128; at 1024, 32 to 128 within noise). On a GPU the chunks' kernel launches cost more
    than the skipped products save (64 rows: 5-8× slower than SDPA on an H100), so ``GPU_CHUNK_ROWS``."""
    return min(queries, CHUNK_ROWS if device.type == "cpu" else GPU_CHUNK_ROWS)


def _chunks(queries: int, keys: int, causal: bool, size: int) -> Iterator[tuple[slice, int, slice]]:
    """``(query rows, keys they see, rows of the embeddings they need)`` per chunk of ``size`` queries.

    The queries are the last of the keys; the embeddings embed distances ``keys - 1`` down to 0
    (causal) or to ``-(keys - 1)`` (non-causal, where queries and keys are the same positions).
    """
    for start in range(0, queries, size):
        stop = min(start + size, queries)
        if causal:
            seen = keys - queries + stop
            yield slice(start, stop), seen, slice(keys - seen, keys)
        else:
            yield slice(start, stop), keys, slice(keys - stop, 2 * keys - 1 - start)


class _Recycler:
    """Storage of probabilities that autograd has let go of, for the next forward pass.

    A training step keeps about half an ``L×L`` matrix of probabilities per head and layer (72 MiB
    a layer at L = 1024 in the issue-15 shape). Allocations that large bypass the C allocator's
    free lists, and every page of a fresh one faults on first touch: that cost relative attention
    about a sixth of its time. So the storage is lent (:meth:`lend`) and comes back here only when
    autograd frees the view it saved, after the backward pass (later with ``retain_graph``).
    """

    def __init__(self, keep: int = 64):
        self.keep = keep
        self.free: list[torch.Tensor] = []
        self.lock = threading.Lock()

    def take(self, numel: int, like: torch.Tensor) -> torch.Tensor:
        """A flat tensor of at least ``numel`` elements of ``like``'s dtype and device (the smallest kept one)."""
        with self.lock:
            fits = [
                i
                for i, t in enumerate(self.free)
                if t.numel() >= numel and t.dtype == like.dtype and t.device == like.device
            ]
            if fits:
                return self.free.pop(min(fits, key=lambda i: self.free[i].numel()))
        return like.new_empty(numel)

    def give(self, tensor: torch.Tensor) -> None:
        """Keep ``tensor`` (from :meth:`take`, which nothing reads any more) for a later :meth:`take`."""
        with self.lock:
            self.free = [*self.free, tensor][-self.keep :]

    def lend(self, tensor: torch.Tensor) -> torch.Tensor:
        """A view of ``tensor`` whose end (when nothing holds the view) gives ``tensor`` back."""
        view = tensor.view(-1)
        weakref.finalize(view, self.give, tensor)
        return view

    def clear(self) -> None:
        """Free everything kept (at most the probabilities of one training step)."""
        with self.lock:
            self.free = []


RECYCLER = _Recycler()


class _Scratch:
    """Flat buffers that every chunk reuses: a fresh tensor of several MiB costs page faults each time.

    Each buffer is allocated once, at the size of the largest chunk's tensors (``sizes``).
    """

    def __init__(self, like: torch.Tensor, **sizes: int):
        self.buffers = {name: like.new_empty(numel) for name, numel in sizes.items()}

    def view(self, name: str, *shape: int) -> torch.Tensor:
        """A contiguous ``shape`` view of the buffer ``name``."""
        return self.buffers[name][: math.prod(shape)].view(shape)


@cache
def _future(size: int, device: torch.device) -> torch.Tensor:
    """``(size, size)``: which keys follow each query, for the last ``size`` queries and keys."""
    return torch.ones(size, size, dtype=torch.bool, device=device).triu_(1)


def _probabilities(
    q: torch.Tensor,
    k: torch.Tensor,
    embeddings: torch.Tensor,
    causal: bool,
    key_bias: torch.Tensor | None,
    scratch: _Scratch,
    out: torch.Tensor,
) -> None:
    """Write ``softmax(Q·Kᵀ + skew(Q·Eᵀ) + key_bias)`` ``(G·R, C, N)`` of queries ``(G, R, C, D_h)``,
    keys ``(G, R, N, D_h)`` and ``key_bias`` ``(G·R, 1, >= N)`` (``-inf`` on padding) or ``None``."""
    g, r, c, dh = q.shape
    rel = torch.bmm(
        q.reshape(g, r * c, dh), embeddings.transpose(1, 2), out=scratch.view("rel", g, r * c, embeddings.shape[1])
    )
    torch.baddbmm(
        skew(rel.view(g, r, c, -1), k.shape[-2]).flatten(0, 1),
        q.flatten(0, 1),
        k.flatten(0, 1).transpose(1, 2),
        out=out,
    )
    if key_bias is not None:
        out.add_(key_bias[..., : k.shape[-2]])
    if causal:  # only the last C keys (a C×C corner) can follow a query of the chunk
        out[..., -c:].masked_fill_(_future(c, q.device), float("-inf"))
    torch.softmax(out, -1, out=out)


def _logit_gradients(
    storage: torch.Tensor, groups: int, shape: tuple[int, int, int], width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Views of ``storage`` for the logits' gradient ``(G·R, C, N)``, and the skew's adjoint of it.

    The gradient is to be written into the first view; the second, ``(G, R·C, width)``, then
    reads the gradient of ``Q·Eᵀ``: ``out[i, j] = grad[i, j + i - (C - 1)]``, zero where that is
    outside ``0..N-1``. Each row of ``C - 1 + width`` slots holds a gradient row after ``C - 1``
    zeros; one more slot per row makes that adjoint a plain strided matrix. ``storage`` needs
    ``G·R·C·(C + width)`` elements; this zeroes the slots around the gradient.
    """
    gr, c, n = shape
    row = width + c - 1
    block = c * (row + 1)
    storage.as_strided((gr, c, c - 1), (block, row, 1)).zero_()
    storage.as_strided((gr, c, row - (c - 1) - n), (block, row, 1), c - 1 + n).zero_()
    logits = storage.as_strided(shape, (block, row, 1), c - 1)
    return logits, storage.as_strided((groups, gr // groups * c, width), (gr // groups * block, row + 1, 1))


class _RelativeAttention(torch.autograd.Function):
    """``softmax(Q·Kᵀ + skew(Q·Eᵀ)) · V`` (queries scaled by ``D_h^-0.5``), chunk by chunk of queries.

    ``q``, ``k``, ``v``: ``(G, R, T, D_h)`` with mergeable ``G`` and ``R``, for ``G`` groups of heads that share the
    ``(G, W, D_h)`` embeddings (distances as :func:`_chunks` says) and ``R`` rows of each group
    (batch × heads of the group). Saved for the backward pass: the inputs, the output and every
    chunk's probabilities (about half an ``L×L`` matrix per head), in one tensor.
    """

    @staticmethod
    def forward(
        ctx,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        embeddings: torch.Tensor,
        key_bias: torch.Tensor | None,
        causal: bool,
        dropout: float,
    ) -> torch.Tensor:
        g, r, t, dh = q.shape
        q = q * dh**-0.5
        plan = list(_chunks(t, k.shape[-2], causal, _chunk_size(t, q.device)))
        spans = [g * r * (rows.stop - rows.start) * seen for rows, seen, _ in plan]
        training = any(ctx.needs_input_grad)
        probs = RECYCLER.take(sum(spans) if training else max(spans), q)
        probs = RECYCLER.lend(probs) if training else probs
        masks = torch.empty_like(probs) if dropout else probs[:0]
        c, width = plan[0][0].stop, max(distances.stop - distances.start for *_, distances in plan)
        scratch = _Scratch(q, rel=g * r * c * width, out=g * r * c * dh)
        out, offset = torch.empty_like(q), 0
        for (rows, seen, distances), span in zip(plan, spans):
            p = probs[offset : offset + span].view(g * r, -1, seen)
            _probabilities(q[:, :, rows], k[:, :, :seen], embeddings[:, distances], causal, key_bias, scratch, p)
            if dropout:  # the survivors' scale folded into the mask
                p = p * masks[offset : offset + span].view(p.shape).bernoulli_(1 - dropout).div_(1 - dropout)
            out[:, :, rows] = torch.bmm(
                p, v[:, :, :seen].flatten(0, 1), out=scratch.view("out", *p.shape[:2], dh)
            ).view(g, r, -1, dh)
            offset += span if training else 0
        if not training:
            RECYCLER.give(probs)
        ctx.save_for_backward(q, k, v, embeddings, out, probs, masks)
        ctx.causal, ctx.plan, ctx.spans = causal, plan, spans
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        q, k, v, embeddings, out, probs, masks = ctx.saved_tensors
        g, r, _, dh = q.shape
        grad_out = grad_out.contiguous()
        delta = (grad_out * out).sum(-1, keepdim=True).flatten(0, 1)  # rowsum(P ∘ dP), FlashAttention's shortcut
        dq, dk, dv, de = (torch.zeros(t.shape, dtype=t.dtype, device=t.device) for t in (q, k, v, embeddings))
        c, n = ctx.plan[0][0].stop, k.shape[-2]
        width = max(distances.stop - distances.start for *_, distances in ctx.plan)
        scratch = _Scratch(q, dp=g * r * c * n, ds=g * r * c * (c + width), dq=g * r * c * dh)
        offset = 0
        for (rows, seen, distances), span in zip(ctx.plan, ctx.spans):
            p = probs[offset : offset + span].view(g * r, -1, seen)
            c, w = p.shape[1], distances.stop - distances.start
            qc, ec, do = q[:, :, rows], embeddings[:, distances], grad_out[:, :, rows].flatten(0, 1)
            dp = torch.bmm(do, v[:, :, :seen].flatten(0, 1).transpose(1, 2), out=scratch.view("dp", *p.shape))
            if masks.numel():
                mask = masks[offset : offset + span].view(p.shape)
                dp.mul_(mask)
            dv[:, :, :seen].flatten(0, 1).baddbmm_((p * mask if masks.numel() else p).transpose(1, 2), do)
            ds, drel = _logit_gradients(scratch.buffers["ds"], g, p.shape, w)
            torch.mul(dp.sub_(delta[:, rows]), p, out=ds)
            dk[:, :, :seen].flatten(0, 1).baddbmm_(ds.transpose(1, 2), qc.flatten(0, 1))
            dqc = torch.bmm(ds, k[:, :, :seen].flatten(0, 1), out=scratch.view("dq", g * r, c, dh))
            dq[:, :, rows] = dqc.view(g, -1, dh).baddbmm_(drel, ec).view(qc.shape)
            de[:, distances].baddbmm_(drel.transpose(1, 2), qc.reshape(g, -1, dh))
            offset += span
        return dq.mul_(dh**-0.5), dk, dv, de, None, None, None


def relative_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    embeddings: torch.Tensor,
    causal: bool = True,
    dropout: float = 0.0,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Relative attention of queries ``(B, H, T, D_h)``, the last ``T`` of keys and values ``(B, H, N, D_h)``.

    ``embeddings`` ``(G, W, D_h)``, ``G`` dividing ``H``, embed distances ``N - 1`` down to 0 (causal,
    ``W = N``) or to ``-(N - 1)`` (non-causal, ``T = N``, ``W = 2N - 1``). ``key_mask`` ``(B, N)`` is
    false on keys no query may see (padding). Runs in :func:`compute_dtype` and returns ``q``'s dtype.
    """
    b, h, t, dh = q.shape
    groups = embeddings.shape[0]
    if not causal and t != k.shape[-2]:
        raise ValueError(f"non-causal relative attention needs as many queries as keys, not {t} and {k.shape[-2]}")
    dtype = compute_dtype(q)

    def grouped(x: torch.Tensor) -> torch.Tensor:  # (B, H, ., D_h) -> (G, H/G·B, ., D_h), a copy unless heads first
        x = x.to(dtype).transpose(0, 1).reshape(groups, h // groups * b, x.shape[-2], dh)
        return x if x.stride(0) == x.shape[1] * x.stride(1) and x.stride(-1) == 1 else x.contiguous()

    key_bias = None
    if key_mask is not None:  # (B, N) -> (G·H/G·B, 1, N), in the grouped order
        key_bias = torch.zeros(key_mask.shape, dtype=dtype, device=q.device).masked_fill_(~key_mask, float("-inf"))
        key_bias = key_bias.expand(h, b, -1).reshape(h * b, 1, -1)
    with torch.autocast(q.device.type, enabled=False):
        out = _RelativeAttention.apply(
            grouped(q), grouped(k), grouped(v), embeddings.to(dtype), key_bias, causal, dropout
        )
    return out.view(h, b, t, dh).transpose(0, 1).to(q.dtype)


class RelativeEmbedding(nn.Module):
    """Learned embeddings of distances; the skewed relative logits.

    ``table[g, d]`` is distance ``d``'s embedding (``0 <= d <= max_distance``) for head group
    ``g`` (one group per head, or one for all heads); longer distances share
    ``max_distance``'s. Non-causal attention also learns ``table_after[g, d - 1]`` for keys
    ``d`` positions after the query.
    """

    def __init__(self, groups: int, head_dim: int, max_distance: int, causal: bool = True):
        super().__init__()
        self.max_distance = max_distance
        self.causal = causal
        self.table = nn.Parameter(torch.randn(groups, max_distance + 1, head_dim) * 0.02)
        self.table_after = None if causal else nn.Parameter(torch.randn(groups, max_distance, head_dim) * 0.02)

    @classmethod
    def from_config(cls, config: ModelConfig, causal: bool = True) -> RelativeEmbedding:
        groups = 1 if config.relative_shared_heads else config.n_heads
        return cls(groups, config.head_dim, config.relative_distance, causal)

    def distance_table(self) -> torch.Tensor:
        """Every embedding, ``(G, M + 1, D_h)`` causal or ``(G, 2M + 1, D_h)``: distances 0..M, then -1..-M."""
        return self.table if self.table_after is None else torch.cat([self.table, self.table_after], 1)

    def rows(self, distance: torch.Tensor) -> torch.Tensor:
        """The rows of :meth:`distance_table` that embed ``distance`` (clipped to ``±max_distance``)."""
        clipped = distance.clamp(-self.max_distance, self.max_distance)
        return torch.where(clipped >= 0, clipped, self.max_distance - clipped)

    def embeddings(self, n_keys: int) -> torch.Tensor:
        """``(G, W, D_h)``: distances ``n_keys - 1`` down to 0 (causal, ``W = n_keys``) or to ``-(n_keys - 1)``.

        Gathered afresh at every call: a copy kept between calls would have to notice in-place
        updates of the table, and CUDA's fused optimiser and weight-average kernels make those
        without bumping the version counter.
        """
        last = 0 if self.causal else -(n_keys - 1)
        distance = torch.arange(n_keys - 1, last - 1, -1, device=self.table.device)
        return self.distance_table()[:, self.rows(distance)]

    def forward(self, q: torch.Tensor, n_keys: int) -> torch.Tensor:
        """Relative logits ``(..., T, n_keys)`` of the last ``T`` of ``n_keys`` positions, scaled as ``q·k/sqrt(D_h)``.

        For the few queries of a decoding step: one product per distance in reach, then each key
        takes its distance's (no ``(n_keys, D_h)`` table is gathered per token). Keys after a causal
        query get distance 0's, for the causal mask to remove.
        """
        t, table, scale = q.shape[-2], self.distance_table(), q.shape[-1] ** -0.5
        if self.causal:
            table = table[:, : min(n_keys, self.max_distance + 1)]
        by_distance = (q * scale) @ table.transpose(-1, -2).to(q.dtype)
        if self.causal and t == 1:  # one new token: keys at distances n_keys - 1 .. 0, the far ones clipped
            logits = by_distance.flip(-1)
            far = n_keys - table.shape[1]
            if far:
                logits = torch.cat([by_distance[..., -1:].expand(*by_distance.shape[:-1], far), logits], -1)
            return logits
        distance = torch.arange(n_keys - t, n_keys, device=q.device)[:, None] - torch.arange(n_keys, device=q.device)
        rows = self.rows(distance.clamp(min=0) if self.causal else distance)
        return by_distance.gather(-1, rows.expand(*by_distance.shape[:-1], n_keys))


class RelativeAttention(FullAttention):
    """Attention whose logits add the skewed relative term, through :func:`relative_attention`."""

    embedding: type[RelativeEmbedding] = RelativeEmbedding

    def __init__(self, config: ModelConfig, causal: bool = True):
        super().__init__(config, causal)
        self.position_bias = self.embedding.from_config(config, causal)
        self.dropout = config.attention_dropout or 0.0  # not ``dropout``'s value: see the module's docstring

    def new_cache(self, batch: int, capacity: int, device, dtype) -> KVCache:
        """Keys and values stored heads first: the layout :func:`relative_attention` reads without a copy."""
        require_causal(self)
        return KVCache(
            batch, self.n_heads, capacity, self.qkv.out_features // 3 // self.n_heads, device, dtype, heads_first=True
        )

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Relative attention; of ``mask`` (from :meth:`forward`'s ``key_mask``) only its keys count."""
        if self.causal and q.shape[-2] <= CHUNK_ROWS and not (torch.is_grad_enabled() and q.requires_grad):
            return super().attend(
                q, k, v, mask
            )  # decoding a few tokens: one fused SDPA call, the relative logits its mask
        embeddings = self.position_bias.embeddings(k.shape[-2])
        key_mask = None if mask is None else mask[:, 0, -1, :]
        return relative_attention(q, k, v, embeddings, self.causal, self.dropout if self.training else 0.0, key_mask)
