"""The encoder-decoder Music Transformer: arrange music given other music.

A bidirectional **encoder** reads the conditioning music (the *source*: a
soprano, a melody, a piece with a gap) and a causal **decoder** writes the
*target* (alto, tenor and bass; an accompaniment; the missing bars), each
decoder block attending to its own past, then to the encoder's output
(cross-attention), then through the feed-forward::

    source -> embed + where -> N x [bidirectional self-attn, ff] -> LN = memory
    target -> embed + where -> M x [causal self-attn, cross-attn(memory), ff] -> LN -> logits

Both sides use today's pre-LN blocks and attention kinds (the encoder's built
non-causal). *Where* a token is comes in as ``(time step, slot)`` pairs (see
``reprise.data.pairs``): sinusoids of the time step, whose frequencies both sides
share, so a target token's query can match the source's keys at its own time
step, however many tokens per step each side spends (the soprano 1, A/T/B 3);
plus a learned vector per slot, the token's rank within its step (which voice).
Cross-attention rotates queries and keys by their time steps (``cross.py``), so
that what a decoder token finds in the source depends on how far apart in time
they are. Decoder inputs carry the where of the token they predict.
Self-attention adds its own relative or absolute sense of order within each
sequence (RoPE by default).

Cached decoding keeps the decoder's self-attention caches and computes the
cross-attention keys and values once per piece.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import nn

from reprise.data.pairs import TASKS
from reprise.errors import RepriseError
from reprise.models.attention.cross import CrossAttention, CrossCache
from reprise.models.config import ModelConfig
from reprise.models.positions import frequencies, sinusoids
from reprise.models.transformer import Block, MusicTransformer

PAD = 0  # the padding id of every reprise tokenizer: source padding is masked out of attention
MAX_SLOTS = 8  # learned slot vectors; later ranks within a step share the last


@dataclass
class EncoderDecoderConfig(ModelConfig):
    """Shape of an encoder-decoder and the conditional task it was trained for.

    The fields of :class:`ModelConfig` shape the decoder (``n_layers`` blocks,
    ``context`` target tokens, ``attention`` its self-attention) and, where the
    encoder has no field of its own, the encoder too (width, heads, dropout,
    attention options). ``source_context`` is the encoder's window of source
    tokens; a source window starts ``source_offset`` of its length before the
    time of the target window's first token (0.25: a quarter of what the
    encoder sees lies before). ``positions`` stays ``none``: where a token is
    comes from its time step and slot.
    """

    positions: str = "none"
    attention: str = "rope"
    task: str = "harmonize"
    source_vocab_size: int = 128
    source_context: int = 768
    source_offset: float = 0.25
    encoder_layers: int = 2
    encoder_attention: str = "rope"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.task not in TASKS:
            raise RepriseError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}")
        if self.positions != "none":
            raise RepriseError("the encoder-decoder places tokens by time step and slot: positions must be 'none'")
        if not 0 <= self.source_offset < 1:
            raise RepriseError(f"source_offset is a share of the source window, in [0, 1), not {self.source_offset}")
        _ = self.encoder  # building the encoder's view validates its options

    @property
    def encoder(self) -> ModelConfig:
        """The encoder stack's shape, as the attention modules read it."""
        shared = {f.name: getattr(self, f.name) for f in fields(ModelConfig)}
        return ModelConfig(
            **{
                **shared,
                "vocab_size": self.source_vocab_size,
                "context": self.source_context,
                "n_layers": self.encoder_layers,
                "attention": self.encoder_attention,
            }
        )


class Where(nn.Module):
    """``(..., 2)`` (time step, slot) -> ``(..., D)``: scaled sinusoids of the time plus a learned slot vector.

    The sinusoids' amplitude starts at the embeddings' scale, as in
    :class:`~reprise.models.positions.SinusoidalPositions`.
    """

    def __init__(self, d_model: int):
        super().__init__()
        self.d_model = d_model
        self.register_buffer("freqs", frequencies(d_model), persistent=False)
        self.scale = nn.Parameter(torch.tensor(0.02 * math.sqrt(2)))
        self.slots = nn.Embedding(MAX_SLOTS, d_model)

    def forward(self, where: torch.Tensor) -> torch.Tensor:
        theta = where[..., 0, None].float() * self.freqs
        return self.scale * sinusoids(theta, self.d_model) + self.slots(where[..., 1].clamp(0, MAX_SLOTS - 1))


