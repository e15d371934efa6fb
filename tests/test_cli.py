"""The command line as a user meets it: the whole path, --help, and one-line errors."""

from __future__ import annotations

import json

import click
import pytest
import symusic

from conftest import SMALL_MODEL, run, train_tiny
from reprise.data.dataset import TokenDataset
from reprise.evaluation.nll import nll_of
from reprise.models.checkpoint import load_checkpoint


def test_prepare_train_generate_evaluate(capsys, jsb_json, small_chorales, tmp_path):
    code, out, _ = run(capsys, "prepare", jsb_json, "--out", tmp_path / "jsb")
    assert code == 0 and "train: 229 pieces" in out and "valid: 76 pieces" in out

    run_dir = tmp_path / "run"
    code, out, _ = run(
        capsys,
        "train",
        "--data",
        small_chorales,
        "--run",
        run_dir,
        "--steps",
        "4",
        "--eval-every",
        "2",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        *SMALL_MODEL,
    )
    assert code == 0 and "best validation NLL" in out
    assert (run_dir / "best" / "model.safetensors").is_file()

    code, out, _ = run(
        capsys,
        "generate",
        "--checkpoint",
        run_dir,
        "--primer-data",
        small_chorales,
        "--length",
        "2bars",
        "--samples",
        "2",
        "--out",
        tmp_path / "samples",
    )
    assert code == 0
    midis = sorted((tmp_path / "samples").glob("*.mid"))
    assert [m.name for m in midis] == ["sample-1.mid", "sample-2.mid"]
    score = symusic.Score(str(midis[0]))
    assert [t.name for t in score.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert score.end() >= 4 * score.tpq * 3  # 2 primer bars + 2 new bars, barring final rests
    assert (tmp_path / "samples" / "sample-1.png").stat().st_size > 10_000

    code, out, _ = run(capsys, "evaluate", "--checkpoint", run_dir, "--data", small_chorales, "--split", "test")
    report = json.loads(out)
    model, tokenizer = load_checkpoint(run_dir)
    test = TokenDataset(small_chorales, "test")
    pieces = [test.piece(i) for i in range(len(test))]
    expected = nll_of(model, pieces, model.config.context, frame=tokenizer.frame)
    assert code == 0 and report["pieces"] == 2 and report["tokens"] == sum(len(p) - 1 for p in pieces)
    assert report["nll_per_token"] == pytest.approx(expected.per_token, abs=1e-4)  # the checkpoint's own NLL

    code, out, _ = run(
        capsys,
        "generate",
        "--checkpoint",
        run_dir,
        "--primer-midi",
        midis[0],
        "--length",
        "8",
        "--samples",
        "1",
        "--out",
        tmp_path / "again",
    )
    assert code == 0 and (tmp_path / "again" / "sample-1.mid").is_file()


@pytest.mark.parametrize("command", ["prepare", "train", "generate", "evaluate", "demo", "models", "export", "studio"])
def test_every_command_documents_every_option(capsys, command):
    from reprise.cli.main import cli

    code, out, _ = run(capsys, command, "--help")
    assert code == 0 and "Usage: reprise " + command in out
    for param in cli.commands[command].params:
        if isinstance(param, click.Option):
            assert param.help, f"reprise {command} {param.opts[0]} has no help text"
            assert param.opts[0] in out


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["train", "--data", "no/such/dir", "--run", "r"], 1, "no/such/dir: not a prepared dataset"),
        (["train", "--run", "r", "--frobnicate"], 2, "No such option '--frobnicate'"),
        (["train", "--run", "r", "--positions", "diagonal"], 2, "'diagonal' is not one of"),
        (["generate", "--checkpoint", "no/such/run"], 1, "no/such/run: no checkpoint here"),
        (["prepare", "no/such/file.json", "--out", "x"], 1, "no/such/file.json: no such file"),
        (["prepare", "bach", "--out", "x", "--split", "0.5,0.5"], 2, "three fractions summing to 1"),
        (["train", "--resume", "--run", "no/such/run"], 1, "no/such/run: nothing to resume"),
    ],
)
def test_bad_input_gives_one_clear_line_and_a_nonzero_exit(capsys, tmp_path, monkeypatch, args, code, message):
    monkeypatch.chdir(tmp_path)
    got, out, err = run(capsys, *args)
    assert got == code
    assert len(err.strip().splitlines()) == 1, err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_a_missing_primer_file_is_named(capsys, small_chorales, tmp_path):
    run_dir = tmp_path / "run"
    train_tiny(capsys, small_chorales, run_dir)
    code, _, err = run(capsys, "generate", "--checkpoint", run_dir, "--primer-midi", tmp_path / "nope.mid")
    assert code == 1 and "nope.mid: no such file" in err
    code, _, err = run(capsys, "generate", "--checkpoint", run_dir, "--length", "many")
    assert code == 1 and "expected a number of tokens (512) or bars (8bars)" in err


