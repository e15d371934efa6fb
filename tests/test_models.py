"""Model folders: exported from a run, loaded by name or path, listed, and the ones that ship with reprise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from conftest import run
from reprise.cli.main import main
from reprise.errors import RepriseError
from reprise.models import pretrained
from reprise.models.checkpoint import load_checkpoint
from reprise.models.pretrained import read_model_config, resolve_model, shipped_model, shipped_models


@pytest.fixture(scope="module")
def shelf(tiny_run: Path, small_chorales: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of model folders, as the package's pretrained/ is: `reprise export` of the tiny run as `tiny`."""
    root = tmp_path_factory.mktemp("shelf")
    code = main(
        [
            "export",
            str(tiny_run),
            "--out",
            str(root / "tiny"),
            "--summary",
            "Chorales, barely trained",
            "--data",
            str(small_chorales),
            "--data-source",
            "JSB Chorales subset (public domain)",
            "--command",
            "reprise train --steps 6",
            "--hardware",
            "CPU",
        ]
    )
    assert code == 0
    return root


@pytest.fixture
def shipped(shelf: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make the shelf the package's shipped models for one test."""
    monkeypatch.setattr(pretrained, "SHIPPED", shelf)
    return shelf


def test_export_writes_half_precision_weights_a_config_and_a_card(shelf: Path, tiny_run: Path):
    folder = shelf / "tiny"
    assert [p.name for p in shelf.iterdir()] == ["tiny"]  # staged elsewhere, swapped in whole
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}  # noqa: SIM118 (safe_open is no dict)
    meta = read_model_config(folder)
    assert meta["architecture"] == "music-transformer" and meta["tokenizer"]["name"] == "chorale-grid"
    card = meta["card"]
    assert card["steps"] == json.loads((tiny_run / "best" / "training.json").read_text())["step"]
    assert 0 < card["valid_nll"] < 5 and 0 < card["test_nll"] < 5
    readme = (folder / "README.md").read_text()
    assert f"{card['valid_nll']:.4f} nats/token" in readme and "reprise train --steps 6" in readme
    assert "JSB Chorales subset (public domain)" in readme


def test_loaded_folder_is_float32_and_predicts_like_the_run(shelf: Path, tiny_run: Path):
    original, tokenizer = load_checkpoint(tiny_run)
    exported, exported_tokenizer = load_checkpoint(shelf / "tiny")
    assert exported_tokenizer.to_json() == tokenizer.to_json()
    assert {p.dtype for p in exported.parameters()} == {torch.float32}
    ids = torch.arange(3, 40)[None]
    with torch.no_grad():
        a, b = original(ids), exported(ids)
    assert not torch.equal(a, b)  # the weights were rounded ...
    assert torch.allclose(a, b, atol=2e-2)  # ... to float16, no further


def test_card_nll_is_what_evaluate_measures_on_the_folder(capsys, shelf: Path, small_chorales: Path):
    code, out, _ = run(capsys, "evaluate", "--checkpoint", shelf / "tiny", "--data", small_chorales, "--split", "test")
    assert code == 0
    assert json.loads(out)["nll_per_token"] == read_model_config(shelf / "tiny")["card"]["test_nll"]


def test_a_name_resolves_to_a_shipped_folder_and_a_path_to_itself(shipped: Path, tmp_path: Path, monkeypatch):
    assert resolve_model("tiny") == shipped / "tiny"
    assert resolve_model(Path("tiny")) == Path("tiny")  # a Path is always a path
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").mkdir()
    assert resolve_model("tiny") == Path("tiny")  # an existing folder wins over a name
    with pytest.raises(RepriseError, match="'nope': no such shipped model \\(shipped: tiny;"):
        resolve_model("nope")


def test_models_lists_the_shipped_ones_with_their_nll(capsys, shipped: Path):
    card = read_model_config(shipped / "tiny")["card"]
    code, out, _ = run(capsys, "models")
    assert code == 0 and "tiny" in out and f"{card['valid_nll']:.4f}" in out and "Chorales, barely trained" in out
    code, out, _ = run(capsys, "models", "--json")
    assert json.loads(out)[0]["test_nll"] == card["test_nll"]


