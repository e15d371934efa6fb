"""Anticipation: the melody interleaved ahead of its accompaniment in one stream (issue 27)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import symusic
import torch

from conftest import SHARED, SMALL_MODEL, pop909_pairs, run, shared
from reprise.api import load
from reprise.data.anticipation import (
    ANTICIPATION,
    AT,
    DURATION,
    PITCH,
    Anticipated,
    AnticipatedPairs,
    MelodyAhead,
    accompaniment_of,
    clock,
    controls_of,
    interleave,
    melody_notes,
)
from reprise.data.dataset import TokenDataset
from reprise.data.pairs import Task
from reprise.data.performance import NOTE_ON, TIME_SHIFT, VOCAB_SIZE, Performance
from reprise.data.sources import select_tracks
from reprise.data.tokenizer import tokenizer_from_json
from reprise.errors import RepriseError
from reprise.evaluation.music_stats import median_duration, notes_at_onset
from reprise.evaluation.nll import nll_of
from reprise.evaluation.pieces import piece_from_score
from reprise.generation.conditional import accompany
from reprise.models import build_model
from reprise.models.checkpoint import init_weights, save_checkpoint
from reprise.models.config import ModelConfig
from reprise.models.pretrained import trained_task

POP909 = SHARED / "pop909"


def song(name: str = "001.mid") -> tuple[np.ndarray, np.ndarray]:
    """A POP909 song's melody and piano accompaniment as performance events."""
    score = symusic.Score(str(shared(POP909 / name)))
    return tuple(Performance().encode_score(select_tracks(score, (t,))) for t in ("MELODY", "PIANO"))


def test_the_stream_keeps_the_accompaniment_and_carries_every_melody_note():
    melody, piano = song()
    notes = melody_notes(melody)
    stream = interleave(piano, notes)
    np.testing.assert_array_equal(accompaniment_of(stream), piano)
    carried = np.array(controls_of(stream))
    np.testing.assert_array_equal(carried[:, [0, 2]], notes[:, [0, 2]])  # onsets exact, pitches exact
    length = carried[:, 1] - carried[:, 0]
    assert np.all((length >= np.minimum(notes[:, 1] - notes[:, 0], 200)) & (length <= notes[:, 1] - notes[:, 0] + 2))


def test_each_note_stands_where_its_anticipated_time_comes_and_not_earlier():
    melody, piano = song("002.mid")
    notes = melody_notes(melody)
    stream = interleave(piano, notes)
    times, ats = clock(stream), np.flatnonzero((stream >= AT) & (stream < PITCH))
    written = np.flatnonzero(stream < VOCAB_SIZE)
    for note, i in zip(notes, ats):
        due = note[0] - ANTICIPATION
        assert times[i] >= due or stream[i + 3 :].min() == Performance.eos_id  # a note after the last event
        before = written[written < i]
        assert len(before) == 1 or times[before[-1]] < due  # the event before it came earlier than due
        assert 0 <= note[0] - times[i] <= ANTICIPATION
    assert np.all(stream[ats + 1] >= PITCH) and np.all(stream[ats + 2] >= DURATION)


@pytest.mark.parametrize("anticipation", [ANTICIPATION, 0])
def test_generation_forces_the_melody_exactly_where_training_put_it(anticipation):
    melody, piano = song("003.mid")
    stream = interleave(piano, melody_notes(melody), anticipation)
    ahead, written, out = MelodyAhead(melody_notes(melody), 1, 10**9, anticipation), list(piano[1:-1]), [1]
    while True:
        forced = ahead(np.array([out[-1]]))[0]
        if forced < 0 and not written:
            break
        out.append(int(forced) if forced >= 0 else written.pop(0))
    np.testing.assert_array_equal(out, stream[: len(out)])
    assert len(out) == len(stream) - 1  # everything but EOS


def test_with_no_anticipation_a_note_stands_where_it_sounds_and_the_tokenizer_remembers_it():
    melody, piano = song("002.mid")
    notes, tokenizer = melody_notes(melody), Anticipated(0)
    stream = interleave(piano, notes, tokenizer.anticipation)
    times, ats = clock(stream), np.flatnonzero((stream >= AT) & (stream < PITCH))
    assert np.all(times[ats] >= notes[:, 0]) and np.all(times[ats] < notes[:, 0] + 100)  # within one time shift
    assert tokenizer_from_json(tokenizer.to_json()).anticipation == 0
    with pytest.raises(RepriseError, match="choose 0 to 2 s"):
        Anticipated(300)


def test_only_the_accompaniment_is_scored_so_nlls_count_the_same_tokens(tmp_path):
    melody, piano = song()
    stream = interleave(piano, melody_notes(melody))
    tokenizer = Anticipated()
    model = build_model(ModelConfig(vocab_size=tokenizer.vocab_size, context=64, d_model=16, n_layers=1, n_heads=2))
    nll = nll_of(model, [stream[:600]], 64, scored=tokenizer.scored)
    assert nll.tokens == int((stream[1:600] < VOCAB_SIZE).sum())
    # a control's place is known, so no probability goes to controls where an event stands
    only = nll_of(model, [stream[:600]], 64, scored=tokenizer.scored, predicted=tokenizer.predicted)
    assert only.tokens == nll.tokens and only.total < nll.total


