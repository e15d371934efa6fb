"""Unlikelihood fine-tuning: the choices it penalises are the ones the report counts, and it lowers them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import SMALL_MODEL, run
from reprise.data.chorale_grid import ChoraleGrid
from reprise.data.dataset import TokenDataset
from reprise.data.melody_grid import MelodyGrid
from reprise.errors import RepriseError
from reprise.evaluation.voice_leading import crossing_choices, parallel_choices, stalling_choices, voice_leading
from reprise.generation.generate import generate
from reprise.models.checkpoint import load_checkpoint
from reprise.models.config import ModelConfig
from reprise.models.transformer import MusicTransformer
from reprise.training.unlikelihood import (
    HELD_STEPS,
    LONGEST_CHORD,
    PRIMER_STEPS,
    check_unlikelihood,
    held_unlikelihood_loss,
    sampled_unlikelihood_loss,
    unlikelihood_loss,
)

TOKENIZER = ChoraleGrid(pitch_min=36, pitch_max=84)
PITCHES = torch.as_tensor(TOKENIZER.id_pitches())


def _id(pitch: int) -> int:
    return pitch - TOKENIZER.pitch_min + 4


def test_a_voice_is_flagged_for_exactly_the_pitches_that_make_parallels_with_the_voices_above_it():
    grid = torch.tensor([[[72, 65, 57, 48], [74, 67, 60, 50]]])
    bad = parallel_choices(grid, PITCHES)[0, 1]
    assert not bad[0].any()  # the soprano is written first: nothing of its step is known yet
    flagged = [{int(p) for p in PITCHES[bad[v]]} for v in range(4)]
    assert flagged[1] == {67, 81}  # a fifth below or above the soprano's 74, moving up from 65 like it
    assert flagged[2] == set()  # the tenor's 57 makes no fifth or octave with 72 or 65
    assert flagged[3] == {50, 62, 74}  # the bass's 48 is two octaves below 72: octaves with 74, moving up
    assert not bad[:, :4].any()  # silence and the specials are never flagged


def test_a_voice_is_flagged_for_the_pitches_above_a_voice_written_before_it():
    grid = torch.tensor([[[72, 65, -1, 48]]])
    bad = crossing_choices(grid, PITCHES)[0, 0]
    assert not bad[0].any()
    assert {int(p) for p in PITCHES[bad[1]]} == set(range(73, 85))  # above the soprano
    assert {int(p) for p in PITCHES[bad[2]]} == set(range(66, 85))  # above the alto (and the soprano)
    assert {int(p) for p in PITCHES[bad[3]]} == set(range(66, 85))  # a silent tenor bounds nothing
    assert not bad[:, :4].any()


def _parallels(report) -> int:
    return report.parallel_fifths + report.parallel_octaves


@pytest.mark.parametrize(
    "flags, counted, per_step",
    [
        (lambda grid, pitches, voices: parallel_choices(grid, pitches), _parallels, False),
        (crossing_choices, lambda report: report.crossing_steps, True),
    ],
    ids=["parallels", "crossings"],
)
@pytest.mark.parametrize("order", ["SATB", "SBAT"])
def test_the_flags_on_bachs_own_notes_mark_what_the_report_counts(jsb_data, flags, counted, per_step, order):
    """Each parallel is flagged at the later voice of its pair; each crossed step at least once; in the
    paper's voice order and with the outer voices written first."""
    data = TokenDataset(jsb_data, "test")
    tokenizer = ChoraleGrid(pitch_min=data.tokenizer.pitch_min, pitch_max=data.tokenizer.pitch_max, voice_order=order)
    pitches = torch.as_tensor(tokenizer.id_pitches())
    total = flagged = 0
    for i in range(len(data)):
        ids = tokenizer.translate(data.piece(i), data.tokenizer)
        grid = tokenizer.decode_grid(ids)
        total += counted(voice_leading(grid))
        body = torch.as_tensor(ids[1 : 1 + grid.size])
        bad = flags(pitches[body].view(1, -1, 4), pitches, tokenizer.slot_voices).view(len(body), -1)
        hits = bad.gather(1, body[:, None]).view(-1, 4)
        flagged += int(hits.any(dim=1).sum()) if per_step else int(hits.sum())
    assert total == flagged > 0


