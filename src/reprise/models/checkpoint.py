"""Checkpoints of a model and its tokenizer: safetensors for tensors, JSON for everything else, never pickles.

A checkpoint directory holds ``model.safetensors`` (the weights), ``model.json``
(the architecture and its configuration) and ``tokenizer.json`` (the tokenizer
the model reads and writes); training adds its own files beside them
(:mod:`reprise.training.checkpoint`). Directories are written under a temporary
name and swapped in, so an interruption at any moment leaves the previous
checkpoint intact.

:func:`load_checkpoint` also loads model folders (``config.json`` beside the
weights: shipped models and ``reprise export``'s output), by path or by a shipped
model's name; see :mod:`reprise.models.pretrained`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

from reprise.data.dataset import load_tokenizer
from reprise.data.tokenizer import Tokenizer, tokenizer_from_json
from reprise.errors import RepriseError
from reprise.models import architecture_of, build_model, config_from_json
from reprise.models.pretrained import read_model_config, resolve_model


def save_checkpoint(
    directory: Path,
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    extra: Callable[[Path], None] | None = None,
) -> None:
    """Write a checkpoint atomically, replacing any previous one at ``directory``.

    ``extra(folder)`` may add more files to the checkpoint before it is swapped in.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
    save_model(model, str(tmp / "model.safetensors"))
    write_json(tmp / "model.json", {"architecture": architecture_of(model.config), "config": model.config.to_json()})
    write_json(tmp / "tokenizer.json", tokenizer.to_json())
    if extra is not None:
        extra(tmp)
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


def write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` as indented JSON at ``path``."""
    path.write_text(json.dumps(data, indent=1))
