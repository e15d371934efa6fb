"""Seeing and hearing: piano rolls, attention arcs (PNG and HTML), training curves and WAV rendering.

Everything runs on a tiny random model and a made-up two-bar chorale, so it is
fast, but the checks are on content: pixels of every voice's colour, attention
rows that are probabilities and only look back, an HTML page that holds every
note, and audio whose length and pitch match the MIDI file.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import symusic
import torch

from conftest import run
from reprise.audio import TAIL_SECONDS, available_synths, midi_seconds, read_wav, render_wav
from reprise.data.chorale_grid import SILENCE, TICKS_PER_STEP, ChoraleGrid, grid_to_score
from reprise.data.tokenizer import Tokenizer, score_notes
from reprise.models.checkpoint import save_checkpoint
from reprise.models.config import ModelConfig
from reprise.models.transformer import MusicTransformer
from reprise.visualization.attention import note_attention, plot_attention, token_attention
from reprise.visualization.attention_html import write_attention_html
from reprise.visualization.curves import plot_curves
from reprise.visualization.pianoroll import TRACK_COLOURS, plot_pianoroll

CONTEXT = 48  # shorter than the 129-token test piece, so attention slides its window
SYNTHS = list(available_synths())


@pytest.fixture(scope="module")
def tokenizer() -> ChoraleGrid:
    return ChoraleGrid(voice_ranges=[(60, 79), (53, 72), (48, 67), (36, 60)])


@pytest.fixture(scope="module")
def grid(tokenizer: ChoraleGrid) -> np.ndarray:
    """Two bars of four voices moving in held notes of 1-4 steps, with a few rests."""
    rng = np.random.default_rng(0)
    columns = []
    for low, high in tokenizer.voice_ranges:
        column: list[int] = []
        while len(column) < 32:
            pitch = SILENCE if rng.random() < 0.1 else int(rng.integers(low, high + 1))
            column += [pitch] * int(rng.integers(1, 5))
        columns.append(column[:32])
    return np.array(columns).T


@pytest.fixture(scope="module")
def chorale(grid: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("music") / "chorale.mid"
    grid_to_score(grid).dump_midi(str(path))
    return path


@pytest.fixture(scope="module")
def model(tokenizer: ChoraleGrid) -> MusicTransformer:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=tokenizer.vocab_size, context=CONTEXT, d_model=32, n_layers=2, n_heads=2)
    return MusicTransformer(config).eval()


@pytest.fixture(scope="module")
def checkpoint(model: MusicTransformer, tokenizer: ChoraleGrid, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("run") / "best"
    save_checkpoint(directory, model, tokenizer)
    return directory


def colour_pixels(png: Path, colour: str, tolerance: float = 0.04) -> int:
    """How many pixels of ``png`` have the RGB colour ``#rrggbb`` (within ``tolerance``)."""
    image = matplotlib.image.imread(str(png))[..., :3]
    target = np.array([int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(image - target).max(-1) < tolerance).sum())


def ink(png: Path) -> float:
    """The share of ``png``'s pixels that are not white."""
    image = matplotlib.image.imread(str(png))[..., :3]
    return float((image.min(-1) < 0.97).mean())


# -- piano roll -----------------------------------------------------------------------------------


def test_piano_roll_draws_every_voice_in_its_own_colour(chorale: Path, tmp_path: Path):
    png = plot_pianoroll(chorale, tmp_path / "roll.png")
    height, width = matplotlib.image.imread(str(png)).shape[:2]
    assert width >= 800 and height >= 400
    assert 0.1 < ink(png) < 0.9
    for colour in TRACK_COLOURS[:4]:
        assert colour_pixels(png, colour) > 200, f"no notes drawn in {colour}"
    assert colour_pixels(png, TRACK_COLOURS[4]) == 0  # only four tracks


# -- tokens to notes -------------------------------------------------------------------------------


