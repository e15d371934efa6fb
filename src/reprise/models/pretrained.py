"""Model folders: the format trained models ship in, inside the package and out of it.

A model folder is what ``reprise export`` writes and what ships in
``reprise/pretrained/NAME/``; other tools can read it without reprise:

- ``model.safetensors``: the weights, float16 or bfloat16 to keep the package small
  (loading upcasts them to float32);
- ``config.json``: ``{"format": "reprise-model", "version": 1, "architecture": ...,
  "config": {...}, "tokenizer": {...}, "card": {...}}``: everything loading needs (the
  model's architecture and configuration, the tokenizer) and the card's facts as data;
- ``README.md``: the model card for people, written from the same facts.

:func:`resolve_model` is the one place where a shipped model's name becomes a
folder; ``load_checkpoint`` calls it, so a name works wherever a checkpoint does.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_model

from reprise.config import JsonConfig
from reprise.data.tokenizer import Tokenizer
from reprise.errors import RepriseError
from reprise.models import architecture_of

FORMAT, VERSION = "reprise-model", 1
SHIPPED = Path(__file__).resolve().parents[1] / "pretrained"  # reprise/pretrained/NAME/
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
TASKS = ("continue", "harmonize", "accompany", "infill")


@dataclass(frozen=True)
class ModelCard(JsonConfig):
    """What a person needs to know about a model folder before using it."""

    summary: str = ""  # what it does, in one line
    task: str = "continue"  # one of TASKS
    data: str = ""  # what it was trained on, and that data's licence
    command: str = ""  # the exact commands that trained it
    hardware: str = ""  # e.g. "CPU, 2 cores" or "1 NVIDIA H100"
    steps: int | None = None  # optimizer steps of the exported weights
    minutes: float | None = None  # wall-clock training time up to those weights
    valid_nll: float | None = None  # nats/token of the exported (rounded) weights
    test_nll: float | None = None
    dtype: str = "float16"  # of the stored weights
    parameters: int | None = None


@dataclass(frozen=True)
class ShippedModel:
    """A model folder inside the package."""

    name: str
    path: Path
    card: ModelCard

    @property
    def megabytes(self) -> float:
        return (self.path / "model.safetensors").stat().st_size / 2**20


def trained_task(model: torch.nn.Module, tokenizer: Tokenizer) -> str:
    """What a model was trained to do: a conditional model's config names its task; a decoder-only
    model's stream says it (the soprano ahead harmonises, an anticipated melody is accompanied)."""
    return getattr(model.config, "task", None) or tokenizer.task


def read_model_config(directory: Path) -> dict[str, Any]:
    """The ``config.json`` of a model folder, checked to be one."""
    path = Path(directory) / "config.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise RepriseError(f"{path}: cannot read the model folder's config ({err})") from err
    needed = {"architecture", "config", "tokenizer"}
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not needed <= meta.keys():
        raise RepriseError(f"{path}: not a reprise model config (needs format {FORMAT!r}, {', '.join(sorted(needed))})")
    if meta.get("version", 0) > VERSION:
        raise RepriseError(f"{path}: written by a newer reprise (format version {meta['version']} > {VERSION})")
    return meta


def shipped_models(root: Path | None = None) -> list[ShippedModel]:
    """The model folders under ``root`` [default: the package's shipped models, ``SHIPPED``], by name."""
    root = Path(root or SHIPPED)
    folders = sorted(root.glob("*/config.json")) if root.is_dir() else []
    return [
        ShippedModel(p.parent.name, p.parent, ModelCard.from_json(read_model_config(p.parent).get("card", {})))
        for p in folders
    ]


def shipped_model(name: str, root: Path | None = None) -> ShippedModel:
    """The shipped model called ``name``; a :class:`RepriseError` listing the others if there is none."""
    models = {m.name: m for m in shipped_models(root)}
    if name not in models:
        known = ", ".join(models) or "none in this install"
        raise RepriseError(f"{name!r}: no such shipped model (shipped: {known}; see `reprise models`)")
    return models[name]


def resolve_model(name_or_path: str | Path, root: Path | None = None) -> Path:
    """The folder to load: a shipped model's for its name (a ``str`` without ``/`` that is not an
    existing path, e.g. ``"bach"``), else ``name_or_path`` itself as a path."""
    if isinstance(name_or_path, str) and "/" not in name_or_path and not Path(name_or_path).exists():
        return shipped_model(name_or_path, root).path
    return Path(name_or_path)


def write_model_folder(
    out: Path, model: torch.nn.Module, tokenizer: Tokenizer, card: ModelCard, name: str | None = None
) -> Path:
    """Write ``model`` (weights cast to ``card.dtype``), its tokenizer and card as a model folder at ``out``."""
    if card.dtype not in DTYPES:
        raise RepriseError(f"dtype {card.dtype!r}: choose one of {', '.join(DTYPES)}")
    if card.task not in TASKS:
        raise RepriseError(f"task {card.task!r}: choose one of {', '.join(TASKS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stored = copy.deepcopy(model).to(device="cpu", dtype=DTYPES[card.dtype])
    save_model(stored, str(out / "model.safetensors"))
    (out / "model.safetensors").chmod(0o644)  # an ordinary file, whatever the umask of the tool that wrote it
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "architecture": architecture_of(model.config),
        "config": model.config.to_json(),
        "tokenizer": tokenizer.to_json(),
        "card": card.to_json(),
    }
    (out / "config.json").write_text(json.dumps(meta, indent=1))
    (out / "README.md").write_text(card_markdown(name or out.name, card, meta))
    return out


def card_markdown(name: str, card: ModelCard, meta: dict[str, Any]) -> str:
    """The model card: what the model does, how it was made, and how well it predicts held-out music."""

    def nll(value: float | None) -> str:
        return "not measured" if value is None else f"{value:.4f} nats/token"

    minutes = "not recorded" if card.minutes is None else f"{card.minutes:.1f} minutes"
    command = "generate" if card.task == "continue" else card.task
    usage = f"`reprise {command} --model {name}`"
    scored = "" if card.task == "continue" else ", per written token given the source"
    params = "" if card.parameters is None else f", {card.parameters:,} parameters"
    if semitones := meta["config"].get("transpositions", 0):
        scored += ", as the ensemble"
        params += (
            f"; predicts as a transposition ensemble over ±{semitones} semitones (`--transpositions 0`: one network)"
        )
    return f"""# {name}

{card.summary}

- Task: {card.task} ({usage})
- Model: {meta["architecture"]}{params}; tokenizer `{meta["tokenizer"].get("name")}`; weights stored as {card.dtype}
- Data: {card.data or "not recorded"}
- Trained on: {card.hardware or "not recorded"}, {card.steps if card.steps is not None else "?"} steps, {minutes}
- Validation NLL: {nll(card.valid_nll)}; test NLL: {nll(card.test_nll)} (measured on these {card.dtype} weights{scored})

## How it was trained

```
{card.command or "not recorded"}
```

The same facts are in `config.json` under `card`; `config.json` also holds what loading needs.
"""
