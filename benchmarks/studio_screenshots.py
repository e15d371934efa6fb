"""Screenshots of `reprise studio` for docs/studio.md, taken in headless chromium through Playwright.

    python benchmarks/studio_screenshots.py --runs RUNS --data DATA --model run:NAME \
        --harmonizer run:HARMONIZER --out docs/

Starts the studio on a free local port with the runs in ``--runs`` and the dataset
``--data``, then: generates from the chosen model (``--bars`` new bars after two bars
of a dataset piece) and shoots the page with its result (``studio.png``) and the
result's attention arcs (``studio-attention.png``); then harmonises a hand-written
melody (the first phrase of the chorale tune "Wachet auf") with the harmonizer and
shoots the page with that result (``studio-harmonize.png``). PNGs are reduced to
64 colours to stay small.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import symusic
from PIL import Image
from playwright.sync_api import Page, sync_playwright

from reprise.studio.app import background_server, create_app

TIMEOUT_MS = 300_000
# the first phrases of the chorale tune "Wachet auf", hand-written: (MIDI pitch, length in 16ths), one after another
WACHET_AUF = [(67, 4), (71, 4), (74, 4), (74, 4), (74, 4), (76, 8), (74, 4)] + [
    (74, 4),
    (74, 4),
    (79, 4),
    (78, 4),
    (76, 8),
    (74, 8),
]


def shoot(page: Page, out: Path, selector: str | None = None) -> None:
    """Screenshot the page (or one element) into ``out`` as a 64-colour PNG."""
    (page.locator(selector) if selector else page).screenshot(path=str(out))
    Image.open(out).convert("RGB").quantize(64).save(out, optimize=True)
    print(out, f"{out.stat().st_size // 1024} KB")


def write_melody(out: Path) -> Path:
    """The hand-written melody as a one-track MIDI file."""
    score = symusic.Score(480)
    track = symusic.Track("Wachet auf")
    start = 0
    for pitch, length in WACHET_AUF:
        track.notes.append(symusic.Note(start * 120, length * 120, pitch, 80))
        start += length
    score.tracks.append(track)
    score.dump_midi(str(out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, help="Folder of runs or model folders, beside the shipped models.")
    parser.add_argument("--data", type=Path, required=True, help="A prepared dataset (its valid pieces are primers).")
    parser.add_argument("--model", required=True, help="The model's key in the page, e.g. run:bach or model:bach.")
    parser.add_argument("--harmonizer", required=True, help="The harmonizer's key, e.g. model:harmonizer.")
    parser.add_argument("--bars", type=int, default=4, help="New bars to generate.")
    parser.add_argument("--chromium", default=shutil.which("chromium"), help="The chromium executable.")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="Folder for the PNGs.")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        sync_playwright() as playwright,
        background_server(create_app(args.runs, [args.data], Path(tmp))) as url,
    ):
        browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('#model option').length > 0")
        page.select_option("#model", args.model)
        page.check("input[name=source][value=dataset]")
        page.fill("#length", str(args.bars))
        page.fill("#temperature", "0.9")
        page.click("#generate")
        page.wait_for_selector("#result-1 img.roll", timeout=TIMEOUT_MS)
        page.wait_for_function("document.querySelector('#result-1 img.roll').naturalWidth > 0")
        shoot(page, args.out / "studio.png")
        page.click("#result-1 .show-attention")
        frame = page.frame_locator("#result-1 iframe.attention")
        frame.locator("rect.note").first.wait_for(timeout=TIMEOUT_MS)
        frame.locator("rect.note").nth(-8).click()
        page.locator("#result-1 iframe.attention").scroll_into_view_if_needed()
        shoot(page, args.out / "studio-attention.png", "#result-1")
        page.select_option("#model", args.harmonizer)
        page.check("input[name=source][value=midi]")
        page.set_input_files("#midi", str(write_melody(Path(tmp) / "wachet-auf.mid")))
        page.click("#generate")
        page.wait_for_selector("#result-1 img.roll", timeout=TIMEOUT_MS)
        page.wait_for_function("document.querySelector('#result-1 img.roll').naturalWidth > 0")
        shoot(page, args.out / "studio-harmonize.png", "main")
        browser.close()


if __name__ == "__main__":
    main()