@dataclass
class Memory:
    """The encoder's output ``(B, S, D)``, its tokens' time steps ``(B, S)`` and its key mask ``(B, S)``
    (false on padding; ``None``: no padding)."""

    states: torch.Tensor
    times: torch.Tensor
    mask: torch.Tensor | None


class DecoderCache:
    """One decoder layer's decoding state: its self-attention cache and the memory's keys and values."""

    def __init__(self, own, cross: CrossCache):
        self.own, self.cross = own, cross

    @property
    def length(self) -> int:
        return self.own.length


class DecoderBlock(Block):
    """Pre-LN decoder block: x + self_attn(ln(x)), x + cross_attn(ln(x), memory), x + ff(ln(x))."""

    def __init__(self, config: ModelConfig, attention: str):
        super().__init__(config, attention)
        self.ln_cross = nn.LayerNorm(config.d_model)
        self.cross = CrossAttention(config)

    def forward(
        self, x: torch.Tensor, times: torch.Tensor, memory: Memory, cache: DecoderCache | None = None
    ) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln_attn(x), None if cache is None else cache.own))
        cross_cache = None if cache is None else cache.cross
        x = x + self.drop(self.cross(self.ln_cross(x), times, memory.states, memory.times, memory.mask, cross_cache))
        return x + self.ff(self.ln_ff(x))


class EncoderDecoder(nn.Module):
    """Conditional language model: logits of target tokens given the source and the target's past."""

    def __init__(self, config: EncoderDecoderConfig):
        super().__init__()
        self.config = config
        encoder = config.encoder
        self.source_embed = nn.Embedding(config.source_vocab_size, config.d_model)
        self.source_where = Where(config.d_model)
        self.encoder = nn.ModuleList(Block(encoder, kind, causal=False) for kind in encoder.layer_attention)
        self.ln_memory = nn.LayerNorm(config.d_model)
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.where = Where(config.d_model)
        self.decoder = nn.ModuleList(DecoderBlock(config, kind) for kind in config.layer_attention)
        self.drop = nn.Dropout(config.dropout)
        self.ln_out = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_weights:
            self.head.weight = self.embed.weight
        self.apply(MusicTransformer._init_weights)
        for name, param in self.named_parameters():  # GPT-2: keep each stack's residual variance flat
            if name.endswith(("attn.proj.weight", "cross.proj.weight", "net.2.weight")):
                layers = config.encoder_layers if name.startswith("encoder.") else config.n_layers
                nn.init.normal_(param, std=0.02 / math.sqrt(2 * layers))

    def encode(self, source: torch.Tensor, where: torch.Tensor) -> Memory:
        """The memory of source ids ``(B, S)`` at ``where`` ``(B, S, 2)``; ids ``PAD`` are padding."""
        real = source != PAD
        mask = None if bool(real.all()) else real
        x = self.drop(self.source_embed(source) + self.source_where(where))
        for block in self.encoder:
            x = block(x, key_mask=mask)
        return Memory(self.ln_memory(x), where[..., 0], mask)

    def decode(
        self, memory: Memory, ids: torch.Tensor, where: torch.Tensor, caches: list[DecoderCache] | None = None
    ) -> torch.Tensor:
        """Logits ``(B, T, V)`` for target ids ``(B, T)`` whose next tokens sit at ``where`` ``(B, T, 2)``.

        With ``caches`` (from :meth:`new_caches`) the ids continue the cached sequence.
        """
        x = self.drop(self.embed(ids) + self.where(where))
        for i, block in enumerate(self.decoder):
            x = block(x, where[..., 0], memory, caches[i] if caches else None)
        return self.head(self.ln_out(x))

    def forward(
        self, source: torch.Tensor, source_where: torch.Tensor, ids: torch.Tensor, where: torch.Tensor
    ) -> torch.Tensor:
        """Logits of the target's next tokens: :meth:`encode`, then :meth:`decode`."""
        return self.decode(self.encode(source, source_where), ids, where)

    def new_caches(self, batch: int, capacity: int) -> list[DecoderCache]:
        """Empty per-layer caches for decoding up to ``capacity`` target tokens."""
        param = self.embed.weight
        return [
            DecoderCache(b.attn.new_cache(batch, capacity, param.device, param.dtype), CrossCache())
            for b in self.decoder
        ]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
