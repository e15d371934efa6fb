"""The chorale grid's voice order: a step written S, B, A, T (outer voices first) round-trips, keeps
each voice's range and notes, translates to and from S, A, T, B, and its crossing flags know which
voice written before is the higher (test_unlikelihood.py checks the flags on Bach's chorales in both orders)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import run
from reprise.data.chorale_grid import ChoraleGrid
from reprise.data.dataset import TokenDataset
from reprise.data.tokenizer import tokenizer_from_json
from reprise.errors import RepriseError
from reprise.evaluation.voice_leading import crossing_choices

CHORALE = np.array([[72, 67, 64, 48], [74, 67, 62, 43], [74, -1, 62, 43], [76, 65, -1, 41]])


@pytest.mark.parametrize("ahead", [0, 2])
@pytest.mark.parametrize("order", ["SBAT", "STBA", "SATB"])
def test_a_voice_order_round_trips_and_puts_each_voice_in_its_slot(order, ahead):
    tokenizer = ChoraleGrid(voice_order=order, soprano_ahead=ahead)
    ids = tokenizer.encode_grid(CHORALE)
    np.testing.assert_array_equal(tokenizer.decode_grid(ids), CHORALE)
    frames = ids[1:-1].reshape(-1, 4)[ahead : ahead + len(CHORALE)]
    for slot, letter in enumerate(order):
        voice = "SATB".index(letter)
        if voice:  # the soprano of this frame belongs to a later step when it runs ahead
            expected = np.where(CHORALE[:, voice] < 0, tokenizer.silence_id, CHORALE[:, voice] - 21 + 4)
            np.testing.assert_array_equal(frames[:, slot], expected)
    notes = tokenizer.token_notes(ids)
    plain = ChoraleGrid().token_notes(ChoraleGrid().encode_grid(CHORALE))
    assert sorted(notes[notes >= 0]) == sorted(plain[plain >= 0])


def test_a_bad_voice_order_is_refused_and_the_order_survives_json():
    for order in ("SABB", "BSAT", "SAT"):
        with pytest.raises(RepriseError, match="must name S, A, T and B once each, soprano first"):
            ChoraleGrid(voice_order=order)
    tokenizer = tokenizer_from_json(json.loads(json.dumps(ChoraleGrid(voice_order="SBAT").to_json())))
    assert tokenizer.voice_order == "SBAT"
    older = ChoraleGrid().to_json()
    del older["voice_order"]  # a tokenizer.json written before the option
    assert tokenizer_from_json(older).voice_order == "SATB"


def test_grids_of_two_orders_translate_into_each_other():
    plain, outer = ChoraleGrid(), ChoraleGrid(voice_order="SBAT")
    ids = plain.encode_grid(CHORALE)
    there = outer.translate(ids, plain)
    assert not np.array_equal(there, ids)
    np.testing.assert_array_equal(plain.translate(there, outer), ids)


def test_each_slot_samples_within_the_range_of_the_voice_it_holds():
    ranges = [(60, 80), (52, 72), (45, 67), (36, 60)]
    tokenizer = ChoraleGrid(voice_ranges=ranges, voice_order="SBAT")
    pitches = tokenizer.id_pitches()
    for slot, letter in enumerate("SBAT"):
        allowed = pitches[tokenizer.allowed_next(1 + slot)]
        low, high = ranges["SATB".index(letter)]
        assert allowed[allowed >= 0].min() == low and allowed.max() == high


def test_a_voice_written_after_a_lower_one_is_flagged_below_it():
    tokenizer = ChoraleGrid(pitch_min=36, pitch_max=84, voice_order="SBAT")
    pitches = torch.as_tensor(tokenizer.id_pitches())
    slots = torch.tensor([[[72, 48, 65, -1]]])  # soprano, bass, alto, (tenor not written yet)
    bad = crossing_choices(slots, pitches, tokenizer.slot_voices)[0, 0]
    assert {int(p) for p in pitches[bad[1]]} == set(range(73, 85))  # the bass above the soprano
    assert {int(p) for p in pitches[bad[2]]} == set(range(36, 48)) | set(range(73, 85))  # alto below the bass
    assert {int(p) for p in pitches[bad[3]]} == set(range(36, 48)) | set(range(66, 85))  # tenor: bass..alto


def test_prepare_writes_the_voice_order_and_refuses_it_for_other_tokenizers(capsys, jsb_json, tmp_path):
    code, _, err = run(capsys, "prepare", jsb_json, "--out", tmp_path / "sbat", "--voice-order", "sbat")
    assert code == 0, err
    outer = TokenDataset(tmp_path / "sbat", "test")
    assert outer.tokenizer.voice_order == "SBAT"
    assert outer.tokenizer.voice_ranges[1][1] > outer.tokenizer.voice_ranges[3][1]  # alto fitted above bass
    code, _, err = run(
        capsys, "prepare", jsb_json, "--out", tmp_path / "x", "--tokenizer", "remi", "--voice-order", "SBAT"
    )
    assert code != 0 and "--voice-order works with chorale-grid, not remi" in err
    code, _, err = run(capsys, "prepare", jsb_json, "--out", tmp_path / "y", "--voice-order", "SAAB")
    assert code != 0 and "voice order 'SAAB' must name S, A, T and B once each" in err
