"""Checkpoints: safetensors for tensors, JSON for everything else, never pickles.

A checkpoint directory holds:

- ``model.safetensors`` — the weights;
- ``model.json`` — the architecture and its configuration;
- ``tokenizer.json`` — the tokenizer the model reads and writes;
- ``training.json`` — train config, step, best validation NLL, optimizer hyper-parameters;
- ``optimizer.safetensors`` — optimizer moments and the RNG states, for ``--resume``;
- ``average.safetensors`` — the running weight average, for ``--resume`` of a run with ``ema_decay``.

Directories are written under a temporary name and swapped in, so an
interruption at any moment leaves the previous checkpoint intact.

:func:`load_checkpoint` also loads model folders (``config.json`` beside the
weights: shipped models and ``reprise export``'s output), by path or by a shipped
model's name; see :mod:`reprise.models.pretrained`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from reprise import RepriseError
from reprise.data.dataset import load_tokenizer
from reprise.data.tokenizer import Tokenizer, tokenizer_from_json
from reprise.models import architecture_of, build_model, config_from_json
from reprise.models.pretrained import read_model_config, resolve_model


def save_checkpoint(
    directory: Path,
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    training: dict[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    average: torch.nn.Module | None = None,
) -> None:
    """Write a checkpoint atomically, replacing any previous one at ``directory``."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
    save_model(model, str(tmp / "model.safetensors"))
    _write_json(tmp / "model.json", {"architecture": architecture_of(model.config), "config": model.config.to_json()})
    _write_json(tmp / "tokenizer.json", tokenizer.to_json())
    if training is not None and optimizer is not None:
        tensors, groups = _flatten_optimizer(optimizer)
        tensors["rng.torch"] = torch.get_rng_state()
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        _write_json(tmp / "training.json", {**training, "param_groups": groups})
    if average is not None:
        save_model(average, str(tmp / "average.safetensors"))
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def resolve(path: Path) -> Path:
    """The checkpoint directory for a run directory (its ``best``, else ``last``) or itself."""
    path = Path(path)
    for candidate in (path, path / "best", path / "last", path.with_name(path.name + ".old")):
        if (candidate / "model.safetensors").is_file():
            return candidate
    raise RepriseError(f"{path}: no checkpoint here (expected model.safetensors, or a run with best/ or last/)")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Tokenizer]:
    """The model (in eval mode, float32) and tokenizer stored at ``path``, or shipped under that name."""
    directory = resolve(resolve_model(path))
    if (directory / "model.json").is_file():
        meta = json.loads((directory / "model.json").read_text())
        tokenizer = load_tokenizer(directory)
    else:
        meta = read_model_config(directory)
        tokenizer = tokenizer_from_json(meta["tokenizer"])
    model = build_model(config_from_json(meta["architecture"], meta["config"])).to(device)
    load_weights(model, directory)
    return model.eval(), tokenizer


def load_weights(model: torch.nn.Module, directory: Path) -> None:
    """Load ``model.safetensors`` from a checkpoint directory into ``model``, in place (upcast to its dtype)."""
    device = next(model.parameters()).device
    load_model(model, str(Path(directory) / "model.safetensors"), device=str(device))


def load_training_state(
    directory: Path, optimizer: torch.optim.Optimizer, average: torch.nn.Module | None = None
) -> dict[str, Any]:
    """Restore optimizer, weight average and RNG state from a checkpoint; return its ``training.json``."""
    directory = Path(directory)
    if not (directory / "training.json").is_file():
        raise RepriseError(f"{directory}: no training state to resume from")
    if average is not None:
        if not (directory / "average.safetensors").is_file():
            raise RepriseError(f"{directory}: no weight average to resume (average.safetensors is missing)")
        load_model(average, str(directory / "average.safetensors"), device=str(next(average.parameters()).device))
    training = json.loads((directory / "training.json").read_text())
    tensors = load_file(str(directory / "optimizer.safetensors"))
    torch.set_rng_state(tensors.pop("rng.torch"))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 2)[1:]
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": training["param_groups"]})
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


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=1))
