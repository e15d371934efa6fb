"""The studio's JSON API through FastAPI's TestClient: jobs, their files, cancelling, and bad input."""

from __future__ import annotations

import io
import time
from pathlib import Path

import music21
import numpy as np
import pytest
import symusic
import torch
from fastapi.testclient import TestClient

from reprise.audio import TAIL_SECONDS, read_wav
from reprise.cli.main import main
from reprise.data.dataset import TokenDataset, load_tokenizer
from reprise.data.pairs import Task
from reprise.data.performance import Performance
from reprise.data.tokenizer import Tokenizer
from reprise.models.checkpoint import load_checkpoint, save_checkpoint
from reprise.models.encoder_decoder import EncoderDecoder, EncoderDecoderConfig
from reprise.models.pretrained import read_model_config
from reprise.studio import app as studio_app
from reprise.studio import jobs, tasks
from reprise.studio.app import create_app

MODEL = "run:tiny"


def untrained(task: str, tokenizer: Tokenizer, out: Path) -> Path:
    """A small encoder-decoder for ``task`` with its initial weights, saved as a checkpoint: the studio's
    plumbing for a task does not depend on what the model has learnt."""
    torch.manual_seed(0)
    config = EncoderDecoderConfig(
        task=task,
        vocab_size=tokenizer.vocab_size,
        source_vocab_size=Task(task, tokenizer).source_vocab_size,
        context=64,
        source_context=32,
        d_model=32,
        encoder_layers=1,
        n_layers=1,
        n_heads=2,
    )
    save_checkpoint(out, EncoderDecoder(config), tokenizer)
    return out


