"""The studio's JSON API through FastAPI's TestClient: jobs, their files, cancelling, and bad input."""

from __future__ import annotations

import io
import time
from pathlib import Path

import music21
import numpy as np
import pytest
import symusic
from fastapi.testclient import TestClient

from reprise.audio import TAIL_SECONDS, read_wav
from reprise.data.dataset import TokenDataset
from reprise.errors import RepriseError
from reprise.studio import app as studio_app
from reprise.studio import jobs
from reprise.studio.app import create_app

MODEL = "run:tiny"


@pytest.fixture(scope="module")
def client(tiny_run: Path, small_chorales: Path, tmp_path_factory: pytest.TempPathFactory):
    with TestClient(create_app(tiny_run.parent, [small_chorales], tmp_path_factory.mktemp("out"))) as c:
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


def start(client: TestClient, files=None, **form) -> dict:
    response = client.post("/api/jobs", data={"model": MODEL, **{k: str(v) for k, v in form.items()}}, files=files)
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
    response = client.post("/api/jobs", data={"model": MODEL, "length": str(jobs.MAX_NEW_TOKENS), "unit": "tokens"})
    job_id = response.json()["id"]
    while client.get(f"/api/jobs/{job_id}").json()["progress"] == 0:
        time.sleep(0.02)
    assert client.post(f"/api/jobs/{job_id}/cancel").status_code == 200
    job = finish(client, job_id, timeout=30)
    assert job["status"] == "cancelled" and job["progress"] < jobs.GENERATING
    assert start(client, length=1)["status"] == "done"


@pytest.mark.parametrize("task", ["harmonize", "accompany", "infill"])
def test_conditional_tasks_say_they_need_a_conditional_model(client: TestClient, task: str):
    job = start(client, task=task)
    assert job["status"] == "failed"
    assert f"this model cannot {task}" in job["error"] and "needs a conditional model" in job["error"]


def test_a_conditional_model_asked_for_another_task_says_what_it_was_trained_for():
    from types import SimpleNamespace

    harmonizer = SimpleNamespace(config=SimpleNamespace(task="harmonize"))
    job = jobs.TaskInput(jobs.JobRequest("model:x", task="accompany"), harmonizer, None, np.array([1]), print)
    with pytest.raises(RepriseError, match="this model cannot accompany: it was trained to harmonize"):
        jobs.TASKS["accompany"](job)


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
        ({"model": MODEL, "source": "midi"}, "starting from a MIDI file needs an uploaded file"),
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
