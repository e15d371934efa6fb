"""Training curves: loss against step and against wall-clock time, from a run's ``metrics.jsonl``.

Training rows (``step, loss, lr, tokens_per_s, elapsed``) give the training loss,
drawn faintly as logged and solid as a moving average; validation rows (``step,
val_nll, val_ppl, elapsed``) give the validation loss. Both are nats per token,
so the two lines are comparable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from reprise.errors import RepriseError
from reprise.training.metrics import read_metrics
from reprise.visualization.pianoroll import save

TRAIN_COLOUR, VALID_COLOUR = "#1f77b4", "#d62728"


def plot_curves(run_dir: Path, out: Path) -> Path:
    """Loss against step (left) and against elapsed minutes (right) into the PNG ``out``."""
    train, valid = read_metrics(run_dir)
    if not train:
        raise RepriseError(f"{Path(run_dir) / 'metrics.jsonl'}: no training rows yet")
    fig = Figure(figsize=(12, 4.2), dpi=110)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, x, label in zip(
        axes,
        (_column(train, "step"), _column(train, "elapsed") / 60),
        ("training step", "wall-clock minutes of training"),
    ):
        loss = _column(train, "loss")
        ax.plot(x, loss, color=TRAIN_COLOUR, alpha=0.25, lw=0.8)
        ax.plot(x, _smooth(loss), color=TRAIN_COLOUR, lw=1.8, label="training loss (moving average)")
        if valid:
            vx = _column(valid, "step") if ax is axes[0] else _column(valid, "elapsed") / 60
            ax.plot(vx, _column(valid, "val_nll"), "o-", color=VALID_COLOUR, lw=1.8, ms=4, label="validation loss")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("loss (nats per token)")
    axes[0].legend(frameon=False)
    best = min(valid, key=lambda r: r["val_nll"]) if valid else None
    summary = f"best validation {best['val_nll']:.3f} at step {best['step']}" if best else "no validation yet"
    fig.suptitle(
        f"{Path(run_dir).resolve().name}: {train[-1]['step']} steps in {train[-1]['elapsed'] / 60:.1f} min; {summary}",
        x=0.01,
        ha="left",
    )
    fig.tight_layout()
    return save(fig, out)


def _column(rows: list[dict], key: str) -> np.ndarray:
    return np.array([row[key] for row in rows], dtype=float)


def _smooth(values: np.ndarray) -> np.ndarray:
    """A centred moving average over about 2% of the points (edges averaged over what exists)."""
    half = min(max(1, len(values) // 100), (len(values) - 1) // 2)  # a window no longer than the data
    kernel = np.ones(2 * half + 1)
    return np.convolve(values, kernel, "same") / np.convolve(np.ones(len(values)), kernel, "same")
