"""Absolute position signals added to token embeddings: learned or sinusoidal."""

from __future__ import annotations

import math

import torch
from torch import nn


class LearnedPositions(nn.Module):
    """One trained vector per position, up to the context length."""

    def __init__(self, context: int, d_model: int):
        super().__init__()
        self.table = nn.Embedding(context, d_model)

    def forward(self, start: int, length: int) -> torch.Tensor:
        positions = torch.arange(start, start + length, device=self.table.weight.device)
        return self.table(positions)


class SinusoidalPositions(nn.Module):
    """The fixed sines and cosines of "Attention Is All You Need"; defined at any position."""

    def __init__(self, context: int, d_model: int):
        super().__init__()
        self.d_model = d_model
        freqs = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, start: int, length: int) -> torch.Tensor:
        positions = torch.arange(start, start + length, device=self.freqs.device, dtype=torch.float32)
        angles = positions[:, None] * self.freqs[None, :]
        return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)[:, : self.d_model]


def build_positions(kind: str, context: int, d_model: int) -> nn.Module | None:
    """The module for ``kind`` (``learned``, ``sinusoidal``), or ``None`` for ``none``."""
    if kind == "none":
        return None
    return {"learned": LearnedPositions, "sinusoidal": SinusoidalPositions}[kind](context, d_model)
