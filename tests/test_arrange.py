"""Arranging with the encoder-decoder: what is given stays, cached equals uncached, and the commands end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import symusic
import torch

from conftest import run
from reprise.cli.main import cli
from reprise.data.chorale_grid import SILENCE, ChoraleGrid
from reprise.data.dataset import TokenDataset
from reprise.data.melody_grid import MelodyGrid
from reprise.data.pairs import Clock, Task
from reprise.data.performance import NOTE_ON, Performance
from reprise.generation.conditional import accompany, harmonize, infill
from reprise.models.encoder_decoder import EncoderDecoder, EncoderDecoderConfig

RANGES = [(60, 81), (53, 74), (48, 69), (36, 62)]
SOPRANO = np.array([67] * 4 + [69] * 4 + [71] * 8 + [SILENCE] * 2 + [72] * 6 + [71] * 4 + [69] * 4 + [67] * 8)


def tiny(task: str, tokenizer, context: int = 48, source_context: int = 24) -> EncoderDecoder:
    torch.manual_seed(0)
    config = EncoderDecoderConfig(
        task=task,
        vocab_size=tokenizer.vocab_size,
        source_vocab_size=Task(task, tokenizer).source_vocab_size,
        context=context,
        source_context=source_context,
        d_model=32,
        encoder_layers=1,
        n_layers=2,
        n_heads=4,
        dropout=0.0,
    )
    return EncoderDecoder(config).eval()


def test_harmonisation_keeps_the_soprano_token_for_token_and_the_voices_in_range():
    tokenizer = ChoraleGrid(voice_ranges=RANGES)
    chorales = harmonize(tiny("harmonize", tokenizer), tokenizer, SOPRANO, num_samples=3, seed=1)
    for ids in chorales:
        grid = tokenizer.decode_grid(ids)
        np.testing.assert_array_equal(grid[:, 0], SOPRANO)
        assert ids[0] == tokenizer.bos_id and ids[-1] == tokenizer.eos_id and len(ids) == 4 * len(SOPRANO) + 2
        for v, (low, high) in enumerate(RANGES[1:], start=1):
            sounding = grid[:, v][grid[:, v] != SILENCE]
            assert ((sounding >= low) & (sounding <= high)).all()
    assert not np.array_equal(chorales[0], chorales[1])


@pytest.mark.parametrize("task", ["harmonize", "infill"])
def test_cached_and_uncached_conditional_sampling_choose_the_same_tokens(task):
    tokenizer = ChoraleGrid(voice_ranges=RANGES)
    model = tiny(task, tokenizer)  # 48 target tokens: 120 (harmony) or 96 (infill) slide the window
    if task == "harmonize":
        run = lambda cache: harmonize(model, tokenizer, SOPRANO, num_samples=2, seed=3, use_cache=cache)  # noqa: E731
    else:
        grid = np.stack([SOPRANO, SOPRANO - 7, SOPRANO - 12, SOPRANO - 24], 1)
        grid[SOPRANO == SILENCE] = SILENCE
        ids = tokenizer.encode_grid(grid)
        run = lambda cache: infill(
            model,
            Task("infill", tokenizer),
            ids,
            (8, 32),
            num_samples=2,  # noqa: E731
            seed=3,
            use_cache=cache,
        )
    for fast, slow in zip(run(True), run(False)):
        np.testing.assert_array_equal(fast, slow)


@pytest.mark.parametrize("tokenizer", [ChoraleGrid(voice_ranges=RANGES), MelodyGrid()], ids=["chorale", "melody"])
def test_infill_keeps_every_token_outside_the_span(tokenizer):
    if isinstance(tokenizer, ChoraleGrid):
        grid = np.stack([SOPRANO, SOPRANO - 7, SOPRANO - 12, SOPRANO - 24], 1)
        grid[SOPRANO == SILENCE] = SILENCE
        ids = tokenizer.encode_grid(grid)
    else:
        ids = np.r_[1, np.tile([60 - 21 + 5, 3, 3, 4], 12), 2]  # a quarter note and a rest, twelve times
    task = Task("infill", tokenizer)
    span = (16, 32)
    first, last = 1 + 16 * tokenizer.frame, 1 + 32 * tokenizer.frame
    pieces = infill(tiny("infill", tokenizer, context=80, source_context=64), task, ids, span, num_samples=3, seed=2)
    for piece in pieces:
        assert len(piece) == len(ids)
        np.testing.assert_array_equal(np.delete(piece, np.s_[first:last]), np.delete(ids, np.s_[first:last]))
        assert (piece[first:last] > tokenizer.eos_id).all()  # no specials inside
    assert any(not np.array_equal(p[first:last], ids[first:last]) for p in pieces)


def test_an_accompaniment_ends_with_its_melody():
    tokenizer = Performance()
    melody = np.r_[1, np.tile([NOTE_ON + 67, 259 + 49, NOTE_ON + 128 + 67], 6), 2]  # six notes, 0.5 s apart
    parts = accompany(
        tiny("accompany", tokenizer, context=64, source_context=32),
        Task("accompany", tokenizer),
        melody,
        max_tokens=400,
        num_samples=2,
        seed=0,
    )
    end = Clock(0).times(melody)[-1]
    for part in parts:
        assert part[0] == tokenizer.bos_id and tokenizer.eos_id not in part and len(part) <= 401
        assert Clock(0).times(part)[-1] <= end + 200 + 100  # stops within the tail (+ one last time shift)


SMALL = [
    "--context",
    "48",
    "--source-context",
    "32",
    "--d-model",
    "32",
    "--layers",
    "1",
    "--heads",
    "2",
    "--batch-size",
    "2",
    "--device",
    "cpu",
]


def test_train_harmonize_evaluate_and_arrange_from_the_command_line(capsys, small_chorales, tmp_path):
    code, out, err = run(
        capsys,
        "train",
        "--model",
        "encoder-decoder",
        "--task",
        "harmonize",
        "--data",
        small_chorales,
        "--run",
        tmp_path / "h",
        "--steps",
        "3",
        "--eval-every",
        "3",
        "--precision",
        "bf16",
        "--max-transpose",
        "5",
        *SMALL,
    )
    assert code == 0, err
    saved = json.loads((tmp_path / "h" / "run.json").read_text())
    assert saved["architecture"] == "encoder-decoder" and saved["model"]["encoder_layers"] == 1
    code, out, _ = run(capsys, "evaluate", "--checkpoint", tmp_path / "h", "--data", small_chorales, "--split", "test")
    assert code == 0 and json.loads(out)["tokens"] > 0

    melody = symusic.Score(480)  # the first phrase of "Wachet auf" (hand-written), with a second voice
    track = symusic.Track("Tune")
    for start, length, pitch in [
        (0, 4, 67),
        (4, 4, 71),
        (8, 4, 74),
        (12, 4, 74),
        (16, 4, 74),
        (20, 8, 76),
        (28, 4, 74),
    ]:
        track.notes.append(symusic.Note(start * 120, length * 120, pitch, 80))
    melody.tracks.append(track)
    melody.dump_midi(str(tmp_path / "tune.mid"))
    code, out, err = run(
        capsys,
        "harmonize",
        "--checkpoint",
        tmp_path / "h",
        tmp_path / "tune.mid",
        "--samples",
        "2",
        "--out",
        tmp_path / "out",
    )
    assert code == 0, err
    written = symusic.Score(str(tmp_path / "out" / "harmony-2.mid"))
    assert [t.name for t in written.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert [(n.time // 120, n.pitch) for n in written.tracks[0].notes] == [
        (0, 67),
        (4, 71),
        (8, 74),
        (20, 76),
        (28, 74),
    ]  # held D5s merge into one
    assert (tmp_path / "out" / "harmony-1.png").stat().st_size > 10_000

    melody.tracks.append(track.copy())
    melody.tracks[1].name = "Echo"
    melody.dump_midi(str(tmp_path / "two.mid"))
    for args, message in [
        (
            ["harmonize", tmp_path / "two.mid"],
            "two.mid: 2 tracks have notes (Tune, Echo); choose the melody with --melody-track",
        ),
        (
            ["harmonize", tmp_path / "two.mid", "--melody-track", "Tune", "--transpose", "-20"],
            "outside the soprano range",
        ),
        (["accompany", tmp_path / "tune.mid"], "trained to harmonize, not to accompany"),
        (["generate"], "an encoder-decoder trained to harmonize; use `reprise harmonize`"),
    ]:
        code, _, err = run(capsys, args[0], "--checkpoint", tmp_path / "h", *args[1:], "--out", tmp_path / "bad")
        assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "bad").exists()


def test_train_infill_then_fill_two_bars_of_a_chorale(capsys, small_chorales, tmp_path):
    code, _, err = run(
        capsys,
        "train",
        "--model",
        "encoder-decoder",
        "--task",
        "infill",
        "--data",
        small_chorales,
        "--run",
        tmp_path / "i",
        "--steps",
        "2",
        "--eval-every",
        "2",
        *SMALL,
    )
    assert code == 0, err
    code, out, err = run(
        capsys,
        "infill",
        "--checkpoint",
        tmp_path / "i",
        "--primer-data",
        small_chorales,
        "--primer-piece",
        "1",
        "--bars",
        "3-4",
        "--samples",
        "1",
        "--out",
        tmp_path / "out",
    )
    assert code == 0, err
    piece = TokenDataset(small_chorales, "test").piece(1)
    tokenizer = TokenDataset(small_chorales, "test").tokenizer
    filled = tokenizer.encode_midi(tmp_path / "out" / "infill-1.mid")
    given, new = tokenizer.decode_grid(piece), tokenizer.decode_grid(filled)
    np.testing.assert_array_equal(new[:32], given[:32])
    np.testing.assert_array_equal(new[64 : len(given)], given[64:])
    for bars, message in [("1-40", "the piece has"), ("4-3", "first <= last"), ("x", "expected a bar (5)")]:
        code, _, err = run(
            capsys,
            "infill",
            "--checkpoint",
            tmp_path / "i",
            "--primer-data",
            small_chorales,
            "--bars",
            bars,
            "--out",
            tmp_path / "bad",
        )
        assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("command", ["harmonize", "accompany", "infill", "prepare-pairs"])
def test_every_arranging_command_documents_every_option(capsys, command):
    import click

    code, out, _ = run(capsys, command, "--help")
    assert code == 0 and f"Usage: reprise {command}" in out
    for param in cli.commands[command].params:
        if isinstance(param, click.Option):
            assert param.help and param.opts[0] in out
