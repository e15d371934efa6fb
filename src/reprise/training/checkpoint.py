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
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import load_file, load_model, save_file, save_model

from reprise import RepriseError
from reprise.data.tokenizer import Tokenizer, tokenizer_from_json
from reprise.models import architecture_of, build_model, config_from_json

T = TypeVar("T")


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


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Tokenizer]:
    """The model (in eval mode) and tokenizer stored at ``path``.

    Every file is checked before it is used: a truncated or edited checkpoint
    gives a one-line :class:`RepriseError` naming the file and what is wrong.
    """
    directory = resolve(path)
    config = _model_config(directory / "model.json")
    tokenizer = _checked(directory / "tokenizer.json", lambda: tokenizer_from_json(_read_json(directory / "tokenizer.json")))
    if tokenizer.vocab_size != config.vocab_size:
        raise RepriseError(f"{directory / 'tokenizer.json'}: {tokenizer.vocab_size} tokens, but the model in "
                           f"model.json reads {config.vocab_size}")
    _check_size(config, directory)
    model = build_model(config).to(device)
    load_weights(model, directory)
    return model.eval(), tokenizer


def load_weights(model: torch.nn.Module, directory: Path) -> None:
    """Load ``model.safetensors`` from a checkpoint directory into ``model``, in place."""
    device = next(model.parameters()).device
    path = Path(directory) / "model.safetensors"
    _checked(path, lambda: load_model(model, str(path), device=str(device)))


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
        path = directory / "average.safetensors"
        _checked(path, lambda: load_model(average, str(path), device=str(next(average.parameters()).device)))
    training = _read_json(directory / "training.json")
    path = directory / "optimizer.safetensors"
    state = _checked(path, lambda: _unflatten_optimizer(load_file(str(path))))
    _checked(directory / "training.json",
             lambda: optimizer.load_state_dict({"state": state, "param_groups": training["param_groups"]}))
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
    """Restore the RNG state from :func:`_flatten_optimizer`'s tensors and return the optimizer state."""
    torch.set_rng_state(tensors.pop("rng.torch"))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 2)[1:]
        state.setdefault(int(index), {})[name] = value
    return state


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=1))


def _read_json(path: Path) -> dict[str, Any]:
    """A checkpoint's JSON object; a one-line :class:`RepriseError` naming ``path`` if it is missing or broken."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError as err:
        raise RepriseError(f"{path}: missing from the checkpoint") from err
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RepriseError(f"{path}: not valid JSON ({err}); the file is damaged") from err
    if not isinstance(data, dict):
        raise RepriseError(f"{path}: expected a JSON object, found {type(data).__name__}; the file is damaged")
    return data


def _checked(path: Path, read: Callable[[], T]) -> T:
    """``read()``, with any failure to make sense of ``path``'s content turned into a one-line error naming it."""
    try:
        return read()
    except RepriseError as err:
        raise RepriseError(f"{path}: {err}" if str(path) not in str(err) else str(err)) from err
    except Exception as err:  # safetensors, torch and the configs raise many kinds on damaged files
        message = " ".join(str(err).split())[:200]
        raise RepriseError(f"{path}: damaged or not from this version of reprise ({type(err).__name__}: {message})") from err


def _model_config(path: Path) -> Any:
    """The model config stored in ``model.json``, checked."""
    meta = _read_json(path)
    return _checked(path, lambda: config_from_json(meta["architecture"], meta["config"]))


def _check_size(config: Any, directory: Path) -> None:
    """Refuse a config whose model has more parameters than ``model.safetensors`` holds values, before
    building it: a damaged ``model.json`` must not make us allocate a model of any size."""
    with torch.device("meta"):  # shapes only, no memory
        wanted = _checked(directory / "model.json", lambda: sum(p.numel() for p in build_model(config).parameters()))
    weights = directory / "model.safetensors"
    with _checked(weights, lambda: safe_open(str(weights), "pt")) as f:
        held = sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())
    if wanted > held:
        raise RepriseError(f"{weights}: holds {held:,} values, but model.json describes a model of {wanted:,} parameters")
