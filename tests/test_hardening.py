"""Hostile and unlucky input (issue 16): damaged checkpoints, zip bombs, endless notes, hung parsers.

Each test reproduces one reported failure: a damaged checkpoint gives one line
naming the file; ``prepare`` reads every source within limits and skips, with
the reason, what is over them; the Markov chain decodes on any device; the
attention plot's memory grows with the notes kept, not the tokens squared.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import time
import tracemalloc
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import symusic
import torch
from torch.utils._pytree import tree_flatten

from reprise import RepriseError
from reprise.cli.main import main
from reprise.data import sources
from reprise.data.chorale_grid import ChoraleGrid
from reprise.data.dataset import read_manifest
from reprise.data.performance import Performance
from reprise.data.prepare import Limits, prepare
from reprise.models import build_model
from reprise.models.config import ModelConfig
from reprise.models.markov import MarkovChain, MarkovConfig
from reprise.training.checkpoint import (
    load_checkpoint,
    load_training_state,
    save_checkpoint,
)

FORK_ONLY = pytest.mark.skipif(multiprocessing.get_start_method() != "fork",
                               reason="the reader is patched in the parent and inherited by forked workers")


def melody(n_notes: int = 16, step: int = 240, tpq: int = 480) -> symusic.Score:
    """A short one-track melody: enough to be a usable piece."""
    score = symusic.Score(tpq)
    track = symusic.Track("melody", 0)
    for i in range(n_notes):
        track.notes.append(symusic.Note(i * step, step, 60 + (i * 5) % 12, 80))
    score.tracks.append(track)
    return score


def midi_bytes(score: symusic.Score) -> bytes:
    return score.dumps_midi()


def reasons(data: Path) -> dict[str, str]:
    return {s["name"]: s["reason"] for s in read_manifest(data)["skipped"]}


# -- 6: sizes are checked before reading; the main process reads no file ----------------------------------
def _zip_with(path: Path, members: dict[str, bytes | int]) -> Path:
    """A zip of ``members``: bytes as they are, an int as that many zero bytes (compressing to almost nothing)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            if isinstance(content, int):
                with archive.open(name, "w", force_zip64=True) as f:
                    for _ in range(content >> 20):
                        f.write(bytes(1 << 20))
            else:
                archive.writestr(name, content)
    return path


def test_a_zip_member_over_the_size_limit_is_skipped_unread(tmp_path):
    source = _zip_with(tmp_path / "bomb.zip", {"song.mid": midi_bytes(melody()), "bomb.mid": 8 << 20})
    assert source.stat().st_size < 100_000
    data = prepare(str(source), tmp_path / "data", "performance", workers=1, limits=Limits(max_file_mb=2))
    assert reasons(data) == {"bomb.mid": "8.0 MB, over the limit of 2 MB (--max-file-mb)"}
    assert [p["name"] for p in read_manifest(data)["pieces"]] == ["song.mid"]


def test_a_folder_file_over_the_size_limit_is_skipped(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "song.mid").write_bytes(midi_bytes(melody()))
    (tmp_path / "in" / "huge.mid").write_bytes(bytes(3 << 20))
    data = prepare(str(tmp_path / "in"), tmp_path / "data", "performance", workers=1, limits=Limits(max_file_mb=1))
    assert reasons(data) == {"huge.mid": "3.0 MB, over the limit of 1 MB (--max-file-mb)"}


def test_listing_a_zip_reads_none_of_its_members(tmp_path):
    source = _zip_with(tmp_path / "big.zip", {"a.mid": 24 << 20, "b.krn": 24 << 20})
    tracemalloc.start()
    try:
        items, _ = sources.list_source(str(source))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [i.name for i in items] == ["a.mid", "b.krn"]
    assert peak < 2 << 20, f"listing allocated {peak / 2**20:.0f} MB"  # the members are 48 MB


