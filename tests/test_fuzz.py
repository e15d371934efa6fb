"""Fuzzing with Hypothesis: generated scores, mutated music files, damaged checkpoints.

Three properties, each over inputs Hypothesis makes up:

- every tokenizer either refuses a score with a :class:`RepriseError` or encodes
  it so that decoding, writing MIDI, reading it and encoding again gives the same
  ids. What a tokenizer loses happens once, in the first encoding, and is its
  documented quantisation: performance events keep 10 ms steps and 32 velocity
  bins of the sustained notes; the melody grid keeps the highest note starting at
  each 16th; the chorale grid four voices on 16ths; REMI, TSD and MIDI-like
  miditok's grid of the merged tracks. Decoding never invents a pitch;
- ``prepare`` on randomly mutated bytes of real MIDI (POP909) and **kern (Essen)
  files never raises, never loses a worker and never reaches its timeout;
- loading a checkpoint with any of its files damaged either works or raises a
  one-line :class:`RepriseError` naming the damaged file.

Sizes are bounded (``max_examples``) so that the set runs in well under a minute
on two cores; ``REPRISE_FUZZ_SCALE=20`` runs twenty times as many cases.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import symusic
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import SHARED, shared
from reprise.data.chorale_grid import ChoraleGrid
from reprise.data.dataset import read_manifest
from reprise.data.melody_grid import MelodyGrid
from reprise.data.miditok_adapter import REMI, TSD, MIDILike
from reprise.data.performance import Performance
from reprise.data.prepare import CRASHED, Limits, prepare
from reprise.errors import RepriseError
from reprise.models import build_model
from reprise.models.checkpoint import load_checkpoint, save_checkpoint
from reprise.models.config import ModelConfig
from reprise.models.markov import MarkovChain, MarkovConfig
from reprise.training.checkpoint import load_training_state, save_training_checkpoint

SCALE = int(os.environ.get("REPRISE_FUZZ_SCALE", "1"))


def fuzz(examples: int):
    """Settings for one target: ``examples`` cases (times the scale), no per-case deadline on a busy machine."""
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- every tokenizer round-trips generated scores ------------------------------------------------------
@st.composite
def scores(
    draw, tracks: tuple[int, int] = (1, 5), drums: bool = True, min_notes: int = 0, max_notes: int = 20
) -> symusic.Score:
    """Scores at any resolution, with tempo changes, drum tracks, sustain pedals and notes anywhere;
    half of them keep to the piano's range, which every tokenizer accepts."""
    tpq = draw(st.sampled_from([24, 96, 220, 480, 960]))
    length = tpq * 16  # four bars of 4/4
    low, high = draw(st.sampled_from([(0, 127), (36, 84)]))
    score = symusic.Score(tpq)
    for time in sorted(draw(st.lists(st.integers(0, length), max_size=3))):
        score.tempos.append(symusic.Tempo(time, draw(st.floats(30, 300))))
    for i in range(draw(st.integers(*tracks))):
        track = symusic.Track(f"t{i}", draw(st.integers(0, 127)), drums and i > 0 and draw(st.integers(0, 4)) == 0)
        for _ in range(draw(st.integers(min_notes, max_notes))):
            track.notes.append(
                symusic.Note(
                    draw(st.integers(0, length)),
                    draw(st.integers(0, tpq * 4)),
                    draw(st.integers(low, high)),
                    draw(st.integers(1, 127)),
                )
            )
        for time in sorted(draw(st.lists(st.integers(0, length), max_size=2))):
            track.pedals.append(symusic.Pedal(time, draw(st.integers(1, tpq * 4))))
        score.tracks.append(track)
    return score


TOKENIZERS = {
    "performance": Performance,
    "melody-grid": MelodyGrid,
    "chorale-grid": ChoraleGrid,
    "remi": REMI,
    "tsd": TSD,
    "midilike": MIDILike,
}


def _pitches(score: symusic.Score) -> set[int]:
    return {note.pitch for track in score.tracks if not track.is_drum for note in track.notes}


@pytest.mark.parametrize("name", TOKENIZERS)
@fuzz(40)
@given(data=st.data())
def test_every_tokenizer_round_trips_generated_scores(name, data):
    tokenizer = TOKENIZERS[name]()
    voices = {"tracks": (4, 4), "drums": False, "min_notes": 1} if name == "chorale-grid" else {}
    score = data.draw(scores(**voices), label="score")
    try:
        ids = tokenizer.encode_score(score)
    except RepriseError as err:  # with a reason: no notes, pitches out of range, not four voices
        event(f"refused: {re.sub(r'[0-9.]+', 'N', str(err))}")
        return
    event("encoded")
    assert ids[0] == tokenizer.bos_id and ids[-1] == tokenizer.eos_id
    assert ((ids >= 0) & (ids < tokenizer.vocab_size)).all()
    decoded = symusic.Score.from_midi(tokenizer.decode(ids).dumps_midi())
    assert _pitches(decoded) <= _pitches(score)
    np.testing.assert_array_equal(tokenizer.encode_score(decoded), ids)