def test_the_jsb_best_preset_brings_its_training_settings_and_options_still_override(capsys, small_chorales, tmp_path):
    run_dir = tmp_path / "run"
    code, _, _ = run(
        capsys,
        "train",
        "--preset",
        "jsb-best",
        "--data",
        small_chorales,
        "--run",
        run_dir,
        "--steps",
        "1",
        "--minutes",
        "0.5",
        "--device",
        "cpu",
        "--context",
        "32",
        "--d-model",
        "32",
        "--max-transpose",
        "2",
    )
    saved = json.loads((run_dir / "run.json").read_text())
    assert code == 0
    train, model = saved["train"], saved["model"]
    assert train["batch_size"] == 2 and train["ema_decay"] == 0.998 and train["weight_decay"] == 0.5  # the preset's
    assert train["precision"] == "bf16"
    assert train["steps"] == 1 and train["max_minutes"] == 0.5 and train["max_transpose"] == 2  # the command line's
    assert model["attention"] == "rope" and model["positions"] == "frame" and model["frame"] == 4
    assert model["context"] == 32 and model["attention_dropout"] == 0.0
    assert "max_transpose" not in json.loads((run_dir / "best" / "tokenizer.json").read_text())  # a training setting


def test_evaluate_accepts_runs_trained_with_max_transpose_and_any_stride(capsys, small_chorales, tmp_path):
    """Regressions: evaluate refused such checkpoints ("tokenized differently"), and crashed on strides above
    the context or of context - 1 with the chorale grid's 4-token frames."""
    run_dir = tmp_path / "run"
    code, _, _ = run(
        capsys,
        "train",
        "--data",
        small_chorales,
        "--run",
        run_dir,
        "--steps",
        "1",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--max-transpose",
        "5",
        *SMALL_MODEL,
        "--positions",
        "frame",
    )
    assert code == 0
    reports = []
    for stride in ([], ["--stride", "31"], ["--stride", "100"]):
        code, out, err = run(capsys, "evaluate", "--checkpoint", run_dir, "--data", small_chorales, *stride)
        assert code == 0, err
        reports.append(json.loads(out))
    assert len({r["tokens"] for r in reports}) == 1  # every token scored once, whatever the stride


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_that_only_emulates_it_is_pointed_out(capsys, monkeypatch, small_chorales, tmp_path, native):
    import reprise.device

    monkeypatch.setattr(reprise.device, "native_bf16", lambda device_type: native)
    args = ["train", "--data", small_chorales, "--run", tmp_path, "--steps", "1", "--device", "cpu", "--overwrite"]
    code, _, err = run(capsys, *args, "--precision", "bf16", *SMALL_MODEL)
    assert code == 0, err
    assert ("bf16 autocast is emulated" in err) is not native
    assert "emulated" not in run(capsys, *args, "--precision", "fp32", *SMALL_MODEL)[2]
