"""Fill in the middle with a decoder-only model: the layout round-trips, only the middle is scored, a tiny
model learns, and `reprise train --task infill` / `reprise infill` keep everything outside the span."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F

from conftest import SMALL_MODEL, run
from reprise.data.chorale_grid import SILENCE, ChoraleGrid
from reprise.data.dataset import EncodedPiece, TokenDataset, write_dataset
from reprise.data.fill import LANDING_BARS, FillDataset, FillTokenizer
from reprise.data.melody_grid import FIRST_PITCH, HOLD, REST, MelodyGrid
from reprise.data.pairs import STEPS_PER_BAR, Task
from reprise.errors import RepriseError
from reprise.evaluation.nll import nll_of
from reprise.generation.conditional import infill
from reprise.models.config import ModelConfig
from reprise.models.transformer import MusicTransformer

RANGES = [(60, 81), (53, 74), (48, 69), (36, 62)]


def melody(n_bars: int, seed: int) -> np.ndarray:
    """A melody-grid piece of ``n_bars`` bars: a rising and falling line of quarter notes, eighth rests."""
    rng = np.random.default_rng(seed)
    start = 60 + int(rng.integers(0, 5)) - 21 + FIRST_PITCH
    notes = [start + (step % 8 if step % 16 < 8 else 8 - step % 8) for step in range(4 * n_bars)]
    return np.r_[1, np.concatenate([[n, HOLD, REST, REST] for n in notes]), 2]


def chorale(n_steps: int) -> np.ndarray:
    """A chorale-grid piece (voice ranges :data:`RANGES`) of ``n_steps`` steps."""
    soprano = np.array([67, 69, 71, 72, 71, 69] * n_steps)[:n_steps]
    grid = np.stack([soprano, soprano - 7, soprano - 12, soprano - 24], 1)
    grid[5::7, 1] = SILENCE
    return ChoraleGrid(voice_ranges=RANGES).encode_grid(grid)


@pytest.fixture(scope="module")
def melodies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A toy melody-grid dataset: 12 training, 3 validation and 3 test pieces of 6 to 9 bars."""
    pieces = [
        EncodedPiece(f"{split}/{i}", melody(6 + i % 4, i), split)
        for split, n in (("train", 12), ("valid", 3), ("test", 3))
        for i in range(n)
    ]
    return write_dataset(tmp_path_factory.mktemp("melodies") / "data", pieces, MelodyGrid(), "toy", [])


@pytest.mark.parametrize("ids", [melody(8, 0), chorale(96)], ids=["melody", "chorale"])
def test_the_stream_round_trips_outside_and_inside_the_span(ids):
    base = MelodyGrid() if len(ids) < 200 else ChoraleGrid(voice_ranges=RANGES)
    tokenizer, frame = FillTokenizer(base), base.frame
    assert tokenizer.layout == ("landing" if isinstance(base, ChoraleGrid) else "spm")
    span = (32, 64)
    first, last = span[0] * frame, span[1] * frame
    body = ids[1:-1]
    kept = len(body) if tokenizer.layout == "spm" else last + LANDING_BARS * STEPS_PER_BAR * frame  # landing only
    stream = tokenizer.arrange(ids, span, 10_000)
    before, after, middle = tokenizer.parts(stream)
    np.testing.assert_array_equal(before, body[:first])
    np.testing.assert_array_equal(middle, body[first:last])
    np.testing.assert_array_equal(after, body[last:kept])
    np.testing.assert_array_equal(tokenizer.in_order(stream), ids[: 1 + kept])
    # FILL once per bar of the gap (the model knows the middle's length), MIDDLE once, each a whole frame
    assert (stream == tokenizer.fill_id).sum() == 2 * frame and (stream == tokenizer.middle_id).sum() == frame
    # the layout, and every grid token keeps its voice position: index - 1 modulo the frame
    grid = np.flatnonzero(stream < tokenizer.fill_id)[1:]
    spm = tokenizer.layout == "spm"
    sides = (np.arange(last, kept), np.arange(first)) if spm else (np.arange(first), np.arange(last, kept))
    order = np.r_[sides[0], sides[1], np.arange(first, last)]
    np.testing.assert_array_equal(stream[grid], body[order])
    np.testing.assert_array_equal((grid - 1) % frame, order % frame)
    # cut to a context: the middle whole, the steps next to the gap on each side, whole frames
    cut = tokenizer.arrange(ids, span, 48 * frame + 1)
    assert len(cut) <= 48 * frame + 1
    before, after, middle = tokenizer.parts(cut)
    np.testing.assert_array_equal(middle, body[first:last])
    np.testing.assert_array_equal(before, body[first - len(before) : first])
    np.testing.assert_array_equal(after, body[last : last + len(after)])
    assert len(before) % frame == len(after) % frame == 0 and len(before) > 0 and len(after) > 0