def test_transposition_moves_the_melody_with_its_accompaniment():
    melody, piano = song()
    stream = interleave(piano, melody_notes(melody))
    moved = Anticipated().transposed(stream, 3)
    np.testing.assert_array_equal(np.array(controls_of(moved))[:, 2], np.array(controls_of(stream))[:, 2] + 3)
    np.testing.assert_array_equal(accompaniment_of(moved), Performance().transposed(piano, 3))


def test_a_decoder_only_accompaniment_keeps_to_the_melody_and_ends_with_it():
    tokenizer = Anticipated()
    melody = np.r_[1, np.tile([NOTE_ON + 67, TIME_SHIFT + 49, NOTE_ON + 128 + 67], 6), 2]  # six notes, 0.5 s apart
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=tokenizer.vocab_size, context=64, d_model=16, n_layers=1, n_heads=2))
    parts = accompany(model, Task("accompany", tokenizer), melody, max_tokens=600, num_samples=2, seed=0)
    end = clock(melody)[-1]
    for part in parts:
        assert part[0] == tokenizer.bos_id and part.max() < VOCAB_SIZE and tokenizer.eos_id not in part
        assert clock(part)[-1] <= end + 200 + 100  # ends within the tail (+ one last time shift)


def test_notes_at_an_onset_and_the_median_duration_of_a_piece():
    score = symusic.Score(480)
    score.tempos.append(symusic.Tempo(0, 60.0))  # a quarter is a second
    track = symusic.Track("Piano")
    for time, duration, pitch in ((0, 960, 48), (0, 480, 60), (480, 240, 64), (960, 240, 67)):
        track.notes.append(symusic.Note(time, duration, pitch, 80))
    score.tracks.append(track)
    piece = piece_from_score(score, "p", "p")
    assert notes_at_onset(piece) == pytest.approx((2 + 2 + 1) / 3)  # 0: two; 1 s: 48 and 64; 2 s: 67 alone
    assert median_duration(piece) == pytest.approx(0.75)


def test_train_accompany_decoder_only_from_the_command_line(capsys, tmp_path):
    folder, pairs = pop909_pairs(capsys, tmp_path)
    code, _, err = run(capsys, "train", "--data", pairs, "--run", tmp_path / "plain", "--steps", "1", *SMALL_MODEL)
    assert code != 0 and "--task accompany" in err
    args = ["train", "--task", "accompany", "--melody", "anticipation", "--data", pairs, "--steps", "2"]
    code, _, err = run(capsys, *args, "--eval-every", "2", "--device", "cpu", "--run", tmp_path / "acc", *SMALL_MODEL)
    assert code == 0, err
    assert trained_task(*load(tmp_path / "acc")) == "accompany"  # what the studio and model cards go by
    inputs, targets = AnticipatedPairs(pairs, "train").batch(np.random.default_rng(0), 4, 256)
    assert (inputs >= VOCAB_SIZE).any() and targets.max() < VOCAB_SIZE  # controls are read, never predicted
    code, out, err = run(capsys, "evaluate", "--checkpoint", tmp_path / "acc", "--data", pairs, "--split", "train")
    assert code == 0, err
    target = TokenDataset(pairs / "target", "train")
    assert json.loads(out)["tokens"] == target.n_tokens() - len(target)  # every accompaniment token after BOS
    code, _, err = run(
        capsys, "accompany", "--checkpoint", tmp_path / "acc", folder / "001.mid", "--max-tokens", "300",
        "--out", tmp_path / "out", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    written = symusic.Score(str(tmp_path / "out" / "accompaniment-1.mid"))
    given = select_tracks(symusic.Score(str(folder / "001.mid")), ("MELODY",))
    assert len(written.tracks) == 2 and len(written.tracks[0].notes) == len(given.tracks[0].notes)


def test_init_grows_the_vocabulary_keeping_the_old_rows(capsys, tmp_path):
    small = build_model(ModelConfig(vocab_size=VOCAB_SIZE, context=32, d_model=16, n_layers=1, n_heads=2))
    save_checkpoint(tmp_path / "small", small, Performance())
    grown = build_model(ModelConfig(vocab_size=Anticipated().vocab_size, context=32, d_model=16, n_layers=1, n_heads=2))
    fresh = grown.embed.weight[VOCAB_SIZE:PITCH].detach().clone()
    init_weights(grown, tmp_path / "small", Anticipated().grown_from)
    for name, tensor in small.state_dict().items():
        torch.testing.assert_close(grown.state_dict()[name][: tensor.shape[0]], tensor)
    torch.testing.assert_close(grown.embed.weight[VOCAB_SIZE:PITCH], fresh)  # AT ids keep their initialisation
    torch.testing.assert_close(grown.embed.weight[PITCH + 60], small.embed.weight[NOTE_ON + 60])  # pitch as note-on
