"""Training checkpoints: a model checkpoint (:mod:`reprise.models.checkpoint`) plus what resuming needs.

Beside the model's files, a training checkpoint holds:

- ``training.json`` — train config, step, best validation NLL, optimizer hyper-parameters;
- ``optimizer.safetensors`` — optimizer moments, for ``--resume`` (dropout is seeded per step, so no RNG
  state is kept; the ``rng.torch`` of older checkpoints is ignored);
- ``average.safetensors`` — the running weight average, for ``--resume`` of a run with ``ema_decay``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from reprise.config import read_json
from reprise.data.tokenizer import Tokenizer
from reprise.errors import RepriseError, checked
from reprise.models.checkpoint import save_checkpoint, write_json


def save_training_checkpoint(
    directory: Path,
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    training: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    average: torch.nn.Module | None = None,
) -> None:
    """Write model, tokenizer, optimizer state (and weight average) atomically to ``directory``."""

    def add_training_state(folder: Path) -> None:
        tensors, groups = _flatten_optimizer(optimizer)
        save_file(tensors, str(folder / "optimizer.safetensors"))
        write_json(folder / "training.json", {**training, "param_groups": groups})
        if average is not None:
            save_model(average, str(folder / "average.safetensors"))

    save_checkpoint(directory, model, tokenizer, add_training_state)


def load_training_state(
    directory: Path, optimizer: torch.optim.Optimizer, average: torch.nn.Module | None = None
) -> dict[str, Any]:
    """Restore optimizer and weight average from a checkpoint; return its ``training.json``."""
    directory = Path(directory)
    if not (directory / "training.json").is_file():
        raise RepriseError(f"{directory}: no training state to resume from")
    if average is not None:
        if not (directory / "average.safetensors").is_file():
            raise RepriseError(f"{directory}: no weight average to resume (average.safetensors is missing)")
        path = directory / "average.safetensors"
        checked(path, lambda: load_model(average, str(path), device=str(next(average.parameters()).device)))
    training = read_json(directory / "training.json")
    path = directory / "optimizer.safetensors"
    state = checked(path, lambda: _unflatten_optimizer(load_file(str(path))))
    checked(
        directory / "training.json",
        lambda: optimizer.load_state_dict({"state": state, "param_groups": training["param_groups"]}),
    )
    return training


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    """Optimizer state as named tensors (``state.<param>.<name>``) plus JSON-able groups."""
    state_dict = optimizer.state_dict()
    tensors = {
        f"state.{index}.{name}": torch.as_tensor(value).contiguous()
        for index, entries in state_dict["state"].items()
        for name, value in entries.items()
    }
    return tensors, state_dict["param_groups"]


def _unflatten_optimizer(tensors: dict[str, torch.Tensor]) -> dict[int, dict[str, torch.Tensor]]:
    """The optimizer state from :func:`_flatten_optimizer`'s tensors (and an older version's RNG state, unused)."""
    tensors.pop("rng.torch", None)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 2)[1:]
        state.setdefault(int(index), {})[name] = value
    return state
