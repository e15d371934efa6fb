"""How fast `prepare` reads a MIDI folder, per tokenizer: files per second, end to end.

    .venv/bin/python benchmarks/prepare.py [--source ../shared/data/pop909] [--workers 2]
        [--limit N] [--tokenizers performance,remi,...] [--out benchmarks/results/prepare.json]

Each tokenizer prepares the whole source (listing, parallel reading and
encoding, fitting, writing) into a temporary directory; the JSON has the
timings and what was skipped, and a markdown table is printed for docs/prepare.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from reprise.data.dataset import read_manifest
from reprise.data.prepare import prepare

ROOT = Path(__file__).resolve().parents[1]
TOKENIZERS = ("performance", "remi", "tsd", "midilike", "melody-grid")


def run(source: Path, tokenizers: list[str], workers: int, limit: int | None) -> dict:
    """Prepare ``source`` (its first ``limit`` MIDI files) with each tokenizer and time it."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = _subset(source, Path(tmp) / "source", limit)
        n_files = sum(1 for _ in folder.glob("*.mid"))
        for name in tokenizers:
            started = time.perf_counter()
            manifest = read_manifest(prepare(str(folder), Path(tmp) / name, name, workers=workers))
            seconds = time.perf_counter() - started
            rows.append(
                {
                    "tokenizer": name,
                    "files": n_files,
                    "seconds": round(seconds, 2),
                    "files_per_s": round(n_files / seconds, 1),
                    "tokens": sum(c["tokens"] for c in manifest["counts"].values()),
                    "skipped": manifest["skipped"],
                }
            )
    return {
        "source": str(source),
        "workers": workers,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "results": rows,
    }


def _subset(source: Path, into: Path, limit: int | None) -> Path:
    """``source`` itself, or a folder linking to its first ``limit`` files."""
    if limit is None:
        return source
    into.mkdir()
    for path in sorted(source.glob("*.mid"))[:limit]:
        os.symlink(path, into / path.name)
    return into


def table(report: dict) -> str:
    lines = ["| tokenizer | files | seconds | files/s | tokens | skipped |", "|---|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        lines.append(
            f"| {r['tokenizer']} | {r['files']} | {r['seconds']} | {r['files_per_s']} | "
            f"{r['tokens']:,} | {len(r['skipped'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "data" / "pop909")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, help="only the first N files")
    parser.add_argument("--tokenizers", default=",".join(TOKENIZERS))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "prepare.json")
    args = parser.parse_args()
    if not args.source.is_dir():
        raise SystemExit(f"{args.source}: no such folder")
    report = run(args.source, args.tokenizers.split(","), args.workers, args.limit)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(table(report))


if __name__ == "__main__":
    main()
