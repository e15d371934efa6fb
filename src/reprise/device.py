"""Where tensors live and in which precision the forward pass runs."""

from __future__ import annotations

import torch

from reprise.errors import RepriseError

PRECISIONS = ("auto", "bf16", "fp32")


def pick_device(name: str) -> torch.device:
    """``auto`` means CUDA when present, else Apple's MPS, else CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    return torch.device(name)


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether ``precision`` means bfloat16 autocast on ``device`` (``auto``: on CUDA only)."""
    if precision not in PRECISIONS:
        raise RepriseError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def autocast(precision: str, device: torch.device) -> torch.autocast:
    """The autocast context for ``precision`` on ``device``: bfloat16 when :func:`uses_bf16`, else a no-op."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(precision, device))
