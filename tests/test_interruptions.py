"""A run survives misuse and interruptions: one process per run directory, no run overwritten by accident,
checkpoints on a timer, and a resume after Ctrl-C, a crash or ``kill -9`` that continues exactly."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import reprise
from reprise.cli.main import main
from reprise.data.dataset import TokenDataset
from reprise.errors import RepriseError
from reprise.models.config import ModelConfig
from reprise.training import trainer
from reprise.training.checkpoint import load_training_state
from reprise.training.config import TrainConfig
from reprise.training.run_dir import last_checkpoint


@pytest.fixture
def model(small_chorales) -> ModelConfig:
    vocab = TokenDataset(small_chorales, "train").tokenizer.vocab_size
    return ModelConfig(vocab_size=vocab, context=32, d_model=32, n_layers=1, n_heads=2, dropout=0.2)


def config(**changes) -> TrainConfig:
    return TrainConfig(**{"steps": 6, "batch_size": 2, "warmup": 2, "eval_every": 3, "device": "cpu", **changes})


def weights(run_dir) -> dict:
    return load_file(str(run_dir / "last" / "model.safetensors"))


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    assert all(a[name].equal(b[name]) for name in a)


def test_a_run_directory_in_use_is_refused_and_a_dead_processes_lock_is_not(small_chorales, model, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with open(run_dir / ".lock", "w") as held:  # what a training process holds while it runs
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242\n")
        held.flush()
        with pytest.raises(RepriseError, match=r"run: in use by process 4242, which is training in it"):
            trainer.train(run_dir, small_chorales, model, config(), quiet=True)
    assert not (run_dir / "run.json").exists()  # refused before writing anything
    # the file a killed process leaves behind holds no lock any more
    assert trainer.train(run_dir, small_chorales, model, config(steps=2), quiet=True).step == 2


def test_a_new_run_refuses_an_existing_run_unless_told_to_overwrite(small_chorales, model, tmp_path):
    run_dir = tmp_path / "run"
    trainer.train(run_dir, small_chorales, model, config(steps=3), quiet=True)
    metrics = (run_dir / "metrics.jsonl").read_text()
    with pytest.raises(RepriseError, match=r"already holds a run .*--resume, or replace it with --overwrite"):
        trainer.train(run_dir, small_chorales, model, config(steps=2), quiet=True)
    assert (run_dir / "metrics.jsonl").read_text() == metrics  # nothing lost
    trainer.train(run_dir, small_chorales, model, config(steps=2), quiet=True, overwrite=True)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert max(row["step"] for row in rows) == 2


def test_the_cli_refuses_overwriting_and_options_that_resume_would_ignore(capsys, small_chorales, tmp_path):
    run_dir = tmp_path / "run"
    args = ["train", "--data", small_chorales, "--run", run_dir, "--steps", "2", "--batch-size", "2"]
    args += ["--context", "32", "--d-model", "32", "--layers", "1", "--heads", "2", "--device", "cpu"]
    assert main([str(a) for a in args]) == 0
    capsys.readouterr()
    assert main([str(a) for a in args]) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert main([str(a) for a in args + ["--overwrite"]]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--run", str(run_dir), "--steps", "9", "--lr", "0.1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "drop --steps, --lr" in err
    assert json.loads((run_dir / "last" / "training.json").read_text())["step"] == 2


class Killed(BaseException):
    """Stands for ``kill -9``: nothing in the loop catches it, so nothing is saved on the way out."""


def test_timed_checkpoints_and_a_resume_after_a_kill_log_each_step_once(small_chorales, model, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    real_step = trainer._Loop.gradients

    def killed_at_five(self, train_set, step):
        if step == 5:
            raise Killed
        return real_step(self, train_set, step)

    monkeypatch.setattr(trainer._Loop, "gradients", killed_at_five)
    with pytest.raises(Killed):  # no validation before 5: only the timed checkpoints (every step) saved last/
        trainer.train(tmp_path / "timed", small_chorales, model, config(eval_every=9, checkpoint_minutes=0), quiet=True)
    assert json.loads((tmp_path / "timed" / "last" / "training.json").read_text())["step"] == 5
    with pytest.raises(Killed):  # checkpoint at 3 (validation), steps 4 and 5 logged, then killed
        trainer.train(run_dir, small_chorales, model, config(checkpoint_minutes=60), quiet=True)
    monkeypatch.setattr(trainer._Loop, "gradients", real_step)
    (run_dir / "last").rename(run_dir / "last.old")  # killed between the two renames of a save
    assert trainer.train(run_dir, resume=True, quiet=True).step == 6
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in rows if "val_nll" in r] == [3, 6]
    assert not (run_dir / "last.old").exists()


# a timed checkpoint after every step, dropout on, and enough steps that a signal lands mid-run
TRAIN = ["--steps", "30", "--eval-every", "1000", "--checkpoint-minutes", "0", "--batch-size", "2", "--warmup", "5"]
TRAIN += ["--context", "32", "--d-model", "32", "--layers", "1", "--heads", "2", "--dropout", "0.2", "--device", "cpu"]


def cli_process(*args) -> subprocess.Popen:
    """`python -m reprise.cli.main ARGS` in a fresh process that Ctrl-C (SIGINT) interrupts as in a terminal."""
    source = str(Path(reprise.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}
    env["OMP_NUM_THREADS"] = "1"  # tiny models: threads would only contend with the other process
    return subprocess.Popen(
        [sys.executable, "-m", "reprise.cli.main", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background parent may ignore it
    )


def finished(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out


@pytest.fixture(scope="module")
def uninterrupted(small_chorales, tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    finished(cli_process("train", "--data", small_chorales, "--run", run_dir, *TRAIN))
    return weights(run_dir)


@pytest.mark.parametrize("sent", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_a_training_process_killed_or_interrupted_mid_run_resumes_to_the_same_weights(
    uninterrupted, small_chorales, tmp_path, sent
):
    run_dir = tmp_path / "run"
    process = cli_process("train", "--data", small_chorales, "--run", run_dir, *TRAIN)
    while not (run_dir / "last" / "training.json").is_file() and process.poll() is None:
        time.sleep(0.005)
    assert process.poll() is None, process.communicate()[1]  # still training when the signal comes
    process.send_signal(sent)
    _, err = process.communicate(timeout=60)
    if sent == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
    else:  # no traceback: a line saying where it stopped and how to go on
        assert process.returncode == 1 and "Traceback" not in err, err
        assert err.splitlines()[-1].endswith(f"saved in last/; continue with: reprise train --resume --run {run_dir}")
    stopped = json.loads((last_checkpoint(run_dir) / "training.json").read_text())["step"]
    assert 0 < stopped < 30
    finished(cli_process("train", "--resume", "--run", run_dir))
    assert_same_weights(weights(run_dir), uninterrupted)


def test_the_rng_state_of_older_checkpoints_is_ignored(small_chorales, model, tmp_path):
    trainer.train(tmp_path / "run", small_chorales, model, config(steps=2), quiet=True)
    path = tmp_path / "run" / "last" / "optimizer.safetensors"
    tensors = load_file(str(path))
    assert "rng.torch" not in tensors
    save_file({**tensors, "rng.torch": torch.zeros(5056, dtype=torch.uint8)}, str(path))  # as older versions wrote
    optimizer = trainer.make_optimizer(trainer.build_model(model), config())
    before = torch.get_rng_state()
    assert load_training_state(path.parent, optimizer)["step"] == 2
    assert torch.get_rng_state().equal(before)
    assert len(optimizer.state) == len(tensors) // 3  # step, exp_avg, exp_avg_sq of every parameter


def test_an_error_mid_run_saves_the_steps_done_before_it_is_reported(small_chorales, model, tmp_path, monkeypatch):
    real_gradients = trainer._Loop.gradients

    def out_of_memory_at_five(self, train_set, step):
        if step == 5:
            raise RuntimeError("out of memory")
        return real_gradients(self, train_set, step)

    monkeypatch.setattr(trainer._Loop, "gradients", out_of_memory_at_five)
    with pytest.raises(RuntimeError, match="out of memory"):  # no validation, no timed checkpoint before 5
        trainer.train(tmp_path / "run", small_chorales, model, config(eval_every=9, checkpoint_minutes=60), quiet=True)
    assert json.loads((tmp_path / "run" / "last" / "training.json").read_text())["step"] == 5
