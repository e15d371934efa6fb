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
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, load_model, save_model

from reprise.config import read_json
from reprise.data.tokenizer import Tokenizer, tokenizer_from_json
from reprise.errors import RepriseError, checked
from reprise.models import architecture_of, build_model, config_from_json
from reprise.models.pretrained import read_model_config, resolve_model
from reprise.models.transposition import TranspositionEnsemble


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
        shutil.rmtree(old, ignore_errors=True)  # left by a kill after the last save's swap: rename needs the name
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


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", transpositions: int | None = None
) -> tuple[torch.nn.Module, Tokenizer]:
    """The model (in eval mode, float32) and tokenizer stored at ``path``, or shipped under that name.

    A model whose config asks for ``transpositions`` comes as its transposition ensemble
    (:mod:`reprise.models.transposition`); ``transpositions`` overrides that (0: the one network, e.g.
    to export or plot its weights). Every file is checked before it is used: a truncated or edited
    checkpoint gives a one-line :class:`RepriseError` naming the file and what is wrong.
    """
    directory, config, tokenizer = read_checkpoint(path)
    model = build_model(config).to(device)
    load_weights(model, directory)
    semitones = getattr(config, "transpositions", 0) if transpositions is None else transpositions
    if semitones:
        model = checked(directory, lambda: TranspositionEnsemble(model, tokenizer, semitones))
    return model.eval(), tokenizer


def read_checkpoint(path: str | Path) -> tuple[Path, Any, Tokenizer]:
    """The checkpoint directory at ``path`` (or of the shipped model so named), its model config and
    tokenizer, checked against each other and against the size of the weights, which are not loaded."""
    directory = resolve(resolve_model(path))
    if (directory / "model.json").is_file():
        config_path, meta = directory / "model.json", read_json(directory / "model.json")
        tokenizer_path = directory / "tokenizer.json"
        tokenizer_json = read_json(tokenizer_path)
    else:  # a model folder (reprise export, reprise/pretrained/NAME)
        config_path = tokenizer_path = directory / "config.json"
        meta = read_model_config(directory)
        tokenizer_json = meta["tokenizer"]
    config = checked(config_path, lambda: config_from_json(meta["architecture"], meta["config"]))
    tokenizer = checked(tokenizer_path, lambda: tokenizer_from_json(tokenizer_json))
    if tokenizer.vocab_size != config.vocab_size:
        raise RepriseError(
            f"{tokenizer_path}: {tokenizer.vocab_size} tokens, but the model in {config_path.name} reads "
            f"{config.vocab_size}"
        )
    _check_size(config, directory, config_path)
    return directory, config, tokenizer


def load_weights(model: torch.nn.Module, directory: Path) -> None:
    """Load ``model.safetensors`` from a checkpoint directory into ``model``, in place (upcast to its dtype)."""
    device = next(model.parameters()).device
    path = Path(directory) / "model.safetensors"
    checked(path, lambda: load_model(model, str(path), device=str(device)))


def init_weights(model: torch.nn.Module, directory: Path, like: dict[int, int] | None = None) -> None:
    """Start ``model`` from a checkpoint's weights (``--init``). A vocabulary that grew (new ids appended,
    e.g. an anticipated melody's controls) keeps the old rows; a new id ``i`` starts as a copy of old id
    ``like[i]``'s rows (:attr:`~reprise.data.tokenizer.Tokenizer.grown_from`), the others afresh; a new
    condition projection (:mod:`reprise.data.melody_condition`) keeps its zeros."""
    path = Path(directory) / "model.safetensors"
    held = checked(path, lambda: load_file(str(path)))
    state = model.state_dict()
    for name, tensor in held.items():
        mine = state.get(name)
        grown = mine is not None and mine.shape[1:] == tensor.shape[1:] and mine.shape[0] >= tensor.shape[0]
        if not grown:
            wanted = "no such tensor" if mine is None else f"shape {tuple(mine.shape)}"
            raise RepriseError(f"{path}: {name} has shape {tuple(tensor.shape)}, this model wants {wanted}")
        with torch.no_grad():
            mine[: tensor.shape[0]].copy_(tensor.to(mine.dtype))
            new = [i for i in like or {} if tensor.shape[0] <= i < mine.shape[0] and tensor.dim() > 1]
            mine[new] = tensor[[like[i] for i in new]].to(mine.dtype)
    loaded = {state[name].data_ptr() for name in held}  # a tied tensor is stored once, under one name
    grown = {"condition.weight"}  # a condition's projection, new here, starts at zero: the model as it was
    if missing := sorted(n for n in set(state) - set(held) - grown if state[n].data_ptr() not in loaded):
        raise RepriseError(f"{path}: no weights for {', '.join(missing[:3])}")


def write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` as indented JSON at ``path``."""
    path.write_text(json.dumps(data, indent=1))


def _check_size(config: Any, directory: Path, config_path: Path) -> None:
    """Refuse a config whose model has more parameters than ``model.safetensors`` holds values, before
    building it: a damaged ``model.json`` must not make us allocate a model of any size."""
    with torch.device("meta"):  # shapes only, no memory
        wanted = checked(config_path, lambda: sum(p.numel() for p in build_model(config).parameters()))
    weights = directory / "model.safetensors"
    with checked(weights, lambda: safe_open(str(weights), "pt")) as f:
        held = sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())
    if wanted > held:
        raise RepriseError(
            f"{weights}: holds {held:,} values, but {config_path.name} describes a model of {wanted:,} parameters"
        )