def test_chorale_grid_token_notes_point_at_the_note_each_token_sounds(tokenizer: ChoraleGrid, grid: np.ndarray):
    ids = tokenizer.encode_grid(grid)
    owner = tokenizer.token_notes(ids)
    notes = score_notes(tokenizer.decode(ids))
    assert owner.shape == ids.shape and owner[0] == -1 and owner[-1] == -1  # BOS, EOS
    for position in range(1, len(ids) - 1):
        step, voice = divmod(position - 1, 4)
        if grid[step, voice] == SILENCE:
            assert owner[position] == -1
            continue
        track, note = notes[owner[position]]
        assert track == voice and note.pitch == grid[step, voice]
        assert note.time <= step * TICKS_PER_STEP < note.time + note.duration
    assert set(owner[owner >= 0]) == set(range(len(notes)))


def test_default_token_notes_gives_each_note_the_token_that_completes_it(tokenizer: ChoraleGrid, grid: np.ndarray):
    ids = tokenizer.encode_grid(grid[:8])
    owner = Tokenizer.token_notes(tokenizer, ids)  # the generic, prefix-decoding version
    notes = score_notes(tokenizer.decode(ids))
    owned = owner[owner >= 0]
    assert len(owned) == len(set(owned)) > 0  # no note owned twice
    for position in np.flatnonzero(owner >= 0):  # a grid step decodes when its bass token arrives
        assert (position - 1) % 4 == 3 and notes[owner[position]][1].time == (position - 1) // 4 * TICKS_PER_STEP


# -- attention ------------------------------------------------------------------------------------


def test_hooked_attention_is_the_modules_own_causal_probabilities(model: MusicTransformer, tokenizer, grid):
    ids = tokenizer.encode_grid(grid[:8], eos=False)  # 33 tokens: one window
    weights = token_attention(model, ids, tokenizer.frame)
    assert weights.shape == (2, 2, 33, 33)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(weights, k=1) == 0)
    x = model.embed(torch.as_tensor(ids)[None]) + model.positions(0, len(ids))
    first = model.blocks[0].attn.weights(model.blocks[0].ln_attn(x))[0].numpy()
    np.testing.assert_allclose(weights[0], first, atol=1e-5)


def test_long_pieces_are_read_in_sliding_windows_that_still_only_look_back(model, tokenizer, grid):
    ids = tokenizer.encode_grid(grid, eos=False)  # 129 tokens, context 48
    weights = token_attention(model, ids, tokenizer.frame)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(weights, k=1) == 0)
    seen = (weights[0, 0] > 0).sum(-1)
    assert seen.max() <= CONTEXT and seen[CONTEXT:].min() >= CONTEXT // 2  # at least half a context of history


def test_note_arcs_sum_token_attention_and_reach_only_earlier_notes(model, tokenizer, grid):
    ids = tokenizer.encode_grid(grid, eos=False)
    result = note_attention(model, tokenizer, ids)
    tokens = token_attention(model, ids, tokenizer.frame)
    owner = tokenizer.token_notes(ids)
    n = len(result.notes)
    assert result.weights.shape == (2, 2, n, n)
    for query in range(n):
        earlier = result.onsets < result.onsets[query]
        assert np.all(result.weights[:, :, query, ~earlier] == 0)
        keys = (owner >= 0) & (np.arange(len(ids)) < result.onsets[query])
        expected = tokens[:, :, result.onsets[query], keys].sum(-1)
        np.testing.assert_allclose(result.weights[:, :, query].sum(-1), expected, atol=1e-5)
    assert result.weights.sum(-1).max() <= 1 + 1e-5
    assert result.pick(-1) == int(np.argmax(result.onsets)) and result.pick(0) == int(np.argmin(result.onsets))


def test_models_without_attention_are_refused_with_a_reason(tokenizer, grid):
    from reprise.errors import RepriseError
    from reprise.models.markov import MarkovChain, MarkovConfig

    chain = MarkovChain(MarkovConfig(vocab_size=tokenizer.vocab_size, order=1))
    with pytest.raises(RepriseError, match="MarkovChain has no attention to show"):
        token_attention(chain, tokenizer.encode_grid(grid[:4]), tokenizer.frame)


