"""`prepare` as a user meets it: bad files skipped with reasons, crashes survived, same bytes twice, end to end."""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import shutil
import signal
import zipfile

import numpy as np
import pytest
import symusic

from conftest import SHARED, SMALL_MODEL, shared
from reprise.cli.main import main
from reprise.data import sources
from reprise.data.augment import Augmentation
from reprise.data.dataset import TokenDataset, read_manifest
from reprise.data.prepare import CRASHED, prepare

POP909 = SHARED / "pop909"
ERK = SHARED / "erk" / "erk.zip"


@pytest.fixture()
def midi_folder(tmp_path):
    """Four real POP909 songs (one in a subfolder) and every kind of bad file."""
    shared(POP909)
    folder = tmp_path / "midi"
    (folder / "more").mkdir(parents=True)
    for n in (1, 2, 3):
        shutil.copy(POP909 / f"{n:03d}.mid", folder / f"{n:03d}.mid")
    shutil.copy(POP909 / "004.mid", folder / "more" / "004.mid")
    data = (POP909 / "005.mid").read_bytes()
    (folder / "empty.mid").write_bytes(b"")
    (folder / "garbage.mid").write_bytes(b"this is not a MIDI file at all")
    (folder / "truncated.mid").write_bytes(data[: len(data) // 3])
    (folder / "notes.txt").write_text("ignored: not music")
    drums, silent = symusic.Score(480), symusic.Score(480)
    kit = symusic.Track("kit", 0, True)
    kit.notes.append(symusic.Note(0, 120, 36, 100))
    drums.tracks.append(kit)
    silent.tracks.append(symusic.Track("nothing", 0))
    drums.dump_midi(str(folder / "drums.mid"))
    silent.dump_midi(str(folder / "silent.mid"))
    return folder


def test_bad_files_are_skipped_with_reasons_and_output_is_idempotent(midi_folder, tmp_path):
    first = prepare(str(midi_folder), tmp_path / "a", "performance", workers=2)
    manifest = read_manifest(first)
    reasons = {s["name"]: s["reason"] for s in manifest["skipped"]}
    assert reasons["empty.mid"] == "empty file"
    assert reasons["garbage.mid"].startswith("not a readable MIDI file")
    assert reasons["truncated.mid"].startswith("not a readable MIDI file")
    assert reasons["drums.mid"] == "only drum tracks"
    assert reasons["silent.mid"] == "no notes"
    assert sorted(p["name"] for p in manifest["pieces"]) == ["001.mid", "002.mid", "003.mid", "more/004.mid"]
    assert manifest["tokenizer_config"]["name"] == "performance" and len(manifest["vocabulary"]) == 391
    assert all(len(p["source_sha1"]) == 40 for p in manifest["pieces"])

    second = prepare(str(midi_folder), tmp_path / "b", "performance", workers=1)
    assert sorted(f.name for f in first.iterdir()) == sorted(f.name for f in second.iterdir())
    for f in first.iterdir():
        assert f.read_bytes() == (second / f.name).read_bytes(), f.name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directory left


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="the crash is injected into forked workers")
def test_a_crashing_parser_costs_one_file_not_the_run(midi_folder, tmp_path, monkeypatch):
    read_midi = sources.READERS["midi"]

    def crash_on_002(data: bytes) -> symusic.Score:
        if data == (POP909 / "002.mid").read_bytes():
            faulthandler.disable()  # pytest's would print the dying worker's stack
            os.kill(os.getpid(), signal.SIGSEGV)  # as a buggy C++ parser dies
        return read_midi(data)

    monkeypatch.setitem(sources.READERS, "midi", crash_on_002)
    manifest = read_manifest(prepare(str(midi_folder), tmp_path / "out", "performance", workers=2))
    reasons = {s["name"]: s["reason"] for s in manifest["skipped"]}
    assert reasons["002.mid"] == CRASHED
    assert sorted(p["name"] for p in manifest["pieces"]) == ["001.mid", "003.mid", "more/004.mid"]


def test_tracks_and_tokenizers_over_one_folder(midi_folder, tmp_path):
    melody = read_manifest(prepare(str(midi_folder), tmp_path / "m", "melody-grid", tracks=("MELODY",)))
    both = read_manifest(prepare(str(midi_folder), tmp_path / "b", "remi", tracks=("melody", "piano")))
    assert (
        melody["counts"]["train"]["pieces"] + melody["counts"]["valid"]["pieces"] + melody["counts"]["test"]["pieces"]
        == 4
    )
    assert sum(p["tokens"] for p in both["pieces"]) > 3 * sum(p["tokens"] for p in melody["pieces"])


def test_kern_zip_with_melody_grid_and_augmented_batches(tmp_path):
    shared(ERK)
    small = tmp_path / "songs.zip"
    with zipfile.ZipFile(ERK) as src, zipfile.ZipFile(small, "w") as dst:
        for name in sorted(n for n in src.namelist() if n.endswith(".krn"))[:30]:
            dst.writestr(name, src.read(name))
        dst.writestr("erk/broken.krn", "**kern\n4cc\n*-\n=== not kern")
    data = prepare(str(small), tmp_path / "erk", valid=0.2, test=0.1)
    manifest = read_manifest(data)
    assert manifest["tokenizer"] == "melody-grid" and len(manifest["pieces"]) >= 29
    names = {s: {p["name"] for p in manifest["pieces"] if p["split"] == s} for s in ("train", "valid", "test")}
    assert not (names["train"] & names["valid"]) and names["valid"]

    train = TokenDataset(data, "train")
    moved = 0
    for seed in range(8):  # the first window of a batch is the same with and without augmentation
        plain = train.batch(np.random.default_rng(seed), 4, 64, augment=None)[0][0]
        varied = train.batch(np.random.default_rng(seed), 4, 64, augment=Augmentation())[0][0]
        np.testing.assert_array_equal(plain < 5, varied < 5)  # only pitches move; holds, rests, specials stay
        assert len(set(varied[varied >= 5] - plain[plain >= 5])) == 1 and varied.max() < train.tokenizer.vocab_size
        moved += (plain != varied).any()
    assert moved >= 4


def test_prepare_train_generate_with_performance_tokens(capsys, midi_folder, tmp_path):
    assert main(["prepare", str(midi_folder), "--out", str(tmp_path / "data"), "--split", "0.5,0.5,0"]) == 0
    assert "skipped 5" in capsys.readouterr().out
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(tmp_path / "data"),
                "--run",
                str(run),
                "--steps",
                "2",
                "--eval-every",
                "2",
                "--batch-size",
                "2",
                "--device",
                "cpu",
                *SMALL_MODEL,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "generate",
                "--checkpoint",
                str(run),
                "--length",
                "64",
                "--samples",
                "1",
                "--out",
                str(tmp_path / "samples"),
            ]
        )
        == 0
    )
    assert symusic.Score(str(tmp_path / "samples" / "sample-1.mid")).tracks[0].name == "Piano"
    assert main(["generate", "--checkpoint", str(run), "--length", "2bars", "--out", str(tmp_path / "x")]) == 1
    assert "no fixed bar length" in capsys.readouterr().err


def test_unknown_sources_and_tokenizers_are_one_line_errors(capsys, tmp_path):
    assert main(["prepare", "no-such-corpus", "--out", str(tmp_path / "x")]) == 1
    assert "unknown source" in capsys.readouterr().err
    assert main(["prepare", "bach", "--tokenizer", "nope", "--out", str(tmp_path / "x")]) == 1
    assert "unknown tokenizer 'nope'" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["prepare", str(tmp_path / "empty"), "--out", str(tmp_path / "x")]) == 1
    assert "no MIDI" in capsys.readouterr().err
