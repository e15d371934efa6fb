"""Strict voice-leading sampling: it rules out exactly the choices the report would count, at the
moment of choice, and samples drawn with it have no parallels or crossings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import run
from reprise.data.chorale_grid import ChoraleGrid
from reprise.data.melody_grid import MelodyGrid
from reprise.errors import RepriseError
from reprise.evaluation.voice_leading import crossing_choices, frame_chords, parallel_choices, voice_leading
from reprise.generation.conditional import harmonize
from reprise.generation.generate import generate
from reprise.generation.sampling import SamplingConfig
from reprise.generation.strict import avoided_next, strict_logits
from reprise.models.config import ModelConfig
from reprise.models.transformer import MusicTransformer

SOPRANO = np.array([67] * 4 + [69] * 4 + [71] * 8 + [72] * 6 + [71] * 4 + [69] * 4 + [67] * 8)


def untrained(vocab: int = 92) -> MusicTransformer:
    """A random model: it writes parallels and crossings freely, so the sampler has work to do."""
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=vocab, context=64, d_model=32, n_layers=2, n_heads=4, dropout=0.0, frame=4)
    return MusicTransformer(config).eval()


@pytest.mark.parametrize("ahead", [0, 3])
def test_the_choices_ruled_out_at_each_position_are_the_flags_of_the_whole_grid(ahead):
    tokenizer = ChoraleGrid(pitch_min=36, pitch_max=84, soprano_ahead=ahead)
    pitches = torch.as_tensor(tokenizer.id_pitches())
    rng = np.random.default_rng(0)
    body = torch.as_tensor(rng.integers(tokenizer.silence_id, tokenizer.vocab_size, 4 * 12))
    chords = frame_chords(pitches[body].view(1, -1, 4), ahead)
    flags = (parallel_choices(chords, pitches) | crossing_choices(chords, pitches)).view(len(body), -1)
    seq = torch.cat([torch.tensor([tokenizer.bos_id]), body])[None]
    for i in range(len(body)):
        expected = flags[i] if ahead == 0 or i % 4 else torch.zeros_like(flags[i])  # a given soprano is free
        assert torch.equal(avoided_next(seq[:, : i + 1], tokenizer)[0], expected), i


@pytest.mark.parametrize("order", ["SATB", "SBAT"])
def test_strict_samples_have_no_parallels_or_crossings_and_free_ones_do(order):
    tokenizer = ChoraleGrid(pitch_min=0, pitch_max=87, voice_order=order)
    model = untrained()
    counts = {}
    for strict in (False, True):
        ids = generate(model, tokenizer, np.array([tokenizer.bos_id]), 4 * 48, 4, SamplingConfig(strict=strict))
        reports = [voice_leading(tokenizer.decode_grid(row)) for row in ids]
        counts[strict] = sum(r.parallel_fifths + r.parallel_octaves + r.crossing_steps for r in reports)
    assert counts[True] == 0 < counts[False]


def test_a_strict_harmonisation_keeps_the_soprano_and_crosses_no_voice():
    tokenizer = ChoraleGrid(pitch_min=0, pitch_max=87, soprano_ahead=4)
    [chorale] = harmonize(untrained(), tokenizer, SOPRANO, sampling=SamplingConfig(strict=True))
    grid = tokenizer.decode_grid(chorale)
    assert np.array_equal(grid[:, 0], SOPRANO)
    report = voice_leading(grid)
    assert report.crossing_steps == report.parallel_fifths == report.parallel_octaves == 0


def test_strict_needs_the_chorale_grid():
    with pytest.raises(RepriseError, match="strict voice leading needs a chorale-grid model, not melody-grid"):
        strict_logits(torch.zeros(1, 10), torch.zeros(1, 3, dtype=torch.long), MelodyGrid())


def test_strict_is_refused_by_an_encoder_decoder_harmonizer(capsys, tiny_harmonizer, tmp_path):
    melody = tmp_path / "tune.mid"
    ChoraleGrid().decode(ChoraleGrid().encode_grid(np.stack([SOPRANO] + [SOPRANO - 12] * 3, 1))).dump_midi(melody)
    code, _, err = run(
        capsys, "harmonize", "--checkpoint", str(tiny_harmonizer), str(melody), "--melody-track", "Soprano", "--strict"
    )
    assert code == 1 and "strict voice leading needs a decoder-only chorale-grid model" in err


def test_generate_strict_writes_midi_without_parallels_or_crossings(capsys, tiny_run, tmp_path):
    from reprise.evaluation.pieces import load_pieces

    args = ["generate", "--checkpoint", str(tiny_run), "--length", "4bars", "--samples", "2", "--no-end"]
    code, _, _ = run(capsys, *args, "--strict", "--out", str(tmp_path / "strict"))
    assert code == 0
    grids = [piece.grid for piece in load_pieces(tmp_path / "strict", None, "")]
    reports = [voice_leading(grid) for grid in grids]
    assert len(reports) == 2 and all(r.transitions for r in reports)
    assert sum(r.parallel_fifths + r.parallel_octaves + r.crossing_steps for r in reports) == 0
