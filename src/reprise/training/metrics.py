"""A run's ``metrics.jsonl``: one JSON row per training step or validation, appended as the run goes.

Training rows hold ``step, loss, lr, tokens_per_s, elapsed``; validation rows
``step, val_nll, val_ppl, val_tokens, elapsed`` (seconds since the run began).
This module is the one writer and the one reader of that file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from reprise.errors import RepriseError

METRICS = "metrics.jsonl"


def append_metrics(run_dir: Path, row: dict[str, Any]) -> None:
    """Append ``row`` (with the wall-clock ``time``) to ``RUN_DIR/metrics.jsonl``."""
    with open(Path(run_dir) / METRICS, "a") as f:
        f.write(json.dumps({**row, "time": time.time()}) + "\n")


def truncate_metrics(run_dir: Path, step: int) -> None:
    """Drop the rows past ``step`` (and a row a kill cut short), so that a run resumed from its checkpoint
    at ``step`` logs each step once."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line + "\n")
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    tmp = path.with_name(METRICS + ".tmp")
    tmp.write_text("".join(kept))
    tmp.replace(path)


def read_metrics(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """The training and validation rows of ``RUN_DIR/metrics.jsonl`` in step order, the last row kept for a
    repeated step (a resumed run logs again from its last checkpoint)."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise RepriseError(f"{run_dir}: no metrics.jsonl here (is it a run directory made by `reprise train`?)")
    train: dict[int, dict] = {}
    valid: dict[int, dict] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise RepriseError(f"{path}:{number}: not a JSON row ({err.msg})") from err
        if "loss" in row:
            train[row["step"]] = row
        elif "val_nll" in row:
            valid[row["step"]] = row
    return sorted(train.values(), key=lambda r: r["step"]), sorted(valid.values(), key=lambda r: r["step"])