def test_attention_png_draws_arcs_over_the_roll(model, tokenizer, chorale, tmp_path):
    result = note_attention(model, tokenizer, tokenizer.encode_midi(chorale))
    roll = plot_pianoroll(chorale, tmp_path / "roll.png")
    both = plot_attention(result, result.pick(-1), tmp_path / "all.png")
    mean = plot_attention(result, result.pick(-1), tmp_path / "mean.png", layer="mean", head="mean")
    assert matplotlib.image.imread(str(both)).shape[0] > 1.5 * matplotlib.image.imread(str(mean)).shape[0]  # 2 panels
    assert ink(mean) > 0.1 and colour_pixels(mean, "#111111", 0.1) > colour_pixels(roll, "#111111", 0.1)


def test_html_page_holds_every_note_and_only_earlier_arcs(model, tokenizer, chorale, tmp_path):
    result = note_attention(model, tokenizer, tokenizer.encode_midi(chorale))
    page = write_attention_html(result, tmp_path / "page.html", "chorale <test>").read_text()
    drawn = Counter(
        tuple(int(v) for v in m)
        for m in re.findall(
            r'<rect class="note" data-i="\d+" data-track="(\d+)" data-pitch="(\d+)" data-time="(\d+)" '
            r'data-duration="(\d+)"',
            page,
        )
    )
    score = symusic.Score(str(chorale))
    expected = Counter((t, n.pitch, n.time, n.duration) for t, n in score_notes(score))
    assert drawn == expected and sum(drawn.values()) > 30
    assert "chorale &lt;test&gt;" in page
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<link" not in page  # nothing fetched
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)[1])
    assert set(data["views"]) == {"mean", "1", "2"} and set(data["views"]["1"]) == {"mean", "1", "2"}
    for arcs in (data["views"]["mean"]["mean"], data["views"]["2"]["1"]):
        assert any(arcs)
        for query, targets in enumerate(arcs):
            assert all(result.onsets[j] < result.onsets[query] and 0 < w <= 1 for j, w in targets)


# -- curves ---------------------------------------------------------------------------------------


