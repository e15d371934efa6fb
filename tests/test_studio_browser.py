"""The studio in a real browser: Debian's chromium, headless, driven by Playwright, against a live server.

Skipped, with the reason printed, where no chromium is installed (`.ci/run` installs it).
"""

from __future__ import annotations

import io
from pathlib import Path

import music21
import pytest
import symusic

from reprise.audio import read_wav
from reprise.data.dataset import TokenDataset
from reprise.studio.app import background_server, create_app

pytest.importorskip("playwright.sync_api", reason="studio browser tests skipped: playwright is not installed")

JOB_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def server(studio_runs: Path, small_chorales: Path, tmp_path_factory: pytest.TempPathFactory):
    with background_server(create_app(studio_runs, [small_chorales], tmp_path_factory.mktemp("out"))) as url:
        yield url


@pytest.fixture(scope="module")
def browser(chromium: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server: str):
    page = browser.new_page(accept_downloads=True)
    page.goto(server)
    page.wait_for_function("document.querySelectorAll('#model option').length > 0")
    page.select_option("#model", "run:tiny")  # shipped models come first in the list
    yield page
    page.close()


def generate(page, wait_for: str = "#result-1 img.roll") -> None:
    page.click("#generate")
    page.wait_for_selector(wait_for, timeout=JOB_TIMEOUT_MS)


def test_generate_from_nothing_then_play_and_download(page, tmp_path: Path):
    page.fill("#length", "1")
    page.fill("#samples", "2")
    generate(page, "#result-2 img.roll")
    assert "2 samples ready" in page.inner_text("#message")
    page.wait_for_function("document.querySelector('#result-1 img.roll').naturalWidth > 100")

    # play: the audio element gets a src that returns a WAV the browser can decode
    src = page.eval_on_selector("#result-1 audio", "a => a.src")  # absolute
    audio, rate = read_wav(io.BytesIO(page.request.get(src).body()))
    assert len(audio) > rate
    page.eval_on_selector("#result-1 audio", "a => { a.preload = 'auto'; a.load(); }")
    page.wait_for_function("document.querySelector('#result-1 audio').duration > 1", timeout=30_000)

    with page.expect_download() as download:
        page.click("#result-1 .dl-mid")
    midi = tmp_path / "sample.mid"
    download.value.save_as(midi)
    assert [t.name for t in symusic.Score(str(midi)).tracks] == ["Soprano", "Alto", "Tenor", "Bass"]

    with page.expect_download(timeout=JOB_TIMEOUT_MS) as download:
        page.click("#result-1 .dl-xml")
    xml = tmp_path / "sample.musicxml"
    download.value.save_as(xml)
    assert len(music21.converter.parse(str(xml)).parts) == 4


def test_attention_arcs_show_in_the_page(page):
    page.fill("#length", "1")
    generate(page)
    page.click("#result-1 .show-attention")
    frame = page.frame_locator("#result-1 iframe.attention")
    frame.locator("rect.note").first.wait_for(timeout=JOB_TIMEOUT_MS)
    frame.locator("rect.note").last.click()
    assert "attends to" in frame.locator("#info").inner_text()


def test_upload_a_midi_primer(page, small_chorales: Path, tmp_path: Path):
    dataset = TokenDataset(small_chorales, "valid")
    primer = tmp_path / "primer.mid"
    dataset.tokenizer.decode(dataset.piece(0)[: 1 + 2 * 64]).dump_midi(str(primer))
    page.check("input[name=source][value=midi]")
    assert page.is_visible("#midi") and page.is_visible("#primer")
    page.set_input_files("#midi", str(primer))
    page.fill("#length", "1")
    generate(page)
    src = page.eval_on_selector("#result-1 .dl-mid", "a => a.href")
    result = symusic.Score.from_midi(page.request.get(src).body())
    assert result.end() > 2 * 4 * result.tpq  # the two primer bars and the new one


TUNE = [(0, 4, 67), (4, 4, 71), (8, 4, 74), (12, 2, 72), (14, 2, 71), (16, 8, 69), (28, 4, 67)]  # (16ths, 16ths, pitch)


def write_melody(path: Path, notes: list[tuple[int, int, int]]) -> Path:
    """A hand-written melody (onsets and lengths in 16th steps) as a one-track MIDI file."""
    melody = symusic.Score(480)
    track = symusic.Track(name="melody", program=0)
    for start, length, pitch in notes:
        track.notes.append(symusic.Note(start * 120, length * 120, pitch, 80))
    melody.tracks.append(track)
    melody.dump_midi(str(path))
    return path


