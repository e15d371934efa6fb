"""Many processes, one run: two CPU processes started by torchrun train the weights one process does,
and a run on two processes interrupted mid-run resumes to the weights of an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import reprise

STEPS = 12
# batch 4 in 2 micro-batches: each process takes 2 windows of each; dropout 0, as its masks differ by process
TRAIN = ["--steps", STEPS, "--eval-every", 6, "--checkpoint-minutes", 0, "--batch-size", 4, "--grad-accum", 2]
TRAIN += [
    "--warmup",
    2,
    "--context",
    32,
    "--d-model",
    32,
    "--layers",
    1,
    "--heads",
    2,
    "--dropout",
    0,
    "--device",
    "cpu",
]


def launch(*args, processes: int) -> subprocess.Popen:
    """`reprise ARGS` in ``processes`` processes under torchrun (its own session, like a terminal's job),
    or in one plain process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(reprise.__file__).parents[1]), env.get("PYTHONPATH")]))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [sys.executable, "-m", "reprise.cli.main"]
    if processes > 1:  # `--` keeps torchrun's parser off reprise's options (--run would be taken for --run-path)
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
        command += ["-m", "reprise.cli.main", "--"]
    return subprocess.Popen(
        command + [str(a) for a in args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def finished(process: subprocess.Popen) -> str:
    out, _ = process.communicate(timeout=180)
    assert process.returncode == 0, out
    return out


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "last" / "model.safetensors"))


def train_rows(run_dir: Path) -> list[dict]:
    return [row for row in map(json.loads, (run_dir / "metrics.jsonl").open()) if "loss" in row]


@pytest.fixture(scope="module")
def two_processes(small_chorales, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("two") / "run"
    out = finished(launch("train", "--data", small_chorales, "--run", run_dir, *TRAIN, processes=2))
    assert out.count("finished at step 12") == 1  # the leader reports; the other process says nothing
    return run_dir


def test_two_processes_train_the_weights_of_one_process_with_the_same_global_batch(
    two_processes, small_chorales, tmp_path
):
    finished(launch("train", "--data", small_chorales, "--run", tmp_path / "one", *TRAIN, processes=1))
    one, two = weights(tmp_path / "one"), weights(two_processes)
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-5)
    # the leader alone logs: each step once, with the loss of the whole batch and the same LR schedule
    rows_one, rows_two = train_rows(tmp_path / "one"), train_rows(two_processes)
    assert [r["step"] for r in rows_two] == list(range(1, STEPS + 1))
    assert [r["lr"] for r in rows_two] == [r["lr"] for r in rows_one]
    assert [r["loss"] for r in rows_two] == pytest.approx([r["loss"] for r in rows_one], rel=1e-5)
    assert not (two_processes / ".lock").read_text()  # released at the end; held by the leader while it ran


def test_a_two_process_run_interrupted_mid_run_resumes_to_the_same_weights(two_processes, small_chorales, tmp_path):
    run_dir = tmp_path / "run"
    process = launch("train", "--data", small_chorales, "--run", run_dir, *TRAIN, processes=2)
    while not (run_dir / "last" / "training.json").is_file() and process.poll() is None:
        time.sleep(0.005)
    assert process.poll() is None, process.communicate()[0]
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: torchrun stops its workers with SIGTERM
    out, _ = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "saved in last/; continue with: reprise train --resume" in out, out
    stopped = json.loads((run_dir / "last" / "training.json").read_text())["step"]
    assert 0 < stopped < STEPS
    finished(launch("train", "--resume", "--run", run_dir, processes=2))
    resumed, straight = weights(run_dir), weights(two_processes)
    assert all(resumed[name].equal(straight[name]) for name in straight)
    assert [r["step"] for r in train_rows(run_dir)] == list(range(1, STEPS + 1))
