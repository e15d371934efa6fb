"""A run directory: ``run.json`` (what the run was started with), ``metrics.jsonl``, ``best/`` and ``last/``.

Making way for a new run, recording how it was configured, and finding what a
resumed run continues from; the training loop (:mod:`reprise.training.trainer`)
does the rest.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from reprise.errors import RepriseError
from reprise.models import architecture_of, config_from_json
from reprise.training.config import TrainConfig
from reprise.training.metrics import METRICS

RUN_FILES = ("run.json", METRICS, "best", "last", "best.old", "last.old")  # what a run writes in its directory


def clear_run(run_dir: Path, overwrite: bool) -> None:
    """Make way for a new run: refuse a directory holding one, or with ``overwrite`` delete its files."""
    found = [run_dir / name for name in RUN_FILES if (run_dir / name).exists()]
    if found and not overwrite:
        raise RepriseError(
            f"{run_dir}: already holds a run ({', '.join(p.name for p in found)}); continue it with --resume, "
            "or replace it with --overwrite"
        )
    for path in found + sorted(run_dir.glob(".best.*")) + sorted(run_dir.glob(".last.*")):  # unfinished saves
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def write_run(run_dir: Path, data_dir: Path, model_config: Any, train_config: TrainConfig) -> None:
    """``run.json``: what a run was started with, so that ``--resume`` needs nothing else."""
    run = {
        "data": str(Path(data_dir).resolve()),
        "architecture": architecture_of(model_config),
        "model": model_config.to_json(),
        "train": train_config.to_json(),
    }
    (run_dir / "run.json").write_text(json.dumps(run, indent=1))


def last_checkpoint(run_dir: Path) -> Path | None:
    """``last/``, or the ``last.old/`` that a kill between the two renames of a save leaves alone."""
    for folder in (run_dir / "last", run_dir / "last.old"):
        if (folder / "training.json").is_file():
            return folder
    return None


def read_run(run_dir: Path) -> tuple[Path, Any, TrainConfig]:
    """The data directory, model config and train config a run was started with; an error if it cannot resume."""
    if not (run_dir / "run.json").is_file() or last_checkpoint(run_dir) is None:
        raise RepriseError(f"{run_dir}: nothing to resume (needs run.json and a last/ checkpoint with training state)")
    run = json.loads((run_dir / "run.json").read_text())
    model_config = config_from_json(run["architecture"], run["model"])
    return Path(run["data"]), model_config, TrainConfig.from_json(run["train"])