def test_a_model_saved_with_an_older_layout_is_refused_with_a_clear_error():
    tokenizer = FillTokenizer(ChoraleGrid(voice_ranges=RANGES))
    assert FillTokenizer.from_json(tokenizer.to_json()).layout == "landing"
    old = {key: value for key, value in tokenizer.to_json().items() if key != "layout"}  # saved before layouts
    with pytest.raises(RepriseError, match="'spm' layout.*train it again"):
        FillTokenizer.from_json(old)
    melody_model = {key: value for key, value in FillTokenizer(MelodyGrid()).to_json().items() if key != "layout"}
    assert FillTokenizer.from_json(melody_model).layout == "spm"  # the melody grid's layout did not change


def test_only_the_middle_is_scored():
    tokenizer = FillTokenizer(MelodyGrid())
    ids = melody(6, 1)
    stream = tokenizer.arrange(ids, (16, 48), 10_000)
    scored = tokenizer.scored(stream)
    assert scored.sum() == 32 and scored[-32:].all()
    assert tokenizer.scored(ids) is None  # a plain piece counts whole
    torch.manual_seed(0)
    model = MusicTransformer(ModelConfig(vocab_size=tokenizer.vocab_size, context=128, d_model=16, n_layers=1)).eval()
    nll = nll_of(model, [stream], 128, scored=tokenizer.scored)
    with torch.no_grad():
        logits = model(torch.from_numpy(stream[:-1])[None])[0]
    expected = F.cross_entropy(logits[-32:], torch.from_numpy(stream[-32:]), reduction="sum").item()
    assert nll.tokens == 32 and nll.total == pytest.approx(expected, rel=1e-4)


def test_the_tokenizer_survives_json_and_decodes_a_stream_in_time_order():
    from reprise.data.tokenizer import tokenizer_from_json

    tokenizer = FillTokenizer(ChoraleGrid(voice_ranges=RANGES))
    again = tokenizer_from_json(tokenizer.to_json())
    assert isinstance(again, FillTokenizer) and again.to_json() == tokenizer.to_json() and again.frame == 4
    ids = chorale(48)  # the bar after the gap is the last: the landing bar keeps the whole piece
    stream = tokenizer.arrange(ids, (16, 32), 10_000)
    assert tokenizer.decode(stream).tracks[0].notes == tokenizer.base.decode(ids).tracks[0].notes
    assert not tokenizer.allowed_next(len(stream))[[tokenizer.fill_id, tokenizer.middle_id]].any()


