"""`reprise report` as a user runs it: a split against itself, samples from a checkpoint, and bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run, train_tiny
from reprise.report.html import fmt


def test_a_split_against_itself_has_zero_distances_and_copies_nothing_from_itself(capsys, jsb_data, tmp_path):
    data = ["--reference", jsb_data, "--reference-split", "valid", "--train", jsb_data, "--train-split", "valid"]
    code, out, err = run(capsys, "report", jsb_data, "--samples-split", "valid", *data, "--out", tmp_path)
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["counts"] == {"samples": 76, "reference": 76, "train": 76}
    assert max(row["distance"] for row in report["statistics"].values()) < 1e-5
    assert report["headline"]["distance_mean"]["samples"] < 1e-5 < report["headline"]["distance_mean"]["reference"]
    for row in report["originality"]["samples"]["pieces"]:
        assert row["span"]["train_piece"] != row["name"] and row["full_bars"]["train_piece"] != row["name"]
    html = (tmp_path / "report.html").read_text()
    assert "http" not in html.replace("http-equiv", "") and "<script" not in html  # self-contained
    assert html.count("data:image/png;base64,") == len(report["statistics"])
    for row in report["headline"].values():
        assert (
            f"<td>{row['label']}</td><td class='n'>{fmt(row['samples'])}</td>"
            f"<td class='n'>{fmt(row['reference'])}</td>" in html
        )
    assert "wrote" in out and "share of pieces that loop" in out


def test_samples_drawn_from_a_checkpoint_are_written_and_reported(capsys, small_chorales, tmp_path):
    run_dir = tmp_path / "run"
    train_tiny(capsys, small_chorales, run_dir)
    code, _, err = run(
        capsys,
        "report",
        "--checkpoint",
        run_dir,
        "--samples",
        "2",
        "--length",
        "1bar",
        "--reference",
        small_chorales,
        "--reference-split",
        "train",
        "--out",
        tmp_path / "r",
    )
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "r" / "samples").glob("*.mid")) == ["sample-1.mid", "sample-2.mid"]
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["counts"]["samples"] == 2 and "originality" not in report
    assert "parallels" in report["headline"]  # chorale samples keep their SATB grid


def test_a_looping_sample_folder_is_flagged(capsys, small_chorales, tmp_path):
    from reprise.data.chorale_grid import grid_to_score

    bar = np.array([[72, 67, 64, 48]] * 4 + [[74, 67, 65, 50]] * 4 + [[72, 64, 60, 45]] * 8)
    for i in range(3):
        grid_to_score(np.concatenate([bar] * 10)).dump_midi(str(tmp_path / f"loop-{i}.mid"))
    code, _, err = run(
        capsys, "report", tmp_path, "--reference", small_chorales, "--reference-split", "train", "--out", tmp_path / "r"
    )
    assert code == 0, err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["headline"]["loops"]["samples"] == 1.0
    assert report["headline"]["loops"]["reference"] < 0.5


@pytest.mark.parametrize(
    "make, extra, message",
    [
        (lambda d: d.mkdir(), [], "no MIDI files (.mid, .midi) in this folder"),
        (lambda d: (d.mkdir(), (d / "x.mid").write_text("not midi")), [], "x.mid: cannot read MIDI"),
        (lambda d: (d.mkdir(), (d / "x.txt").write_text("hi")), [], "no MIDI files"),
        (lambda d: None, [], "no such file or folder"),
        (lambda d: None, ["--checkpoint", "run"], "give either SAMPLES (a MIDI folder) or --checkpoint"),
    ],
)
def test_bad_inputs_give_one_line(capsys, small_chorales, tmp_path, make, extra, message):
    samples = tmp_path / "samples"
    make(samples)
    code, _, err = run(
        capsys,
        "report",
        samples,
        *extra,
        "--reference",
        small_chorales,
        "--reference-split",
        "test",
        "--out",
        tmp_path / "r",
    )
    assert code != 0 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "r").exists()


def test_a_dataset_without_a_split_is_refused(capsys, small_chorales, tmp_path):
    code, _, err = run(capsys, "report", small_chorales, "--reference", small_chorales, "--out", tmp_path / "r")
    assert code == 1 and "name its split with --reference-split" in err
    code, _, err = run(
        capsys,
        "report",
        small_chorales,
        "--reference",
        small_chorales,
        "--reference-split",
        "test",
        "--out",
        tmp_path / "r",
    )
    assert code == 1 and "name its split with --samples-split" in err


def test_every_option_is_documented(capsys):
    from reprise.cli.main import cli

    code, out, _ = run(capsys, "report", "--help")
    assert code == 0
    for param in cli.commands["report"].params:
        if param.param_type_name == "option":
            assert param.help and param.opts[0] in out, param.opts[0]