def test_the_bass_is_flagged_for_holding_a_chord_past_the_limit_only():
    chord = [72, 67, 64, 48]
    grid = torch.tensor([[chord] * 6])
    bad = stalling_choices(grid, PITCHES, limit=4)[0]
    held = [bool(bad[s, 3, _id(48)]) for s in range(6)]
    assert held == [False, False, False, False, True, True]  # the 5th step would make it 5 long
    assert int(bad.sum()) == 2  # only the held bass pitch, only at those steps
    moved = torch.tensor([[chord] * 3 + [[72, 67, 64, 50]] + [chord] * 2])
    assert not stalling_choices(moved, PITCHES, limit=4).any()


def test_the_loss_ignores_what_was_written_and_padding():
    targets = torch.tensor([[_id(p) for p in (72, 65, 57, 48, 74, 67, 60, 50)]])
    logits = torch.zeros(1, 8, TOKENIZER.vocab_size)
    uniform = unlikelihood_loss(logits, targets, TOKENIZER)
    assert uniform > 0
    logits[0, 5, _id(67)] = 50.0  # all the alto's mass on what Bach wrote: the flag on 67 is lifted
    logits[0, 7, _id(50)] = 50.0
    confident = unlikelihood_loss(logits, targets, TOKENIZER)
    assert confident < uniform
    padded = targets.clone()
    padded[0, 4:] = TOKENIZER.pad_id
    first_step = unlikelihood_loss(torch.zeros(1, 4, TOKENIZER.vocab_size), targets[:, :4], TOKENIZER)
    assert unlikelihood_loss(torch.zeros(1, 8, TOKENIZER.vocab_size), padded, TOKENIZER) == first_step > 0


def test_the_sampled_loss_scores_the_continuation_and_keeps_a_given_soprano(monkeypatch):
    from reprise.training import unlikelihood

    tokenizer = ChoraleGrid(pitch_min=36, pitch_max=84, soprano_ahead=2)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, context=64, d_model=16, n_layers=1, n_heads=2, frame=4)
    model = MusicTransformer(config)
    monkeypatch.setattr(unlikelihood, "PRIMER_STEPS", 4)
    monkeypatch.setattr(unlikelihood, "SAMPLED_STEPS", 8)
    windows = torch.randint(tokenizer.silence_id, tokenizer.vocab_size, (2, 64))
    seen = {}
    monkeypatch.setattr(
        unlikelihood,
        "unlikelihood_loss",
        lambda logits, targets, tok, written: seen.update(targets=targets, written=written) or logits.sum() * 0,
    )
    sampled_unlikelihood_loss(model, model, windows, tokenizer, seed=0)
    targets, written = seen["targets"], seen["written"]
    assert targets.shape == (2, 4 * 12) and written.sum() == 2 * 4 * 8 and written[:, 16:].all()
    assert torch.equal(targets[:, :16], windows[:, 1:17])  # the primer is the window's
    assert torch.equal(targets[:, 16::4], windows[:, 17:49:4])  # the soprano sampled is the window's
    assert not torch.equal(targets[:, 17:], windows[:, 18:49])  # the rest is the model's


