"""``reprise benchmark jsb``: each entry trained under the budget, scored exactly, reported in three forms."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reprise.benchmark import jsb as jsb_benchmark
from reprise.benchmark.jsb import Entry, run_benchmark
from reprise.data.dataset import TokenDataset
from reprise.errors import RepriseError
from reprise.evaluation.nll import nll_of
from reprise.models.checkpoint import load_checkpoint
from reprise.models.config import ModelConfig
from reprise.models.markov import MarkovConfig
from reprise.training.config import TrainConfig

TINY_TRAIN = TrainConfig(steps=4, batch_size=2, eval_every=2, warmup=1, device="cpu")


@pytest.fixture
def tiny_entries(monkeypatch: pytest.MonkeyPatch) -> list[Entry]:
    entries = [
        Entry("markov", "bigram chain", MarkovConfig(order=1), TINY_TRAIN),
        Entry(
            "relative",
            "tiny relative transformer",
            ModelConfig(context=32, d_model=16, n_layers=1, n_heads=2, positions="none", attention="relative"),
            TINY_TRAIN,
        ),
    ]
    monkeypatch.setattr(jsb_benchmark, "ENTRIES", entries)
    return entries


def test_every_entry_is_scored_on_valid_and_test_with_its_best_checkpoint(jsb_json, tiny_entries, tmp_path):
    rows = run_benchmark(jsb_json, tmp_path, budget_minutes=5, report_samples=2)
    assert [r["name"] for r in rows] == ["markov", "relative"]
    for row in rows:
        model, tokenizer = load_checkpoint(tmp_path / "runs" / row["name"])
        for split in ("valid", "test"):
            data = TokenDataset(tmp_path / "data", split)
            pieces = [data.piece(i) for i in range(len(data))]
            expected = nll_of(model, pieces, model.config.context, frame=tokenizer.frame).per_token
            assert row[f"{split}_nll"] == pytest.approx(expected, abs=1e-4)
        assert row["steps"] >= 1 and row["budget_minutes"] == 5
    uniform = np.log(TokenDataset(tmp_path / "data", "test").tokenizer.vocab_size)  # 4.5 nats: no learning
    assert rows[0]["test_nll"] < uniform - 1  # the counted bigrams know the grid's structure
    assert rows[1]["steps"] == 4  # the step limit came first
    table = (tmp_path / "results.md").read_text()
    assert "| markov | bigram chain |" in table and "| relative | tiny relative transformer |" in table
    assert (tmp_path / "results.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "results.json").read_text()) == rows
    for row in rows:  # the report's figures for samples drawn from the best checkpoint, beside the test split's
        assert len(list((tmp_path / "runs" / row["name"] / "samples").glob("sample-*.mid"))) == 2
        assert 0 <= row["report"]["in_key"]["samples"] <= 1 and 0.8 < row["report"]["in_key"]["reference"] <= 1
        assert row["report"]["parallels"]["reference"] < 0.05
    assert "| in key |" in table and f"({rows[0]['report']['in_key']['reference']:.3g})" in table


def test_only_reruns_one_entry_and_keeps_the_other_rows(jsb_json, tiny_entries, tmp_path):
    first = run_benchmark(jsb_json, tmp_path, budget_minutes=0.5, report_samples=0)
    again = run_benchmark(jsb_json, tmp_path, budget_minutes=0.25, only=["markov"], report_samples=0)
    assert again[1] == first[1]  # the transformer's row is untouched
    assert again[0]["budget_minutes"] == 0.25 and again[0]["valid_nll"] == first[0]["valid_nll"]
    with pytest.raises(RepriseError, match="unknown benchmark entry 'gpt'; choose from markov, relative"):
        run_benchmark(jsb_json, tmp_path, budget_minutes=1, only=["gpt"])


def _sweep_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "jsb_sweep.py"
    spec = importlib.util.spec_from_file_location("jsb_sweep", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("runs", ["jsb_sweep.json", "jsb_sweep_fp32.json"])
def test_every_sweep_run_is_a_valid_configuration(runs):
    sweep = _sweep_module()
    spec = json.loads((sweep.ROOT / "benchmarks" / runs).read_text())
    names = [r["name"] for r in spec["runs"]]
    assert len(set(names)) == len(names)
    for run in spec["runs"]:
        ModelConfig(**{**spec["base"]["model"], **run["change"].get("model", {})})
        TrainConfig(**{**spec["base"]["train"], **run["change"].get("train", {})})
        assert run["steps"] > 1000


def test_a_sweep_run_trains_to_its_step_budget_and_reports_its_curve(small_chorales, tmp_path):
    sweep = _sweep_module()
    base = {
        "model": dict(vocab_size=92, context=32, d_model=16, n_layers=1, n_heads=2, positions="none", attention="rope"),
        "train": dict(batch_size=2, warmup=1, eval_every=2),
    }
    row = sweep.run_one("tiny", base, {"model": {"positions": "frame", "frame": 4}}, 4, small_chorales, tmp_path, "cpu")
    assert [step for step, _ in row["curve"]] == [2, 4]
    assert row["best_valid_nll"] == min(nll for _, nll in row["curve"]) and row["steps"] == 4
    saved = json.loads((tmp_path / "runs" / "tiny" / "run.json").read_text())
    assert saved["model"]["positions"] == "frame" and saved["train"]["max_minutes"] is None
    assert "| tiny | positions=frame, frame=4 | 4 |" in sweep.table([row])
