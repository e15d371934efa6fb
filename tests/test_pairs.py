"""Pairs for the encoder-decoder on real music: round trips, time alignment, windows, given melodies."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import symusic

from conftest import SHARED, shared
from reprise.cli.main import main
from reprise.constants import TICKS_PER_STEP
from reprise.data.augment import Augmentation
from reprise.data.chorale_grid import ChoraleGrid
from reprise.data.dataset import TokenDataset
from reprise.data.melody_grid import MelodyGrid
from reprise.data.pairs import (
    Clock,
    PairedDataset,
    Task,
    decoder_window,
    harmonize_pair,
    infill_pair,
    join_harmony,
    join_infill,
)
from reprise.data.performance import NOTE_OFF, NOTE_ON, Performance
from reprise.data.sources import select_tracks
from reprise.errors import RepriseError

POP909 = SHARED / "pop909"


def pop909_score(name: str = "001.mid") -> symusic.Score:
    return symusic.Score(str(shared(POP909 / name)))


def test_harmonize_pairs_split_and_rejoin_real_chorales(jsb_data):
    dataset = TokenDataset(jsb_data, "test")
    tokenizer = dataset.tokenizer
    for i in range(6):
        ids = dataset.piece(i)
        pair = harmonize_pair("x", ids, tokenizer)
        grid = tokenizer.decode_grid(ids)
        np.testing.assert_array_equal(
            tokenizer.decode_grid(np.r_[pair.source[:1], np.repeat(pair.source[1:-1], 4)])[:, 0], grid[:, 0]
        )  # the source is the soprano, one token per step
        assert len(pair.target) == 3 * len(grid) + 2
        np.testing.assert_array_equal(join_harmony(pair.source, pair.target, tokenizer), ids)


def melody_ids() -> tuple[MelodyGrid, np.ndarray]:
    tokenizer = MelodyGrid()
    return tokenizer, tokenizer.encode_score(select_tracks(pop909_score(), ("MELODY",)))


def test_infill_pairs_mask_only_the_span_and_rejoin_on_both_grids(jsb_data):
    chorales = TokenDataset(jsb_data, "valid")
    melody_tokenizer, melody = melody_ids()
    for tokenizer, ids, span in [
        (chorales.tokenizer, chorales.piece(2), (16, 48)),
        (melody_tokenizer, melody, (64, 128)),
    ]:
        task = Task("infill", tokenizer)
        pair = infill_pair("x", ids, span, task)
        first, last = 1 + span[0] * tokenizer.frame, 1 + span[1] * tokenizer.frame
        assert (pair.source[first:last] == task.mask_id).all()
        np.testing.assert_array_equal(np.delete(pair.source, np.s_[first:last]), np.delete(ids, np.s_[first:last]))
        np.testing.assert_array_equal(pair.target[1:-1], ids[first:last])
        np.testing.assert_array_equal(join_infill(pair, pair.target, tokenizer.frame), ids)
        where = task.target_clock.where(pair.target, pair.target_offset)
        assert where[1, 0] == span[0] and where[-2, 0] == span[1] - 1  # the span's own time steps


def test_performance_clock_places_every_note_where_decoding_puts_it():
    tokenizer = Performance()
    ids = tokenizer.encode_score(select_tracks(pop909_score(), ("PIANO",)))[:3000]
    times = Clock(0).times(ids)
    onsets_ms = sorted(note.time for note in tokenizer.decode(ids).tracks[0].notes)  # 1 tick = 1 ms
    clock_ms = sorted(10 * times[(ids >= NOTE_ON) & (ids < NOTE_OFF)])
    np.testing.assert_array_equal(clock_ms, onsets_ms)


def test_accompaniment_pairs_join_two_track_selections_by_name_aligned_in_time(capsys, tmp_path):
    folder = tmp_path / "songs"
    folder.mkdir()
    for name in ("001.mid", "002.mid", "003.mid"):
        pop909_score(name)
        shutil.copy(POP909 / name, folder / name)
    code = main(["prepare-pairs", str(folder), "--out", str(tmp_path / "pairs"), "--split", "1,0,0", "--workers", "1"])
    assert code == 0, capsys.readouterr().err
    pairs = PairedDataset(tmp_path / "pairs", "train", "accompany")
    assert len(pairs) == 3
    tokenizer = Performance()
    for i, name in enumerate(("001.mid", "002.mid", "003.mid")):
        pair = pairs.pair(i)
        score = pop909_score(name)
        np.testing.assert_array_equal(pair.source, tokenizer.encode_score(select_tracks(score, ("MELODY",))))
        np.testing.assert_array_equal(pair.target, tokenizer.encode_score(select_tracks(score, ("PIANO",))))
        first = {
            side: Clock(0).times(ids)[np.argmax((ids >= NOTE_ON) & (ids < NOTE_OFF))]
            for side, ids in (("melody", pair.source), ("piano", pair.target))
        }
        seconds = {
            side: min(n.time for n in select_tracks(score.to("second"), (track,)).tracks[0].notes)
            for side, track in (("melody", "MELODY"), ("piano", "PIANO"))
        }
        for side in first:  # both sides on the file's own time axis
            assert first[side] == round(100 * seconds[side])
    with pytest.raises(RepriseError, match="source/ and target/ prepared datasets"):
        PairedDataset(folder, "train", "accompany")


def test_a_harmony_window_finds_the_soprano_of_each_target_step_at_the_same_time(jsb_data):
    dataset = TokenDataset(jsb_data, "train")
    ids = dataset.piece(5)
    grid = dataset.tokenizer.decode_grid(ids)
    task = Task("harmonize", dataset.tokenizer)
    pair = harmonize_pair("x", ids, dataset.tokenizer)
    start = 3 * 40  # a window from step 40 on
    window = decoder_window(pair, task, start, start + 97, source_context=64, source_offset=0.25)
    assert window.where[0, 0] == 0 and (window.where[:, 1] == np.arange(96) % 3).all()  # alto, tenor, bass slots
    sopranos = dict(zip(window.source_where[:, 0].tolist(), window.source.tolist()))
    for j in range(96):
        step = (start + j) // 3  # the step of target token start + 1 + j
        assert sopranos[int(window.where[j, 0])] == dataset.tokenizer.encode_grid(grid[step : step + 1], False)[1]
    assert window.source_where[0, 0] == -16  # a quarter of the 64 source tokens lie before the window


def test_batches_pad_sources_and_targets(small_chorales):
    pairs = PairedDataset(small_chorales, "train", "infill", source_context=96, source_offset=0.5)
    (source, source_where, inputs, where), targets = pairs.batch(
        np.random.default_rng(0), 6, 300, augment=Augmentation()
    )
    assert source.shape[0] == inputs.shape[0] == 6 and source.shape[1] <= 96
    assert where.shape == (*inputs.shape, 2) and source_where.shape == (*source.shape, 2)
    assert (source == pairs.task.mask_id).any(axis=1).all()  # every row hides a span
    lengths = (targets != 0).sum(1)
    assert len(set(lengths.tolist())) > 1  # spans of different lengths, padded
    for row, n in enumerate(lengths):
        assert targets[row, n - 1] == pairs.tokenizer.eos_id and (targets[row, n:] == 0).all()


def test_tasks_refuse_tokenizers_they_cannot_use():
    with pytest.raises(RepriseError, match="harmonize needs chorale-grid tokens, not performance"):
        Task("harmonize", Performance())
    with pytest.raises(RepriseError, match="REMI infilling is not supported yet"):
        Task("infill", Performance())
    with pytest.raises(RepriseError, match="the piece has 3 bars"):
        Task("infill", ChoraleGrid()).bars(2, 4, 40)
    assert TICKS_PER_STEP == 120