def test_curves_show_training_and_validation_loss(tmp_path: Path):
    rows = [
        {"step": s, "loss": 4 * 0.98**s, "lr": 1e-3, "tokens_per_s": 900, "elapsed": 2.0 * s} for s in range(1, 101)
    ]
    rows += [{"step": s, "val_nll": 4.2 * 0.985**s, "val_ppl": 1.0, "elapsed": 2.0 * s + 1} for s in (25, 50, 100)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    png = plot_curves(tmp_path, tmp_path / "curves.png")
    assert colour_pixels(png, "#1f77b4", 0.06) > 500 and colour_pixels(png, "#d62728", 0.06) > 100


# -- audio ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("synth", SYNTHS)
def test_wav_lasts_as_long_as_the_midi_and_sounds_its_pitch(synth: str, tmp_path: Path):
    score = symusic.Score(480)
    score.tempos.append(symusic.Tempo(0, 120.0))
    track = symusic.Track(name="piano", program=0)
    track.notes.append(symusic.Note(0, 1920, 69, 90))  # A4 = 440 Hz for two seconds
    score.tracks.append(track)
    score.dump_midi(str(tmp_path / "a4.mid"))
    audio, rate = read_wav(render_wav(tmp_path / "a4.mid", tmp_path / "a4.wav", synth=synth))
    assert len(audio) == round((2.0 + TAIL_SECONDS) * rate) and audio.shape[1] == 2
    first_second = audio[:rate, 0].astype(float)
    assert np.sqrt(np.mean(first_second**2)) > 1000
    spectrum = np.abs(np.fft.rfft(first_second))
    assert abs(np.argmax(spectrum) * rate / len(first_second) - 440) < 3


@pytest.mark.parametrize("synth", SYNTHS)
def test_chorale_wav_is_not_silent_while_the_music_plays(synth: str, chorale: Path, tmp_path: Path):
    audio, rate = read_wav(render_wav(chorale, tmp_path / "c.wav", synth=synth))
    seconds = midi_seconds(chorale)
    assert len(audio) / rate == pytest.approx(seconds + TAIL_SECONDS, abs=1 / rate)
    quarters = audio[: int(seconds * rate)].reshape(-1, rate // 4 * audio.shape[1])
    assert np.abs(quarters.astype(float)).max(-1).min() > 100  # no silent quarter second


# -- command line ---------------------------------------------------------------------------------


def test_commands_write_beside_the_input(capsys, chorale: Path, checkpoint: Path, tmp_path: Path):
    code, out, _ = run(capsys, "plot", "pianoroll", chorale)
    assert code == 0 and out.strip() == str(chorale.with_suffix(".png"))
    code, out, _ = run(
        capsys,
        "plot",
        "attention",
        "--checkpoint",
        checkpoint,
        chorale,
        "--note",
        "5",
        "--head",
        "mean",
        "--out",
        tmp_path,
    )
    assert code == 0 and out.split() == [
        str(tmp_path / "chorale.attention.png"),
        str(tmp_path / "chorale.attention.html"),
    ]
    code, out, _ = run(capsys, "render", chorale, "--out", tmp_path / "c.wav", "--synth", "midirenderer")
    assert code == 0 and read_wav(tmp_path / "c.wav")[0].size > 0
    (checkpoint.parent / "metrics.jsonl").write_text('{"step": 1, "loss": 4.0, "elapsed": 1.0}\n')
    code, out, _ = run(capsys, "plot", "curves", checkpoint.parent)
    assert code == 0 and Path(out.strip()).stat().st_size > 10_000


def test_generate_wav_renders_beside_each_sample(capsys, checkpoint: Path, tmp_path: Path):
    code, out, _ = run(
        capsys, "generate", "--checkpoint", checkpoint, "--length", "1bar", "--samples", "1", "--wav", "--out", tmp_path
    )
    assert code == 0
    audio, rate = read_wav(tmp_path / "sample-1.wav")
    assert len(audio) / rate == pytest.approx(midi_seconds(tmp_path / "sample-1.mid") + TAIL_SECONDS, abs=0.01)
    assert (tmp_path / "sample-1.png").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["plot", "pianoroll", "missing.mid"], "missing.mid: no such MIDI file"),
        (["render", "{bad}"], "bad.mid: cannot read MIDI"),
        (["render", "{chorale}", "--soundfont", "none.sf2"], "none.sf2: no such SoundFont file"),
        (["plot", "attention", "--checkpoint", "{checkpoint}", "{chorale}", "--layer", "9"], "--layer '9': expected"),
        (
            ["plot", "attention", "--checkpoint", "{checkpoint}", "{chorale}", "--note", "9999"],
            "--note 9999: the piece has",
        ),
        (["plot", "curves", "{tmp}"], "no metrics.jsonl here"),
    ],
)
def test_bad_input_is_one_clear_line(capsys, chorale, checkpoint, tmp_path, args, message):
    (tmp_path / "bad.mid").write_bytes(b"not midi at all")
    paths = {"bad": tmp_path / "bad.mid", "chorale": chorale, "checkpoint": checkpoint, "tmp": tmp_path}
    code, _, err = run(capsys, *(a.format(**paths) for a in args))
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [["plot", "pianoroll"], ["plot", "attention"], ["plot", "curves"], ["render"]])
def test_every_option_is_documented(capsys, command):
    from reprise.cli.main import cli

    code, out, _ = run(capsys, *command, "--help")
    group = cli.commands[command[0]]
    params = (group.commands[command[1]] if len(command) > 1 else group).params
    assert code == 0
    for param in params:
        if param.param_type_name == "option" and param.name != "help":
            assert param.help and param.opts[0] in out
