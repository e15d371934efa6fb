"""Forward+backward time and peak memory of one attention layer, per kind and sequence length.

    python benchmarks/attention.py --json attention.json [--markdown docs/attention.md]

Setting: batch 1, one attention layer (projections included), width 512, 8 heads
(plus two sweeps at L = 1024: head count at width 512, and width at 8 heads).

Peak memory: every configuration runs in a fresh Python process, which does one
small forward+backward (so that libraries, thread pools and kernels are loaded),
reads ``ru_maxrss`` (the process's resident high-water mark), runs one
forward+backward at full length and reads it again. The difference is the
extra resident memory the pass needed: activations, gradients, workspaces. (The
CPU has no allocator statistics like CUDA's, and ``tracemalloc`` does not see
torch's allocations.) Time is the fastest of up to three further passes: the
machine is shared, and the minimum is the measure least disturbed by others.

A configuration whose predicted memory exceeds ``--max-gib`` (or what the
machine has available, less 4 GiB) is not run and is reported as not fitting;
Shaw's reference never runs past L = 2048.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

GIB = 2**30
LENGTHS = (256, 512, 1024, 2048, 4096)
LONG = (8192,)  # only for the kinds built for long pieces: full and relative
KINDS = {  # label -> ModelConfig fields
    "full": {"attention": "full"},
    "relative": {"attention": "relative"},
    "relative-shaw": {"attention": "relative-shaw"},
    "local": {"attention": "local", "block_size": 256},
    "local-relative": {"attention": "local", "block_size": 256, "local_relative": True},
    "fourier": {"attention": "fourier"},
    "rope": {"attention": "rope"},
    "alibi": {"attention": "alibi"},
}


THEORY = """What to expect. Shaw's reference materialises ``R``, one embedding per (query, key) pair and
head: L²·D floats whatever the head count. The skewed path's largest tensors are logits, H·L²
floats. So Shaw / skewed memory grows like D / H = head_dim (the sweeps below: Shaw is flat in the
head count and doubles with the width; skewed grows with the head count and hardly with the
width). The skewed path runs in chunks of queries and keeps each chunk's probabilities for the
backward pass (causal: the lower triangle only, about H·L²/2 floats), so it still grows like L²,
while SDPA (`full`) recomputes them and grows like L.
Times under about 0.3 s are at the mercy of other processes on this shared 2-core CPU."""


def predicted_bytes(kind: str, length: int, width: int, heads: int) -> float:
    """A generous estimate of the pass's memory, to skip what cannot fit (measured ones come out lower)."""
    square = heads * length**2 * 4  # one (H, L, L) float32 tensor
    linear = 64 * length * width * 4 + 64 * 2**20
    return linear + {
        "relative-shaw": length**2 * width * 4 + 8 * square,
        "relative": square,
        "alibi": 4 * square,
        "full": 0,
        "rope": 0,
    }.get(kind, 0)


def measure(kind: str, length: int, width: int, heads: int) -> dict:
    """Runs in the child process: one layer's peak extra memory and forward+backward time."""
    import torch

    from reprise.models.attention import build_attention
    from reprise.models.config import ModelConfig

    torch.manual_seed(0)
    config = ModelConfig(context=length, d_model=width, n_heads=heads, n_layers=1, dropout=0.0, **KINDS[kind])
    layer = build_attention(config)

    def step(n: int) -> None:
        x = torch.randn(1, n, width, requires_grad=True)
        layer(x).square().mean().backward()

    step(64)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    step(length)
    times = [time.perf_counter() - started]
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    while len(times) < 4 and sum(times) < 20:
        started = time.perf_counter()
        step(length)
        times.append(time.perf_counter() - started)
    return {"peak_mib": round(peak_kib / 1024, 1), "seconds": round(min(times[1:] or times), 4)}


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 8 * GIB


