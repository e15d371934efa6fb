"""Shared fixtures: real chorale data from ../shared and music21, prepared once per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# a model small enough that a CLI test trains it in a second
SMALL_MODEL = ["--context", "32", "--d-model", "32", "--layers", "1", "--heads", "2"]


def run(capsys, *args) -> tuple[int, str, str]:
    """``reprise ARGS`` in this process: its exit code, stdout and stderr."""
    from reprise.cli.main import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def train_tiny(capsys, data, run_dir) -> None:
    """One training step of :data:`SMALL_MODEL` on ``data`` into ``run_dir`` (validated, so best/ exists)."""
    args = ["train", "--data", data, "--run", run_dir, "--steps", "1", "--eval-every", "1", "--device", "cpu"]
    code, _, err = run(capsys, *args, *SMALL_MODEL)
    assert code == 0, err


# The studio's browser tests drive Debian's chromium (Playwright's own browser download cannot work here).
CHROMIUM = os.environ.get("REPRISE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = "studio browser tests skipped: no chromium found (apt-get install chromium, or set REPRISE_CHROMIUM)"


def pop909_pairs(
    capsys, tmp_path: Path, names: tuple[str, ...] = ("001.mid", "002.mid", "003.mid")
) -> tuple[Path, Path]:
    """A folder of POP909 songs and its ``reprise prepare-pairs`` folder (MELODY -> PIANO), all in train."""
    folder = tmp_path / "songs"
    folder.mkdir()
    for name in names:
        shutil.copy(shared(SHARED / "pop909" / name), folder / name)
    pairs = tmp_path / "pairs"
    code, _, err = run(capsys, "prepare-pairs", folder, "--out", pairs, "--split", "1,0,0", "--workers", "1")
    assert code == 0, err
    return folder, pairs


def pytest_report_header() -> str:
    return f"studio browser tests: chromium at {CHROMIUM}" if CHROMIUM else NO_CHROMIUM


def pytest_terminal_summary(terminalreporter) -> None:
    if not CHROMIUM:
        terminalreporter.write_line(NO_CHROMIUM, yellow=True, bold=True)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The chromium executable for Playwright; skips the test, saying why, when there is none."""
    if not CHROMIUM:
        pytest.skip(NO_CHROMIUM)
    return CHROMIUM


JSB_JSON = SHARED / "jsb" / "Jsb16thSeparated.json"


def shared(path: Path) -> Path:
    """``path`` in the shared data folder; a test that needs it is skipped when it is absent, but fails
    under ``CI=true``, so that a green CI run has run every test."""
    if not path.exists():
        message = f"{path} is absent (the shared data folder beside the repo)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI=true needs it", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def device():
    """The torch device model tests run on: $REPRISE_TEST_DEVICE (e.g. cuda), cpu by default."""
    import torch

    return torch.device(os.environ.get("REPRISE_TEST_DEVICE", "cpu"))


@pytest.fixture(scope="session")
def jsb_json() -> Path:
    return shared(JSB_JSON)


@pytest.fixture(scope="session")
def jsb_data(jsb_json: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The JSB Chorales benchmark prepared as a dataset directory."""
    from reprise.data.prepare import prepare

    return prepare(str(jsb_json), tmp_path_factory.mktemp("jsb") / "data")


@pytest.fixture(scope="session")
def small_chorales(jsb_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight training and four validation chorales: enough to learn from in seconds."""
    from reprise.data.dataset import EncodedPiece, TokenDataset, load_tokenizer, write_dataset

    pieces = []
    for split, n in (("train", 8), ("valid", 4), ("test", 2)):
        dataset = TokenDataset(jsb_data, split)
        pieces += [EncodedPiece(f"{split}/{i}", dataset.piece(i), split) for i in range(n)]
    out = tmp_path_factory.mktemp("small") / "data"
    return write_dataset(out, pieces, load_tokenizer(jsb_data), "jsb subset", [])


@pytest.fixture(scope="session")
def tiny_run(small_chorales: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder holding a one-layer transformer trained for a few steps by `reprise train`."""
    from reprise.cli.main import main

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    code = main(
        [
            "train",
            "--data",
            str(small_chorales),
            "--run",
            str(run_dir),
            "--steps",
            "6",
            "--eval-every",
            "3",
            "--batch-size",
            "2",
            "--device",
            "cpu",
            "--context",
            "64",
            "--d-model",
            "32",
            "--layers",
            "1",
            "--heads",
            "2",
        ]
    )
    assert code == 0
    return run_dir


@pytest.fixture(scope="session")
def tiny_harmonizer(small_chorales: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder holding a one-layer encoder-decoder trained to harmonise for a few steps by `reprise train`."""
    from reprise.cli.main import main

    run_dir = tmp_path_factory.mktemp("runs") / "harmonizer"
    small = ["--context", "48", "--source-context", "32", "--d-model", "32", "--layers", "1", "--heads", "2"]
    args = ["--data", str(small_chorales), "--run", str(run_dir), "--steps", "3", "--eval-every", "3"]
    code = main(
        [
            "train",
            "--model",
            "encoder-decoder",
            "--task",
            "harmonize",
            *args,
            *small,
            "--batch-size",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    return run_dir


@pytest.fixture(scope="session")
def studio_runs(tiny_run: Path, tiny_harmonizer: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for `reprise studio --runs`: the tiny run, and the tiny harmonizer as `reprise export` writes
    a model folder (as a shipped `harmonizer` would be)."""
    from reprise.cli.main import main

    runs = tmp_path_factory.mktemp("studio-runs")
    (runs / "tiny").symlink_to(tiny_run, target_is_directory=True)
    assert (
        main(["export", str(tiny_harmonizer), "--out", str(runs / "harmonizer"), "--summary", "tiny harmonizer"]) == 0
    )
    return runs