def test_a_member_is_read_in_chunks_never_past_the_limit(tmp_path):
    source = _zip_with(tmp_path / "big.zip", {"a.mid": 32 << 20})
    ref = sources.FileRef(str(source), "a.mid")
    assert len(ref.read(64 << 20)) == 32 << 20
    tracemalloc.start()
    try:  # as if the zip understated the member's size
        with zipfile.ZipFile(source) as archive, archive.open("a.mid") as f, \
                pytest.raises(RepriseError, match=r"^at least 5.0 MB, over the limit of 4 MB"):
            sources._read_bounded(f, 4 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"reading allocated {peak / 2**20:.0f} MB"


# -- 7: pieces too long to be music are skipped, with the reason ----------------------------------------
def test_a_note_held_for_days_and_a_piece_over_the_token_limit_are_skipped(tmp_path):
    held = melody(4, tpq=960)
    held.tracks[0].notes.append(symusic.Note(0, 2**28, 48, 80))  # 2^28 ticks: 38.8 hours at 120 bpm
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "held.mid").write_bytes(midi_bytes(held))
    (tmp_path / "in" / "short.mid").write_bytes(midi_bytes(melody(8)))
    (tmp_path / "in" / "long.mid").write_bytes(midi_bytes(melody(200)))
    data = prepare(str(tmp_path / "in"), tmp_path / "data", "performance", workers=1,
                   limits=Limits(max_tokens=300))
    got = reasons(data)
    assert got["held.mid"] == "lasts 2,330.2 minutes, over the limit of 60 (--max-minutes)"
    assert got["long.mid"] == "603 tokens, over the limit of 300 (--max-tokens)"  # BOS VELOCITY (ON SHIFT OFF) x 200 EOS
    assert [p["name"] for p in read_manifest(data)["pieces"]] == ["short.mid"]


def test_prepare_takes_the_limits_on_the_command_line(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.mid").write_bytes(midi_bytes(melody(8)))
    (tmp_path / "in" / "b.mid").write_bytes(midi_bytes(melody(40, step=480)))  # 10 s at 120 bpm
    assert main(["prepare", str(tmp_path / "in"), "--out", str(tmp_path / "data"), "--tokenizer", "performance",
                 "--max-minutes", "0.1", "--max-tokens", "1000", "--max-file-mb", "1", "--timeout", "30"]) == 0
    assert "skipped 1" in capsys.readouterr().out
    assert reasons(tmp_path / "data") == {"b.mid": "lasts 0.3 minutes, over the limit of 0.1 (--max-minutes)"}


# -- a hung parser is stopped, its worker replaced ---------------------------------------------------------
@FORK_ONLY
def test_a_hung_parser_is_stopped_and_its_worker_replaced(tmp_path, monkeypatch):
    read_midi = sources.READERS["midi"]
    hang = midi_bytes(melody(5))

    def hang_on_one(data: bytes) -> symusic.Score:
        while data == hang:
            time.sleep(1)
        return read_midi(data)

    monkeypatch.setitem(sources.READERS, "midi", hang_on_one)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a-hangs.mid").write_bytes(hang)
    for n in (6, 7, 8):
        (tmp_path / "in" / f"b{n}.mid").write_bytes(midi_bytes(melody(n)))
    started = time.monotonic()
    data = prepare(str(tmp_path / "in"), tmp_path / "data", "performance", workers=1, limits=Limits(timeout=1))
    assert time.monotonic() - started < 30
    assert reasons(data) == {"a-hangs.mid": "timed out after 1 s (--timeout); its worker was stopped"}
    assert sorted(p["name"] for p in read_manifest(data)["pieces"]) == ["b6.mid", "b7.mid", "b8.mid"]


# -- 9: skip reasons, the Markov chain's device, the attention plot's memory ------------------------------
def test_midi_errors_keep_their_whole_reason(tmp_path, monkeypatch):
    data = midi_bytes(melody())
    with pytest.raises(RepriseError) as caught:  # "MiniMidi: Invalid chunk length 156 (remaining bytes after header: 18): iostream error"
        sources.READERS["midi"](data[:40])
    assert str(caught.value).startswith("not a readable MIDI file (Invalid chunk length ")
    assert str(caught.value).endswith("remaining bytes after header: 18))"), str(caught.value)

    def no_colon(data: bytes) -> symusic.Score:
        raise RuntimeError("bad file")

    monkeypatch.setattr(sources, "symusic", SimpleNamespace(Score=SimpleNamespace(from_midi=no_colon)))
    with pytest.raises(RepriseError, match=r"^not a readable MIDI file \(bad file\)$"):
        sources.READERS["midi"](data)