def test_a_tiny_model_learns_to_fill_the_middle(melodies):
    data = FillDataset(melodies, "train", 96)
    torch.manual_seed(0)
    model = MusicTransformer(ModelConfig(vocab_size=data.tokenizer.vocab_size, context=96, d_model=32, n_layers=1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    valid = FillDataset(melodies, "valid", 96)
    pieces = [valid.piece(i) for i in range(len(valid))]
    before = nll_of(model, pieces, 96, scored=valid.tokenizer.scored).per_token
    for step in range(40):
        inputs, targets = (torch.from_numpy(a) for a in data.batch(np.random.default_rng(step), 4, 96))
        loss = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten(), ignore_index=0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = nll_of(model, pieces, 96, scored=valid.tokenizer.scored)
    assert after.tokens == 3 * 32  # two bars of each validation piece
    assert after.per_token < 0.6 * before


@pytest.mark.parametrize("ids", [melody(8, 2), chorale(96)], ids=["melody", "chorale"])
def test_a_decoder_only_infill_keeps_everything_outside_the_span(ids):
    base = MelodyGrid() if len(ids) < 200 else ChoraleGrid(voice_ranges=RANGES)
    tokenizer = FillTokenizer(base)
    torch.manual_seed(0)
    context = 40 * base.frame  # the bars around a 16-step gap are cut; 96 steps do not fit
    model = MusicTransformer(ModelConfig(vocab_size=tokenizer.vocab_size, context=context, d_model=16, n_layers=1))
    first, last = 1 + 32 * base.frame, 1 + 48 * base.frame
    pieces = infill(model, Task("infill", base), ids, (32, 48), num_samples=3, seed=1)
    for piece in pieces:
        assert len(piece) == len(ids)
        np.testing.assert_array_equal(np.delete(piece, np.s_[first:last]), np.delete(ids, np.s_[first:last]))
        assert (piece[first:last] > base.eos_id).all() and (piece[first:last] < base.vocab_size).all()
    if isinstance(base, ChoraleGrid):  # the voices stay in their ranges: the layout keeps voice positions
        grid = base.decode_grid(pieces[0])[32:48]
        for voice, (low, high) in enumerate(RANGES):
            sounding = grid[:, voice][grid[:, voice] != SILENCE]
            assert ((sounding >= low) & (sounding <= high)).all()
    with pytest.raises(RepriseError, match="more than this model's context"):
        infill(model, Task("infill", base), ids, (0, 96))


def test_train_and_infill_from_the_command_line(capsys, melodies, tmp_path):
    args = ["train", "--task", "infill", "--data", melodies, "--run", tmp_path / "fim", "--device", "cpu"]
    code, _, err = run(capsys, *args, "--steps", "2", "--eval-every", "2", *SMALL_MODEL[:1], "64", *SMALL_MODEL[2:])
    assert code == 0, err
    code, out, err = run(capsys, "evaluate", "--checkpoint", tmp_path / "fim", "--data", melodies, "--split", "test")
    assert code == 0 and json.loads(out)["tokens"] == 3 * 32, err  # the middles only: two bars of each piece
    common = ["infill", "--checkpoint", tmp_path / "fim", "--primer-data", melodies, "--primer-piece", "1"]
    code, _, err = run(capsys, *common, "--bars", "3-4", "--samples", "2", "--out", tmp_path / "out")
    assert code == 0, err
    given = TokenDataset(melodies, "test").piece(1)
    for n in (1, 2):
        filled = MelodyGrid().encode_midi(tmp_path / "out" / f"infill-{n}.mid")
        np.testing.assert_array_equal(filled[:33], given[:33])  # the first two bars
        # the piece may end with a rest that MIDI does not keep, so compare what the file holds
        np.testing.assert_array_equal(filled[65:-1], given[65 : len(filled) - 1])
    code, _, err = run(capsys, *common, "--bars", "5-40", "--out", tmp_path / "bad")
    assert code == 1 and "the piece has" in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run(capsys, "train", "--task", "harmonize", "--data", melodies, "--run", tmp_path / "h")
    assert code != 0 and "--task" in err


def test_a_plain_grid_model_initialises_a_fill_in_the_middle_model(capsys, melodies, tmp_path):
    small = [*SMALL_MODEL[:1], "64", *SMALL_MODEL[2:]]
    args = ["--steps", "1", "--eval-every", "1", "--device", "cpu"]
    code, _, err = run(capsys, "train", "--data", melodies, "--run", tmp_path / "plain", *args, *small)
    assert code == 0, err
    code, _, err = run(
        capsys,
        "train",
        "--task",
        "infill",
        "--data",
        melodies,
        "--run",
        tmp_path / "fim",
        "--init",
        tmp_path / "plain",
        *args,
    )
    assert code == 0, err
    code, _, err = run(capsys, "infill", "--checkpoint", tmp_path / "plain", "--primer-data", melodies, "--bars", "2")
    assert code == 1 and "`reprise train --task infill`" in err and len(err.strip().splitlines()) == 1, err
    plain = safetensors.torch.load_file(tmp_path / "plain" / "best" / "model.safetensors")
    grown = safetensors.torch.load_file(tmp_path / "fim" / "last" / "model.safetensors")
    name = next(k for k, v in plain.items() if v.shape[0] == MelodyGrid().vocab_size)
    assert grown[name].shape[0] == MelodyGrid().vocab_size + 2  # FILL and MIDDLE appended
