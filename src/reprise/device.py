"""Where tensors live and in which precision the forward pass runs."""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path

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


@cache
def native_bf16(device_type: str) -> bool:
    """Whether bfloat16 matrix products run natively on ``device_type``; CPUs without AVX512-BF16 or AMX
    emulate them through float32, 3-8x slower than float32 itself."""
    if device_type != "cpu":
        return True
    capabilities = torch.cpu.get_capabilities()
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def emulated_bf16(precision: str, device: torch.device) -> bool:
    """Whether ``precision`` asks for bfloat16 on a CPU that only emulates it (a run many times slower than fp32)."""
    return uses_bf16(precision, device) and not native_bf16(device.type)


def describe_cpu() -> str:
    """The CPU's model name, core count and bfloat16 support, for benchmark reports (machines differ)."""
    name = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("model name"):
            name = line.split(":", 1)[1].strip()
            break
    support = "with" if native_bf16("cpu") else "without"
    return f"{name}, {os.cpu_count()} CPUs, {support} AVX512-BF16/AMX (torch {torch.__version__})"