@pytest.fixture(scope="module")
def runs(studio_runs: Path, small_chorales: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run, the exported tiny harmonizer, and untrained infill and accompany models."""
    folder = tmp_path_factory.mktemp("runs")
    for entry in studio_runs.iterdir():
        (folder / entry.name).symlink_to(entry.resolve(), target_is_directory=True)
    untrained("infill", load_tokenizer(small_chorales), folder / "infill")
    untrained("accompany", Performance(), folder / "accompany")
    return folder


@pytest.fixture(scope="module")
def client(runs: Path, small_chorales: Path, tmp_path_factory: pytest.TempPathFactory):
    with TestClient(create_app(runs, [small_chorales], tmp_path_factory.mktemp("out"))) as c:
        yield c


def finish(client: TestClient, job_id: str, timeout: float = 120) -> dict:
    """Poll the job until it stops running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still running after {timeout} s")


def start(client: TestClient, files=None, model: str = MODEL, **form) -> dict:
    response = client.post("/api/jobs", data={"model": model, **{k: str(v) for k, v in form.items()}}, files=files)
    assert response.status_code == 200, response.json()
    return finish(client, response.json()["id"])


def notes(score: symusic.Score, before: int | None = None) -> list[tuple[int, int, int]]:
    """(track, onset, pitch) of every note, optionally only those starting before tick ``before``."""
    return sorted(
        (t, n.time, n.pitch)
        for t, track in enumerate(score.tracks)
        for n in track.notes
        if before is None or n.time < before
    )


def test_lists_the_runs_and_the_datasets(client: TestClient, small_chorales: Path):
    models = client.get("/api/models").json()
    tiny = next(m for m in models if m["key"] == MODEL)
    assert tiny["tokenizer"] == "chorale-grid" and tiny["tokens_per_bar"] == 64 and tiny["valid_nll"] > 0
    (dataset,) = client.get("/api/datasets").json()
    assert dataset["key"] == small_chorales.name
    assert len(dataset["pieces"]) == len(TokenDataset(small_chorales, "valid"))


def test_generate_from_nothing_serves_midi_wav_png_and_musicxml(client: TestClient):
    job = start(client, length=1, samples=2, seed=3)
    assert job["status"] == "done" and job["samples"] == 2, job
    base = f"/api/jobs/{job['id']}/samples"
    midi = client.get(f"{base}/1/mid")
    assert midi.headers["content-type"] == "audio/midi"
    score = symusic.Score.from_midi(midi.content)
    assert [t.name for t in score.tracks] == ["Soprano", "Alto", "Tenor", "Bass"] and notes(score)
    audio, rate = read_wav(io.BytesIO(client.get(f"{base}/1/wav").content))
    seconds = score.to("second").end()
    assert len(audio) / rate == pytest.approx(seconds + TAIL_SECONDS, abs=0.01) and np.abs(audio).max() > 1000
    assert client.get(f"{base}/2/png").content.startswith(b"\x89PNG")
    xml = client.get(f"{base}/1/musicxml?download=1")
    assert "attachment" in xml.headers["content-disposition"]
    parsed = music21.converter.parseData(xml.content.decode(), format="musicxml").stripTies()
    assert len(parsed.parts) == 4
    assert sorted(p.midi for n in parsed.flatten().notes for p in n.pitches) == sorted(p for *_, p in notes(score))


def test_same_seed_same_music_and_another_seed_other_music(client: TestClient):
    def midi(seed: int) -> bytes:
        job = start(client, length=1, seed=seed)
        return client.get(f"/api/jobs/{job['id']}/samples/1/mid").content

    first = midi(7)
    assert midi(7) == first and midi(8) != first


def test_an_uploaded_primer_opens_every_sample(client: TestClient, small_chorales: Path, tmp_path: Path):
    dataset = TokenDataset(small_chorales, "valid")
    primer = dataset.tokenizer.decode(dataset.piece(1)[: 1 + 2 * 64])  # two bars
    primer.dump_midi(str(tmp_path / "primer.mid"))
    upload = {"midi": ("primer.mid", (tmp_path / "primer.mid").read_bytes(), "audio/midi")}
    job = start(client, files=upload, source="midi", primer=2, length=1, samples=2)
    assert job["status"] == "done", job
    two_bars = 2 * 4 * primer.tpq
    for n in (1, 2):
        result = symusic.Score.from_midi(client.get(f"/api/jobs/{job['id']}/samples/{n}/mid").content)
        result = result.resample(primer.tpq)
        # notes still sounding at the primer's end may be held on into the new bar
        assert [x[:2] for x in notes(result, two_bars)] == [x[:2] for x in notes(primer, two_bars)]
        assert result.end() > two_bars


def test_a_dataset_piece_opens_the_sample(client: TestClient, small_chorales: Path):
    dataset = TokenDataset(small_chorales, "valid")
    job = start(client, source="dataset", dataset=small_chorales.name, piece=2, primer=1, length=1)
    assert job["status"] == "done", job
    result = symusic.Score.from_midi(client.get(f"/api/jobs/{job['id']}/samples/1/mid").content)
    expected = dataset.tokenizer.decode(dataset.piece(2)[: 1 + 64])
    bar = 4 * expected.tpq
    assert [x[:2] for x in notes(result.resample(expected.tpq), bar)] == [x[:2] for x in notes(expected, bar)]


def test_cancel_stops_a_long_job_and_the_worker_goes_on(client: TestClient):
    response = client.post("/api/jobs", data={"model": MODEL, "length": str(tasks.MAX_NEW_TOKENS), "unit": "tokens"})
    job_id = response.json()["id"]
    while client.get(f"/api/jobs/{job_id}").json()["progress"] == 0:
        time.sleep(0.02)
    assert client.post(f"/api/jobs/{job_id}/cancel").status_code == 200
    job = finish(client, job_id, timeout=30)
    assert job["status"] == "cancelled" and job["progress"] < jobs.GENERATING
    assert start(client, length=1)["status"] == "done"


@pytest.mark.parametrize("task", ["harmonize", "accompany", "infill"])
def test_conditional_tasks_say_they_need_a_conditional_model(client: TestClient, task: str):
    job = start(client, files=upload(TUNE), task=task, source="midi")
    assert job["status"] == "failed"
    assert f"this model cannot {task}" in job["error"] and "needs a conditional model" in job["error"]


@pytest.mark.parametrize("task", ["continue", "infill"])
def test_a_conditional_model_asked_for_another_task_says_what_it_was_trained_for(client: TestClient, task: str):
    job = start(client, files=upload(TUNE), model=HARMONIZER, task=task, source="midi")
    assert job["status"] == "failed" and f"this model cannot {task}: it was trained to harmonize" in job["error"]


# -- the conditional tasks -------------------------------------------------------------------
HARMONIZER = "run:harmonizer"
TUNE = [(0, 4, 67), (4, 4, 71), (8, 4, 74), (12, 2, 72), (14, 2, 71), (16, 8, 69), (28, 4, 67)]  # (16ths, 16ths, pitch)


def melody_score(*tracks: list[tuple[float, float, int]], names=("Tune", "Echo")) -> symusic.Score:
    """A hand-written melody (notes in 16th steps) as a score of one track per list."""
    score = symusic.Score(480)
    for name, notes in zip(names, tracks):
        track = symusic.Track(name)
        for start, length, pitch in notes:
            track.notes.append(symusic.Note(round(start * 120), round(length * 120), pitch, 80))
        score.tracks.append(track)
    return score


def upload(*tracks: list[tuple[float, float, int]], name: str = "tune.mid") -> dict:
    return {"midi": (name, melody_score(*tracks).dumps_midi(), "audio/midi")}


def sample_score(client: TestClient, job: dict, n: int = 1) -> symusic.Score:
    return symusic.Score.from_midi(client.get(f"/api/jobs/{job['id']}/samples/{n}/mid").content)


def test_export_makes_an_encoder_decoder_model_folder_that_the_studio_lists(client: TestClient, runs: Path, capsys):
    meta = read_model_config(runs / "harmonizer")
    assert meta["architecture"] == "encoder-decoder" and meta["card"]["task"] == "harmonize"  # not "continue"
    model, _ = load_checkpoint(runs / "harmonizer")
    assert isinstance(model, EncoderDecoder) and model.config.task == "harmonize"
    listed = {m["key"]: m for m in client.get("/api/models").json()}
    assert listed[HARMONIZER]["task"] == "harmonize" and listed[HARMONIZER]["tokenizer"] == "chorale-grid"
    assert listed[HARMONIZER]["valid_nll"] == meta["card"]["valid_nll"] > 0
    assert listed["run:infill"]["task"] == "infill" and listed["run:accompany"]["task"] == "accompany"
    wrong = [
        "export",
        str(runs / "harmonizer"),
        "--out",
        str(runs.parent / "x"),
        "--summary",
        "x",
        "--task",
        "continue",
    ]
    assert main(wrong) == 1 and "the model was trained to harmonize" in capsys.readouterr().err


def test_harmonize_keeps_the_uploaded_melody_as_the_soprano(client: TestClient):
    low = [(start, length, pitch - 12) for start, length, pitch in TUNE]  # an octave down: --transpose 12
    job = start(client, files=upload(low), model=HARMONIZER, task="harmonize", source="midi", transpose=12, samples=2)
    assert job["status"] == "done" and job["samples"] == 2, job
    for n in (1, 2):
        score = sample_score(client, job, n)
        assert [t.name for t in score.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
        soprano = [(n.time * 4 // score.tpq, n.duration * 4 // score.tpq, n.pitch) for n in score.tracks[0].notes]
        assert soprano == TUNE and all(len(t.notes) for t in score.tracks[1:])
    base = f"/api/jobs/{job['id']}/samples/1"
    assert client.get(f"{base}/png").content.startswith(b"\x89PNG")
    audio, rate = read_wav(io.BytesIO(client.get(f"{base}/wav").content))
    assert len(audio) > rate and np.abs(audio).max() > 1000
    parsed = music21.converter.parseData(client.get(f"{base}/musicxml").content.decode(), format="musicxml")
    assert [n.pitch.midi for n in parsed.parts[0].flatten().stripTies().notes] == [p for *_, p in TUNE]
    attention = client.get(f"{base}/attention")
    assert attention.status_code == 400 and "cross-attention" in attention.json()["detail"]
    assert "cross-attention" in job["attention"]


def test_harmonize_a_dataset_soprano(client: TestClient, small_chorales: Path):
    dataset = TokenDataset(small_chorales, "valid")
    job = start(client, model=HARMONIZER, task="harmonize", source="dataset", dataset=small_chorales.name, piece=1)
    assert job["status"] == "done", job
    result = dataset.tokenizer.encode_score(sample_score(client, job))
    np.testing.assert_array_equal(
        dataset.tokenizer.decode_grid(result)[:, 0], dataset.tokenizer.decode_grid(dataset.piece(1))[:, 0]
    )


@pytest.mark.parametrize(
    "tracks, form, message",
    [
        ([[(0, 4, 67), (2, 4, 71)]], {}, "tune.mid: the melody is not one voice: MIDI pitches 67 and 71 sound"),
        ([[(0, 4, 67), (0, 4, 71)]], {"quantize": "true"}, "tune.mid: the melody is not one voice"),
        ([[(0.5, 4, 67)]], {}, "tune.mid: the note at bar 1, beat 1.12 (MIDI pitch 67) is off the 16th-note grid"),
        ([TUNE], {"transpose": "-20"}, "tune.mid: the melody spans MIDI pitches 47..54, outside the soprano range"),
        ([TUNE, TUNE], {}, "tune.mid: 2 tracks have notes (Tune, Echo); choose the melody with --melody-track"),
        ([TUNE], {"melody_track": "Bass"}, "tune.mid: no track matches --tracks Bass"),
        ([], {}, "tune.mid: not a readable MIDI file"),
    ],
)
def test_a_melody_the_harmonizer_cannot_take_fails_with_the_commands_message(client, tracks, form, message):
    files = upload(*tracks) if tracks else {"midi": ("tune.mid", b"MThd\0\0\0\6\0\1", "audio/midi")}
    job = start(client, files=files, model=HARMONIZER, task="harmonize", source="midi", **form)
    assert job["status"] == "failed" and job["error"].startswith(message), job["error"]
    assert "\n" not in job["error"]


@pytest.mark.parametrize("form", [{"quantize": "true"}, {"melody_track": "Echo"}])
def test_quantize_and_the_melody_track_fix_what_they_name(client: TestClient, form: dict):
    tracks = [[(0.5, 4, 67), (4, 4, 69)]] if "quantize" in form else [[(0, 4, 67)], TUNE]
    job = start(client, files=upload(*tracks), model=HARMONIZER, task="harmonize", source="midi", **form)
    assert job["status"] == "done", job
    soprano = [n.pitch for n in sample_score(client, job).tracks[0].notes]
    assert soprano == ([67, 69] if "quantize" in form else [p for *_, p in TUNE])


def test_harmonize_without_music_is_refused_before_it_starts(client: TestClient):
    for form, message in [
        ({"source": "nothing"}, "harmonize starts from a MIDI file or a dataset piece, not 'nothing'"),
        ({"source": "midi"}, "harmonize from a MIDI file needs an uploaded file"),
    ]:
        response = client.post("/api/jobs", data={"model": HARMONIZER, "task": "harmonize", **form})
        assert response.status_code == 400 and response.json()["detail"] == message


def test_infill_keeps_every_bar_outside_the_span(client: TestClient, small_chorales: Path):
    dataset = TokenDataset(small_chorales, "valid")
    tokenizer = dataset.tokenizer
    job = start(client, model="run:infill", task="infill", source="dataset", dataset=small_chorales.name, bars="2-3")
    assert job["status"] == "done", job
    given, filled = (
        tokenizer.decode_grid(dataset.piece(0)),
        tokenizer.decode_grid(tokenizer.encode_score(sample_score(client, job))),
    )
    np.testing.assert_array_equal(filled[:16], given[:16])
    np.testing.assert_array_equal(filled[48 : len(given)], given[48:])
    assert not np.array_equal(filled[16:48], given[16:48])


@pytest.mark.parametrize(
    "bars, message",
    [("5-99", "tune.mid: bars 5-99: the piece has 2 bars of 16 steps"), ("x", "tune.mid: --bars 'x': expected a bar")],
)
def test_infill_bars_the_piece_does_not_have_are_refused(client: TestClient, bars: str, message: str):
    chorale = melody_score(*[[(s, ln, p - 12 * v) for s, ln, p in TUNE] for v in range(4)], names="SATB")
    files = {"midi": ("tune.mid", chorale.dumps_midi(), "audio/midi")}
    job = start(client, files=files, model="run:infill", task="infill", source="midi", bars=bars)
    assert job["status"] == "failed" and job["error"].startswith(message), job["error"]


def test_accompany_writes_two_tracks_keeping_the_melody(client: TestClient):
    song = melody_score(TUNE, [(0, 32, 48)], names=("MELODY", "PIANO"))
    files = {"midi": ("song.mid", song.dumps_midi(), "audio/midi")}
    job = start(
        client,
        files=files,
        model="run:accompany",
        task="accompany",
        source="midi",
        melody_track="MELODY",
        length=64,
        unit="tokens",
    )
    assert job["status"] == "done", job
    result = sample_score(client, job).to("second")
    assert [t.name for t in result.tracks] == ["Melody", "Accompaniment"]
    given = song.to("second").tracks[0].notes
    assert [(round(n.time, 2), n.pitch) for n in result.tracks[0].notes] == [(round(n.time, 2), n.pitch) for n in given]
    assert client.get(f"/api/jobs/{job['id']}/samples/1/png").content.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "song.mid: the file is empty"),
        (b"%PDF-1.4 not music", "song.mid: not a MIDI file"),
        (b"MThd" + b"\0" * (4 * 2**20), "song.mid: too large for a MIDI file (over 4 MB)"),
    ],
)
def test_bad_uploads_get_a_clear_message_and_the_server_goes_on(client: TestClient, content: bytes, message: str):
    response = client.post(
        "/api/jobs", data={"model": MODEL, "source": "midi"}, files={"midi": ("song.mid", content, "audio/midi")}
    )
    assert response.status_code == 400 and response.json()["detail"].startswith(message)
    assert client.get("/api/models").status_code == 200


def test_a_broken_midi_file_fails_its_job_with_the_reason(client: TestClient):
    job = start(client, files={"midi": ("broken.mid", b"MThd\0\0\0\6\0\1", "audio/midi")}, source="midi")
    assert job["status"] == "failed" and "cannot read MIDI" in job["error"]


@pytest.mark.parametrize(
    "form, message",
    [
        ({"model": "run:nope"}, "unknown model 'run:nope'"),
        ({"model": MODEL, "temperature": "warm"}, "bad request (temperature:"),
        ({"model": MODEL, "samples": "99"}, "samples: choose 1 to 8"),
        ({"model": MODEL, "source": "midi"}, "continue from a MIDI file needs an uploaded file"),
    ],
)
def test_impossible_requests_answer_400_with_one_line(client: TestClient, form: dict, message: str):
    response = client.post("/api/jobs", data=form)
    assert response.status_code == 400 and message in response.json()["detail"]


def test_unknown_jobs_and_samples_are_refused(client: TestClient):
    assert "no job 'abc'" in client.get("/api/jobs/abc").json()["detail"]
    job = start(client, length=1)
    assert client.get(f"/api/jobs/{job['id']}/samples/2/mid").status_code == 400
    assert client.get(f"/api/jobs/{job['id']}/samples/1/exe").status_code == 400


def test_attention_page_is_cut_to_a_window_with_a_note(client: TestClient, monkeypatch: pytest.MonkeyPatch):
    job = start(client, length=2)  # BOS + 128 tokens
    monkeypatch.setattr(jobs, "ATTENTION_TOKENS", 66)
    page = client.get(f"/api/jobs/{job['id']}/samples/1/attention").text
    assert "first 65 of 129 tokens: longer pieces are cut to a window" in page
    assert page.count('class="note"') > 0


def test_the_page_and_its_assets_come_from_the_package(client: TestClient):
    page = client.get("/").text
    assert '<script src="/static/studio.js">' in page and "http" not in page.replace("http-equiv", "")
    for asset in ("studio.js", "studio.css"):
        response = client.get(f"/static/{asset}")
        assert response.status_code == 200 and "https://" not in response.text
    assert studio_app.STATIC.is_dir()
