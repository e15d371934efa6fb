"""Tune for the 60-minute CPU budget on a GPU: many JSB runs at once, each for the steps the CPU would take.

    python benchmarks/jsb_sweep.py --data ../shared/data/jsb/Jsb16thSeparated.json \
        [--runs benchmarks/jsb_sweep.json] [--only NAME ...] [--parallel 8] [--device cuda] [--out DIR]

A 60-minute run on a 2-core CPU is some 15,000 to 25,000 steps of a model
under a million parameters: on a GPU each such run takes minutes, and several
fit side by side. ``--runs`` names a base configuration and, per run, the
fields it changes and the number of steps the CPU manages in 60 minutes for
that shape (measured there with ``reprise train --minutes``); the LR schedule
then ends where the CPU run's would. What carries over to the CPU is the
ranking and roughly the level: the GPU trains in bfloat16, and the CPU's
step count is an estimate. Writes ``results.json`` (every validation point of
every run) and ``results.md`` into ``--out``, and prints the table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

from reprise.data.prepare import prepare
from reprise.models.config import ModelConfig
from reprise.training.config import TrainConfig
from reprise.training.metrics import read_metrics
from reprise.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]


def run_one(name: str, base: dict, change: dict, steps: int, data: Path, out: Path, device: str) -> dict:
    """Train one run of the sweep to its step budget; its validation curve and best point."""
    model = ModelConfig(**{**base["model"], **change.get("model", {})})
    config = TrainConfig(**{**base["train"], **change.get("train", {})})
    config = replace(config, steps=steps, max_minutes=None, device=device)
    started = time.perf_counter()
    train(out / "runs" / name, data, model, config, quiet=True)
    train_rows, valid_rows = read_metrics(out / "runs" / name)
    curve = [(r["step"], round(r["val_nll"], 4)) for r in valid_rows]
    best_step, best = min(curve, key=lambda point: point[1])
    losses = [r["loss"] for r in train_rows][-200:]
    return {
        "name": name,
        "change": change,
        "steps": steps,
        "best_valid_nll": best,
        "best_step": best_step,
        "final_train_loss": round(sum(losses) / len(losses), 4),
        "seconds": round(time.perf_counter() - started),
        "curve": curve,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| run | change | steps | best valid NLL | at step | train loss (last 200) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        change = ", ".join(f"{k}={v}" for part in r["change"].values() for k, v in part.items()) or "none"
        lines.append(
            f"| {r['name']} | {change} | {r['steps']:,} | {r['best_valid_nll']:.4f} | "
            f"{r['best_step']:,} | {r['final_train_loss']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="JSB JSON, or a dataset prepared from it")
    parser.add_argument("--runs", type=Path, default=ROOT / "benchmarks" / "jsb_sweep.json")
    parser.add_argument("--only", action="append", help="run only this one (repeatable)")
    parser.add_argument("--parallel", type=int, default=8, help="runs training at the same time")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "jsb_sweep")
    args = parser.parse_args()
    spec = json.loads(args.runs.read_text())
    runs = [r for r in spec["runs"] if not args.only or r["name"] in args.only]
    data = args.data
    if data.is_file():
        data = prepare(str(args.data), args.out / "data")
    # a GPU context does not survive fork; each run gets a fresh process
    with ProcessPoolExecutor(args.parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
        jobs = [
            pool.submit(run_one, r["name"], spec["base"], r.get("change", {}), r["steps"], data, args.out, args.device)
            for r in runs
        ]
        rows = []
        for job in as_completed(jobs):  # written as each run ends, so a sweep cut short keeps what finished
            rows.append(job.result())
            rows.sort(key=lambda row: [r["name"] for r in runs].index(row["name"]))
            (args.out / "results.json").write_text(json.dumps(rows, indent=1))
            (args.out / "results.md").write_text(table(rows) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