def test_model_option_works_wherever_checkpoint_does(capsys, shipped: Path, small_chorales: Path, tmp_path: Path):
    code, out, _ = run(
        capsys, "generate", "--model", "tiny", "--length", "1bars", "--samples", "1", "--musicxml", "--out", tmp_path
    )
    assert code == 0 and (tmp_path / "sample-1.mid").is_file() and (tmp_path / "sample-1.musicxml").is_file()
    code, out, _ = run(capsys, "evaluate", "--model", "tiny", "--data", small_chorales, "--split", "valid")
    assert code == 0 and json.loads(out)["nll_per_token"] == read_model_config(shipped / "tiny")["card"]["valid_nll"]
    code, out, _ = run(capsys, "plot", "attention", tmp_path / "sample-1.mid", "--model", "tiny", "--out", tmp_path)
    assert code == 0 and (tmp_path / "sample-1.attention.html").is_file()


def test_checkpoint_takes_a_shipped_name_in_report_too(
    capsys, shipped: Path, small_chorales: Path, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # no folder called tiny here
    reference = ["--reference", small_chorales, "--reference-split", "train"]
    code, _, err = run(
        capsys, "report", "--checkpoint", "tiny", "--samples", "1", "--length", "1bar", *reference, "--out", "r"
    )
    assert code == 0, err
    assert (tmp_path / "r" / "samples" / "sample-1.mid").is_file()
    code, _, err = run(capsys, "report", "--checkpoint", "nope", *reference, "--out", "r")
    assert code != 0 and "'nope': no such shipped model" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate"], "give --checkpoint RUN or --model NAME (one of them)"),
        (["generate", "--model", "tiny", "--checkpoint", "x"], "give --checkpoint RUN or --model NAME"),
        (["generate", "--model", "nope"], "'nope': no such shipped model (shipped: tiny;"),
    ],
)
def test_model_choice_mistakes_are_one_line(capsys, shipped: Path, args, message):
    code, _, err = run(capsys, *args)
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1


def test_a_folder_that_is_not_a_model_says_so(tmp_path: Path):
    (tmp_path / "config.json").write_text(json.dumps({"format": "something-else"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(RepriseError, match="config.json: not a reprise model config"):
        load_checkpoint(tmp_path)


# -- the models that ship inside the package ------------------------------------------------------

NONE_SHIPPED = pytest.param(None, marks=pytest.mark.skip(reason="no trained models in src/reprise/pretrained/ yet"))


@pytest.mark.parametrize("model", shipped_models() or [NONE_SHIPPED], ids=lambda m: m.name if m else "none")
def test_shipped_model_is_small_documented_and_generates(model: pretrained.ShippedModel):
    assert model.megabytes <= 8, f"{model.name}: {model.megabytes:.1f} MB (the limit for a shipped model is 8 MB)"
    card = model.card
    assert card.summary and card.data and card.command and card.hardware and card.steps
    assert card.valid_nll is not None and card.test_nll is not None
    assert (model.path / "README.md").is_file() and shipped_model(model.name).path == model.path
    net, tokenizer = load_checkpoint(model.name)
    assert {p.dtype for p in net.parameters()} == {torch.float32}
    if card.task == "continue":
        from reprise.generation.generate import generate

        ids = generate(net, tokenizer, np.array([tokenizer.bos_id]), 16, seed=1)
        assert ids.shape == (1, 17) and len(tokenizer.decode(ids[0]).tracks)


def test_package_data_includes_the_shipped_models_and_the_studio_page():
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    data = project["tool"]["setuptools"]["package-data"]
    assert "pretrained/*/*" in data["reprise"] and "static/*" in data["reprise.studio"]


def test_a_model_folder_exported_again_as_an_ensemble_keeps_its_card(
    shelf: Path, small_chorales: Path, capsys: pytest.CaptureFixture
):
    out = shelf.parent / "tiny-ensemble"
    args = ["export", shelf / "tiny", "--out", out, "--transpositions", "1", "--data", small_chorales]
    code, _, err = run(capsys, *args)
    assert code == 0, err
    before, after = read_model_config(shelf / "tiny"), read_model_config(out)
    assert after["config"]["transpositions"] == 1 and before["config"].get("transpositions", 0) == 0
    for fact in ("summary", "data", "hardware", "steps"):
        assert after["card"][fact] == before["card"][fact]
    assert after["card"]["command"].startswith("reprise train --steps 6 && reprise export")
    assert after["card"]["valid_nll"] != before["card"]["valid_nll"]  # measured again, as the ensemble
    assert "transposition ensemble over ±1 semitones" in (out / "README.md").read_text()
    code, _, err = run(capsys, "export", shelf.parent / "nowhere", "--out", shelf.parent / "x")
    assert code != 0 and "no checkpoint here" in err