def test_the_held_loss_penalises_only_the_last_voice_holding_its_chord_past_a_bar():
    rng = np.random.default_rng(0)
    steps = PRIMER_STEPS  # the window: a new chord at every step, voices apart, so nothing else is flagged
    chords = np.stack([rng.choice(np.arange(12 * v, 12 * v + 12), steps) for v in (3, 2, 1, 0)], axis=1) + 36
    room = np.zeros(4 * HELD_STEPS, dtype=int)  # padding: the piece ends there, so the chord is cut at its end
    windows = torch.as_tensor(np.r_[TOKENIZER.bos_id, _id(chords).ravel(), room])[None]
    logits = torch.zeros(1, 4 * (PRIMER_STEPS + HELD_STEPS), TOKENIZER.vocab_size, requires_grad=True)
    seen = []
    held_unlikelihood_loss(lambda seq: seen.append(seq) or logits, windows, TOKENIZER, seed=0).backward()
    held = seen[0][0, 1 + 4 * PRIMER_STEPS :]  # the inputs: the last target is not read
    last_chord = windows[0, 4 * PRIMER_STEPS - 3 : 4 * PRIMER_STEPS + 1]
    assert torch.equal(held, last_chord.repeat(HELD_STEPS)[:-1])
    targets = torch.cat([windows[0, 1 : 1 + 4 * PRIMER_STEPS], last_chord.repeat(HELD_STEPS)])
    pushed_down = logits.grad[0, torch.arange(len(targets)), targets] > 0  # the target itself is penalised
    penalised = pushed_down.nonzero().flatten().tolist()
    first = PRIMER_STEPS + LONGEST_CHORD - 1  # the step at which the chord has lasted a bar and would go on
    assert penalised == [4 * step + 3 for step in range(first, PRIMER_STEPS + HELD_STEPS)]


