"""An accompanist that reads its melody as features beside each token (issue 27)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import symusic
import torch

from conftest import SMALL_MODEL, pop909_pairs, run
from reprise.api import load
from reprise.data.dataset import TokenDataset
from reprise.data.melody_condition import (
    COMING,
    KEY,
    N_FEATURES,
    NEAR,
    NEXT,
    SOUNDING,
    MelodyConditioned,
    MelodyFollower,
    MelodyPairs,
    features,
    times_after,
)
from reprise.data.pairs import Task
from reprise.data.performance import NOTE_ON, TIME_SHIFT, VOCAB_SIZE, Performance
from reprise.data.sources import select_tracks
from reprise.errors import RepriseError
from reprise.evaluation.nll import nll_of
from reprise.generation.conditional import accompany
from reprise.generation.generate import generate
from reprise.models import build_model
from reprise.models.checkpoint import init_weights, save_checkpoint
from reprise.models.config import ModelConfig
from reprise.models.pretrained import trained_task

NOTES = np.array([[0, 50, 60], [50, 100, 64], [100, 300, 67]])  # C, E, G: half a second, half, two seconds


def tiny(condition: int = N_FEATURES, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(
        ModelConfig(vocab_size=VOCAB_SIZE, context=64, d_model=16, n_layers=2, n_heads=2, condition=condition)
    ).eval()


def test_the_features_say_what_the_melody_does_at_the_clock_after_each_token():
    ids = np.array([1, NOTE_ON + 48, TIME_SHIFT + 49, NOTE_ON + 52, TIME_SHIFT + 29, TIME_SHIFT + 19])
    times = times_after(ids)
    np.testing.assert_array_equal(times, [0, 0, 50, 50, 80, 100])
    f = features(times, NOTES)
    assert np.flatnonzero(f[0, SOUNDING : SOUNDING + 128]).tolist() == [60]  # C sounds from 0
    assert np.flatnonzero(f[2, SOUNDING : SOUNDING + 128]).tolist() == [64]  # at 0.5 s C has ended, E begins
    assert np.flatnonzero(f[0, COMING : COMING + 128]).tolist() == [64]  # E starts within half a second
    assert np.flatnonzero(f[4, COMING : COMING + 128]).tolist() == [67]
    assert np.flatnonzero(f[0, NEAR : NEAR + 12]).tolist() == [0, 4, 7]  # the pitch classes around
    assert f[0, NEAR : NEAR + 12].sum() == pytest.approx(1)  # each group weighs like one embedding row
    assert f[0, KEY + 7] == pytest.approx(2 / 3) and f[0, KEY] == pytest.approx(1 / 6)  # G 200 steps, C 50
    assert np.flatnonzero(f[4, NEXT:])[0] == (100 - 80 - 1) // 5  # the next onset 0.2 s away
    assert f[5, NEXT + 20] == 1  # after the last onset: none to come


def test_a_zero_condition_is_the_model_without_one_and_init_keeps_it_so(tmp_path):
    plain = tiny(condition=0)
    save_checkpoint(tmp_path / "plain", plain, Performance())
    conditioned = tiny(seed=1)
    init_weights(conditioned, tmp_path / "plain")
    ids = torch.randint(3, VOCAB_SIZE, (2, 40))
    given = torch.rand(2, 40, N_FEATURES)
    torch.testing.assert_close(conditioned(ids, condition=given), plain(ids))  # grown: starts where it was
    with torch.no_grad():
        conditioned.condition.weight.normal_()
    assert not torch.allclose(conditioned(ids, condition=given), plain(ids))
    with pytest.raises(RepriseError, match="condition features"):
        conditioned(ids)


def test_cached_decoding_with_a_condition_equals_reading_the_whole_stream():
    model = tiny()
    with torch.no_grad():
        model.condition.weight.normal_(std=0.5)
    follower, tokenizer = MelodyFollower(NOTES), MelodyConditioned()
    cached = generate(model, tokenizer, np.array([1]), 50, 2, seed=3, condition=follower)
    uncached = generate(model, tokenizer, np.array([1]), 50, 2, seed=3, condition=follower, use_cache=False)
    np.testing.assert_array_equal(cached, uncached)
    # the features of a token depend on the tokens up to it only: what follows cannot change them
    row = cached[0]
    early = follower(row[None, :20], 0)
    np.testing.assert_array_equal(early, follower(row[None], 0)[:, :20])


def test_scoring_reads_the_features_of_each_window():
    model = tiny()
    with torch.no_grad():
        model.condition.weight.normal_(std=0.5)
    ids = np.r_[1, np.tile([NOTE_ON + 60, TIME_SHIFT + 9, NOTE_ON + 128 + 60], 40)]
    given = features(times_after(ids), NOTES)
    windows = nll_of(model, [ids], 64, stride=16, condition=lambda i: given)
    with torch.no_grad():
        logits = model(torch.from_numpy(ids[None, :64]), condition=torch.from_numpy(given[None, :64]))
    first = torch.nn.functional.cross_entropy(logits[0, :-1], torch.from_numpy(ids[1:64]), reduction="sum").item()
    whole = nll_of(model, [ids[:64]], 64, condition=lambda i: given)
    assert whole.total == pytest.approx(first, rel=1e-4) and windows.tokens == len(ids) - 1
    assert nll_of(model, [ids[:64]], 64, condition=lambda i: given * 0).total != pytest.approx(first, rel=1e-4)


def test_an_accompaniment_ends_with_the_melody_and_never_writes_a_control():
    melody = np.r_[1, np.tile([NOTE_ON + 67, TIME_SHIFT + 49, NOTE_ON + 128 + 67], 6), 2]  # 3 s of melody
    parts = accompany(tiny(), Task("accompany", MelodyConditioned()), melody, max_tokens=600, num_samples=2)
    for part in parts:
        assert part[0] == 1 and part.max() < VOCAB_SIZE and 2 not in part
        assert times_after(part)[-1] <= 300 + 200 + 100  # within the tail (+ one last time shift)


def test_train_evaluate_and_accompany_from_the_command_line(capsys, tmp_path):
    folder, pairs = pop909_pairs(capsys, tmp_path)
    data = MelodyPairs(pairs, "train")
    (inputs, given), targets = data.batch(np.random.default_rng(0), 3, 128)
    assert given.shape == (3, 128, N_FEATURES) and inputs.max() < VOCAB_SIZE and targets.max() < VOCAB_SIZE
    args = ["train", "--task", "accompany", "--data", pairs, "--steps", "2", "--eval-every", "2", "--device", "cpu"]
    code, _, err = run(capsys, *args, "--anticipation", "1", "--run", tmp_path / "no", *SMALL_MODEL)
    assert code != 0 and "--melody anticipation" in err
    code, _, err = run(capsys, *args, "--run", tmp_path / "acc", *SMALL_MODEL)
    assert code == 0, err
    model, tokenizer = load(tmp_path / "acc")
    assert model.config.condition == N_FEATURES and trained_task(model, tokenizer) == "accompany"
    code, out, err = run(capsys, "evaluate", "--checkpoint", tmp_path / "acc", "--data", pairs, "--split", "train")
    assert code == 0, err
    target = TokenDataset(pairs / "target", "train")
    assert json.loads(out)["tokens"] == target.n_tokens() - len(target)  # the same tokens as a piano model's
    out = tmp_path / "out"
    args = ["accompany", "--checkpoint", tmp_path / "acc", folder / "001.mid", "--max-tokens", "200", "--out", out]
    code, _, err = run(capsys, *args, "--device", "cpu")
    assert code == 0, err
    written = symusic.Score(str(out / "accompaniment-1.mid"))
    given = select_tracks(symusic.Score(str(folder / "001.mid")), ("MELODY",))
    assert len(written.tracks) == 2 and len(written.tracks[0].notes) == len(given.tracks[0].notes)


def test_transposition_moves_the_melody_with_its_accompaniment(capsys, tmp_path):
    _, pairs = pop909_pairs(capsys, tmp_path, ("001.mid",))
    data = MelodyPairs(pairs, "train")
    ids, notes = data.piece(0)[:300], data.melodies[0]
    shifts = set()
    for seed in range(8):
        moved, moved_notes = data._transposed(ids, notes, 5, np.random.default_rng(seed))
        shift = int((moved_notes - notes)[0, 2])
        assert (moved_notes[:, :2] == notes[:, :2]).all() and abs(shift) <= 5
        np.testing.assert_array_equal(moved, Performance().transposed(ids, shift))
        shifts.add(shift)
    assert len(shifts) > 2