# -- prepare on mutated real files ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def seed_files() -> dict[str, bytes]:
    """Three POP909 songs and three Essen folk songs, the material that mutations start from."""
    import music21.converter  # noqa: F401  (once here, not in every forked worker)

    files = {f"{n:03d}.mid": (shared(SHARED / "pop909") / f"{n:03d}.mid").read_bytes() for n in (1, 2, 9)}
    with zipfile.ZipFile(shared(SHARED / "erk" / "erk.zip")) as archive:
        for name in sorted(n for n in archive.namelist() if n.endswith(".krn"))[:3]:
            files[Path(name).name] = archive.read(name)
    return files


@st.composite
def mutated(draw, seeds: dict[str, bytes]) -> tuple[str, bytes]:
    """A seed file with bytes overwritten, runs inserted or deleted, and perhaps cut short."""
    name = draw(st.sampled_from(sorted(seeds)))
    data = bytearray(seeds[name])
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["overwrite", "insert", "delete"]))
        run = draw(st.binary(min_size=1, max_size=8))
        if kind == "overwrite":
            data[at : at + len(run)] = run
        elif kind == "insert":
            data[at:at] = run
        else:
            del data[at : at + len(run)]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return name, bytes(data)


@fuzz(30)
@given(data=st.data())
def test_prepare_survives_mutated_midi_and_kern(seed_files, data):
    files = data.draw(st.lists(mutated(seed_files), min_size=1, max_size=4), label="files")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for i, (name, content) in enumerate(files):
            (folder / f"{i}-{name}").write_bytes(content)
        try:
            out = prepare(str(folder), Path(tmp) / "data", workers=1, limits=Limits(timeout=30))
        except RepriseError as err:
            assert "no usable pieces" in str(err) and "\n" not in str(err), str(err)
            event("no usable pieces")
            return
        manifest = read_manifest(out)
    assert len(manifest["pieces"]) + len(manifest["skipped"]) == len(files)
    for skipped in manifest["skipped"]:
        assert skipped["reason"] != CRASHED and not skipped["reason"].startswith("timed out"), skipped
        event(f"skipped: {re.sub(r'[0-9]+', 'N', skipped['reason'])[:60]}")
    event(f"{len(manifest['pieces'])} of {len(files)} files kept")


# -- loading damaged checkpoints --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A tiny transformer with its training state, and a trained Markov chain."""
    tokenizer = Performance()
    root = tmp_path_factory.mktemp("checkpoints")
    model = build_model(ModelConfig(vocab_size=tokenizer.vocab_size, context=16, d_model=16, n_layers=1, n_heads=2))
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 4, dtype=torch.long)).sum().backward()
    optimizer.step()
    save_training_checkpoint(root / "transformer", model, tokenizer, {"step": 1}, optimizer)
    chain = MarkovChain(MarkovConfig(vocab_size=tokenizer.vocab_size, order=2))
    chain.fit([np.r_[1, np.random.default_rng(0).integers(3, 391, 200), 2]])
    save_checkpoint(root / "markov", chain, tokenizer)
    return {"transformer": root / "transformer", "markov": root / "markov"}


@st.composite
def damage(draw, checkpoints: dict[str, Path]) -> tuple[str, str, bytes]:
    """A checkpoint, one of its files, and that file's bytes overwritten, cut or extended."""
    kind = draw(st.sampled_from(sorted(checkpoints)))
    name = draw(st.sampled_from(sorted(p.name for p in checkpoints[kind].iterdir())))
    data = bytearray((checkpoints[kind] / name).read_bytes())
    how = draw(st.sampled_from(["overwrite", "cut", "extend", "header"]))
    if how == "cut":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif how == "extend":
        data += draw(st.binary(min_size=1, max_size=64))
    else:  # overwrite anywhere, or among the first bytes: safetensors' header, JSON's structure
        end = len(data) if how == "overwrite" else min(len(data), 200)
        for _ in range(draw(st.integers(1, 6))):
            at = draw(st.integers(0, end - 1))
            data[at] = draw(st.integers(0, 255))
    return kind, name, bytes(data)


@fuzz(150)
@given(data=st.data())
def test_loading_a_damaged_checkpoint_works_or_names_the_file(checkpoints, data):
    kind, name, content = data.draw(damage(checkpoints), label="damage")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / kind
        shutil.copytree(checkpoints[kind], directory)
        (directory / name).write_bytes(content)
        try:
            model, _ = load_checkpoint(directory)
            if (directory / "training.json").is_file():
                load_training_state(directory, torch.optim.AdamW(model.parameters()))
            event(f"{name}: loaded")
        except RepriseError as err:
            message = str(err)
            assert "\n" not in message, message
            assert any(str(directory / f) in message for f in os.listdir(directory)), message
            event(f"{name}: refused")