def test_the_held_chord_is_cut_anywhere_in_a_long_window(monkeypatch):
    from reprise.training import unlikelihood

    seen = []
    monkeypatch.setattr(unlikelihood, "unlikelihood_loss", lambda logits, targets, tok, written: seen.append(written))
    windows = torch.randint(TOKENIZER.silence_id, TOKENIZER.vocab_size, (3, 1024))
    windows[2, 1 + 4 * 40 :] = TOKENIZER.pad_id  # a short piece: cut within its 40 steps
    for seed in range(20):
        held_unlikelihood_loss(lambda seq: torch.zeros(*seq.shape, 1), windows, TOKENIZER, seed)
    cuts = torch.stack([w.int().argmax(dim=1) // 4 for w in seen])  # the first held step of each row
    assert (cuts >= PRIMER_STEPS).all() and (cuts[:, :2] <= 1023 // 4 - HELD_STEPS).all() and (cuts[:, 2] <= 40).all()
    assert cuts[:, :2].max() > 150 and len(set(cuts[:, 0].tolist())) > 10  # anywhere, not only after the primer
    assert all(int(w[row].sum()) == 4 * HELD_STEPS for w in seen for row in range(3))


def test_unlikelihood_needs_the_chorale_grid():
    with pytest.raises(RepriseError, match="--unlikelihood needs chorale-grid data, not melody-grid"):
        check_unlikelihood(MelodyGrid(), 64)
    with pytest.raises(RepriseError, match="multiple of 4"):
        check_unlikelihood(TOKENIZER, 62)
    with pytest.raises(RepriseError, match="--sampled-unlikelihood needs a context of at least 384 tokens"):
        check_unlikelihood(TOKENIZER, 256, "--sampled-unlikelihood")
    with pytest.raises(RepriseError, match="--held-unlikelihood needs a context of at least 208 tokens"):
        check_unlikelihood(TOKENIZER, 204, "--held-unlikelihood")
    check_unlikelihood(TOKENIZER, 208, "--held-unlikelihood")
    check_unlikelihood(TOKENIZER, 64)  # the loss on Bach's own windows needs no continuation


def _bad_mass(checkpoint, data) -> float:
    """The mean probability the model gives the flagged choices at the positions where some are flagged."""
    model, tokenizer = load_checkpoint(checkpoint)
    pitches = torch.as_tensor(tokenizer.id_pitches())
    total = count = 0.0
    windows = [data.piece(i)[start : start + 61] for i in range(len(data)) for start in range(0, 240, 60)]
    for ids in map(torch.as_tensor, windows):  # 15 steps each, starting where a step starts
        with torch.no_grad():
            probs = model(ids[None, :-1]).softmax(-1)[0]
        targets = ids[1:]
        bad = parallel_choices(pitches[targets].view(1, -1, 4), pitches).view(len(targets), -1)
        bad.scatter_(1, targets[:, None], False)
        total, count = total + float((probs * bad).sum()), count + int(bad.any(-1).sum())
    return total / count


def test_fine_tuning_with_unlikelihood_lowers_the_mass_on_parallels(capsys, tiny_run, small_chorales, tmp_path):
    common = [
        "train",
        "--data",
        small_chorales,
        "--init",
        tiny_run,
        "--steps",
        "200",
        "--lr",
        "1e-2",
        "--device",
        "cpu",
    ]
    common += ["--batch-size", "4", "--warmup", "10", "--eval-every", "200", "--seed", "1"]
    for name, weight in (("mle", "0"), ("ul", "10")):
        code, _, err = run(capsys, *common, "--run", tmp_path / name, "--unlikelihood", weight)
        assert code == 0, err
    train = TokenDataset(small_chorales, "train")  # what the loss sees; a tiny model generalises little of it
    assert _bad_mass(tmp_path / "ul", train) < 0.9 * _bad_mass(tmp_path / "mle", train)


def test_init_starts_from_the_checkpoint_and_keeps_its_shape(capsys, tiny_run, small_chorales, tmp_path):
    args = ["train", "--data", small_chorales, "--run", tmp_path / "r", "--init", tiny_run, "--device", "cpu"]
    code, _, err = run(capsys, *args, "--steps", "1", "--lr", "1e-12", "--warmup", "0", "--eval-every", "1")
    assert code == 0, err
    start, after = (
        load_file(tiny_run / "best" / "model.safetensors"),
        load_file(tmp_path / "r" / "best" / "model.safetensors"),
    )
    assert start.keys() == after.keys()
    assert all(np.allclose(start[k], after[k], atol=1e-6) for k in start)
    code, _, err = run(capsys, *args, "--overwrite", *SMALL_MODEL)
    assert code != 0 and "--init takes the model and its shape from the checkpoint; drop --context" in err


def _own_bad_mass(checkpoint) -> float:
    """The mean probability a model gives the flagged choices in continuations it samples itself."""
    model, tokenizer = load_checkpoint(checkpoint)
    primer = np.r_[tokenizer.bos_id, np.tile(np.array([67, 64, 60, 48]) - tokenizer.pitch_min + 4, 8)]
    ids = torch.as_tensor(generate(model, tokenizer, primer, 4 * 32, 4, seed=3))
    pitches = torch.as_tensor(tokenizer.id_pitches())
    with torch.no_grad():
        probs = model(ids[:, :-1]).softmax(-1)
    targets = ids[:, 1:]
    chords = pitches[targets].view(len(ids), -1, 4)
    bad = (parallel_choices(chords, pitches) | crossing_choices(chords, pitches)).flatten(1, 2)
    return float((probs * bad).sum(-1)[:, len(primer) - 1 :].mean())


def test_sampled_unlikelihood_lowers_the_mass_on_faults_in_the_models_own_music(capsys, small_chorales, tmp_path):
    shape = ["--context", "384", "--d-model", "32", "--layers", "1", "--heads", "2"]
    common = ["train", "--data", small_chorales, "--device", "cpu", "--batch-size", "2", "--warmup", "5"]
    code, _, err = run(capsys, *common, *shape, "--run", tmp_path / "base", "--steps", "40", "--lr", "1e-2")
    assert code == 0, err
    tune = [*common, "--init", tmp_path / "base", "--steps", "60", "--lr", "3e-3", "--eval-every", "60"]
    for name, weight in (("mle", "0"), ("sampled", "30")):
        code, _, err = run(capsys, *tune, "--run", tmp_path / name, "--sampled-unlikelihood", weight)
        assert code == 0, err
    assert _own_bad_mass(tmp_path / "sampled") < 0.8 * _own_bad_mass(tmp_path / "mle")