def test_harmonise_an_uploaded_melody_then_play_and_download(page, tmp_path: Path):
    page.select_option("#model", "run:harmonizer")  # an encoder-decoder: the page offers its task only
    assert page.is_checked("input[name=task][value=harmonize]") and page.is_disabled("input[name=task][value=continue]")
    assert page.inner_text("#source-legend") == "Melody to harmonise" and "soprano" in page.inner_text("#task-note")
    assert not page.is_visible("#length") and page.is_visible("#transpose") and page.is_visible("#quantize")
    page.set_input_files("#midi", str(write_melody(tmp_path / "tune.mid", TUNE)))
    generate(page)
    assert "1 sample ready" in page.inner_text("#message")
    page.wait_for_function("document.querySelector('#result-1 img.roll').naturalWidth > 100")
    page.eval_on_selector("#result-1 audio", "a => { a.preload = 'auto'; a.load(); }")
    page.wait_for_function("document.querySelector('#result-1 audio').duration > 1", timeout=30_000)
    assert not page.is_visible("#result-1 .show-attention") and "cross-attention" in page.inner_text("#result-1")

    with page.expect_download() as download:
        page.click("#result-1 .dl-mid")
    download.value.save_as(tmp_path / "harmony.mid")
    score = symusic.Score(str(tmp_path / "harmony.mid"))
    assert [t.name for t in score.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
    soprano = [(n.time * 4 // score.tpq, n.duration * 4 // score.tpq, n.pitch) for n in score.tracks[0].notes]
    assert soprano == TUNE  # the uploaded melody, note for note

    with page.expect_download(timeout=JOB_TIMEOUT_MS) as download:
        page.click("#result-1 .dl-xml")
    download.value.save_as(tmp_path / "harmony.musicxml")
    parsed = music21.converter.parse(str(tmp_path / "harmony.musicxml"))
    assert len(parsed.parts) == 4
    assert [n.pitch.midi for n in parsed.parts[0].flatten().stripTies().notes] == [p for *_, p in TUNE]


@pytest.mark.parametrize(
    "name, message",
    [("chords.mid", "chords.mid: the melody is not one voice: MIDI pitches 67 and 71"), ("notes.txt", "not a MIDI")],
)
def test_a_melody_the_harmonizer_cannot_take_shows_the_reason(page, tmp_path: Path, name: str, message: str):
    if name == "notes.txt":
        (tmp_path / name).write_text("G B D")
    else:
        write_melody(tmp_path / name, [(0, 4, 67), (0, 4, 71)])
    page.select_option("#model", "run:harmonizer")
    page.set_input_files("#midi", str(tmp_path / name))
    page.click("#generate")
    page.wait_for_function("document.querySelector('#message').textContent.length > 0", timeout=JOB_TIMEOUT_MS)
    assert page.inner_text("#message").startswith(f"{name}: {message}" if name == "notes.txt" else message)
    assert page.is_enabled("#generate") and page.query_selector("#result-1") is None


def test_a_bad_upload_shows_a_message_and_the_server_goes_on(page, tmp_path: Path):
    (tmp_path / "notes.txt").write_text("C D E F G")
    page.check("input[name=source][value=midi]")
    page.set_input_files("#midi", str(tmp_path / "notes.txt"))
    page.click("#generate")
    page.wait_for_function("document.querySelector('#message').textContent.length > 0")
    assert "notes.txt: not a MIDI file" in page.inner_text("#message")
    page.check("input[name=source][value=nothing]")
    page.fill("#length", "1")
    generate(page)
    assert "1 sample ready" in page.inner_text("#message")


def test_cancel_stops_a_long_job(page):
    page.select_option("#unit", "tokens")
    page.fill("#length", "4096")
    page.click("#generate")
    page.wait_for_function("document.querySelector('#progress').value > 0", timeout=JOB_TIMEOUT_MS)
    page.click("#cancel")
    page.wait_for_function("document.querySelector('#message').textContent.includes('Cancelled')", timeout=30_000)
    assert page.is_enabled("#generate") and page.query_selector("#result-1") is None


def test_the_length_unit_follows_the_model(page):
    assert page.input_value("#unit") == "bars" and page.input_value("#length") == "8"
    options = page.eval_on_selector_all("#model option", "os => os.map(o => o.value)")
    page.evaluate(
        """() => {  // a model whose tokenizer has no fixed bar length, as performance tokens
        const s = document.getElementById('model');
        s.add(new Option('performance', 'x:perf'));
        models.push({key: 'x:perf', name: 'perf', summary: '', task: 'continue', tokenizer: 'performance',
                     tokens_per_bar: null});
    }"""
    )
    page.select_option("#model", "x:perf")
    assert page.input_value("#unit") == "tokens" and page.input_value("#length") == "256"
    page.select_option("#model", options[-1])  # run:tiny, a chorale grid again
    assert page.input_value("#unit") == "bars" and page.input_value("#length") == "8"