def run(kind: str, length: int, width: int, heads: int, max_gib: float) -> dict:
    """One configuration in a fresh process (or the reason it was not run)."""
    row = {"kind": kind, "length": length, "width": width, "heads": heads, "head_dim": width // heads}
    limit = min(max_gib * GIB, available_bytes() - 4 * GIB)
    need = predicted_bytes(kind, length, width, heads)
    if (kind == "relative-shaw" and length > 2048) or need > limit:
        return {**row, "status": f"does not fit (predicted {need / GIB:.1f} GiB)"}
    command = [sys.executable, __file__, "--child", kind, str(length), str(width), str(heads)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if done.returncode:
        return {**row, "status": f"failed: {done.stderr.strip().splitlines()[-1]}"}
    result = {**row, **json.loads(done.stdout.splitlines()[-1]), "status": "ok"}
    print(json.dumps(result), file=sys.stderr)
    return result


def plan() -> list[tuple[str, int, int, int]]:
    """(kind, length, width, heads) of every configuration, cheapest first."""
    main = [(kind, n, 512, 8) for n in LENGTHS for kind in KINDS]
    main += [(kind, n, 512, 8) for n in LONG for kind in ("full", "relative")]
    heads = [(kind, 1024, 512, h) for h in (2, 32) for kind in ("relative", "relative-shaw")]
    widths = [(kind, 1024, w, 8) for w in (256, 1024) for kind in ("relative", "relative-shaw")]
    return main + heads + widths


def find(rows: list[dict], kind: str, length: int, width: int = 512, heads: int = 8) -> dict | None:
    for row in rows:
        if (row["kind"], row["length"], row["width"], row["heads"]) == (kind, length, width, heads):
            return row if row["status"] == "ok" else None
    return None


def cell(row: dict | None, field: str) -> str:
    return "—" if row is None else f"{row[field]:,.1f}" if field == "peak_mib" else f"{row[field]:.3f}"


def grid(rows: list[dict], field: str) -> list[str]:
    """A kind × length table of one field."""
    lengths = sorted({r["length"] for r in rows if (r["width"], r["heads"]) == (512, 8)})
    lines = ["| kind | " + " | ".join(f"L={n}" for n in lengths) + " |", "|---" * (len(lengths) + 1) + "|"]
    for kind in KINDS:
        lines.append(f"| {kind} | " + " | ".join(cell(find(rows, kind, n), field) for n in lengths) + " |")
    return lines


def ratio(a: dict | None, b: dict | None, field: str) -> str:
    return "—" if a is None or b is None else f"{a[field] / b[field]:.2f}×"


def growth(rows: list[dict], kind: str) -> str:
    """The exponent p of memory ∝ L^p between the two longest lengths measured."""
    measured = [find(rows, kind, n) for n in LENGTHS + LONG]
    measured = [r for r in measured if r is not None]
    if len(measured) < 2:
        return "—"
    a, b = measured[-2], measured[-1]
    return f"{math.log(b['peak_mib'] / a['peak_mib']) / math.log(b['length'] / a['length']):.2f}"


def markdown(rows: list[dict], command: str) -> str:
    """The report: method, the two grids, the targets, the sweeps, skipped configurations."""
    full, skewed, shaw = (lambda n, k=k: find(rows, k, n) for k in ("full", "relative", "relative-shaw"))
    lines = [
        "# Attention: time and memory",
        "",
        f"Produced by `{command}` on a 2-core CPU "
        f"(torch {__import__('torch').__version__}, {os.cpu_count()} CPUs visible).",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        THEORY,
        "",
        "One layer, batch 1, width 512, 8 heads (head_dim 64); `local` uses blocks of 256. — = not run (see below).",
        "",
        "## Forward+backward time (s)",
        "",
        *grid(rows, "seconds"),
        "",
        "## Peak extra memory (MiB)",
        "",
        *grid(rows, "peak_mib"),
        "",
        "## Growth and targets",
        "",
        f"Memory ∝ L^p between the two longest lengths measured: relative-shaw p = {growth(rows, 'relative-shaw')}, "
        f"relative p = {growth(rows, 'relative')}, full p = {growth(rows, 'full')}.",
        "",
        "| L | Shaw / skewed memory | skewed / full memory | skewed / full time |",
        "|---|---|---|---|",
    ]
    for n in LENGTHS + LONG:
        lines.append(
            f"| {n} | {ratio(shaw(n), skewed(n), 'peak_mib')} | {ratio(skewed(n), full(n), 'peak_mib')} | "
            f"{ratio(skewed(n), full(n), 'seconds')} |"
        )
    lines += [
        "",
        "## Shaw / skewed memory against head dimension (L = 1024)",
        "",
        "| width | heads | head_dim | Shaw MiB | skewed MiB | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for width, heads in ((512, 2), (512, 8), (512, 32), (256, 8), (1024, 8)):
        a, b = find(rows, "relative-shaw", 1024, width, heads), find(rows, "relative", 1024, width, heads)
        lines.append(
            f"| {width} | {heads} | {width // heads} | {cell(a, 'peak_mib')} | {cell(b, 'peak_mib')} | "
            f"{ratio(a, b, 'peak_mib')} |"
        )
    skipped = [r for r in rows if r["status"] != "ok"]
    lines += (
        ["", "## Not run", ""]
        + [f"- {r['kind']} L={r['length']} width={r['width']} heads={r['heads']}: {r['status']}" for r in skipped]
        + [""]
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, required=True, help="Where to write the measurements.")
    parser.add_argument("--markdown", type=Path, default=Path(__file__).parents[1] / "docs" / "attention.md")
    parser.add_argument("--max-gib", type=float, default=10.0, help="Skip configurations predicted above this.")
    parser.add_argument("--only", nargs="*", help="Measure only these kinds.")
    args = parser.parse_args()
    rows = [run(*config, args.max_gib) for config in plan() if not args.only or config[0] in args.only]
    args.json.write_text(json.dumps(rows, indent=1))
    args.markdown.write_text(markdown(rows, "python " + " ".join(sys.argv)))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        kind, length, width, heads = sys.argv[2], *map(int, sys.argv[3:6])
        print(json.dumps(measure(kind, length, width, heads)))
    else:
        main()
