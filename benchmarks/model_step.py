"""Whole-model training step, relative attention against causal SDPA (``full``): one process, interleaved.

    python benchmarks/model_step.py --json model_step.json --markdown docs/speed.md [--device cuda]

The shape of issue 15 (gwinndr/MusicTransformer-Pytorch's benchmark): 6 layers, d_model 256, 8
heads, feed-forward 1024, vocabulary 390, dropout 0.1 on the residual stream, attention dropout 0,
batch 4 × L random tokens, Adam, forward + backward + step, 2 threads. Every kind gets one model per
length; fp32 and bf16 autocast train the same model.

The machine may be shared, so absolute times drift: each round runs one step of every (kind,
precision) at a length in turn, the ratio to ``full`` is taken within the round (steps seconds
apart), and the table gives the median ratio over rounds beside the fastest step of each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

SHAPE = {
    "vocab_size": 390,
    "d_model": 256,
    "n_layers": 6,
    "n_heads": 8,
    "ff_mult": 4,
    "dropout": 0.1,
    "attention_dropout": 0.0,
}
BATCH = 4


class Runner:
    """One model and optimiser per (kind, length); :meth:`step` times one training step."""

    def __init__(self, kind: str, length: int, device: str):
        import torch

        from reprise.models.config import ModelConfig
        from reprise.models.transformer import MusicTransformer

        torch.manual_seed(0)
        self.device = torch.device(device)
        self.model = MusicTransformer(ModelConfig(context=length, attention=kind, **SHAPE)).to(self.device).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.ids = torch.randint(0, SHAPE["vocab_size"], (BATCH, length + 1), device=self.device)

    def step(self, precision: str) -> float:
        """Seconds of one forward + backward + Adam step."""
        import torch
        import torch.nn.functional as F

        started = time.perf_counter()
        with torch.autocast(self.device.type, torch.bfloat16, enabled=precision == "bf16"):
            logits = self.model(self.ids[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 1), self.ids[:, 1:].flatten())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()  # the step is done when the GPU is, not when Python has queued it
        return time.perf_counter() - started


def measure(
    kinds: list[str], lengths: list[int], precisions: list[str], rounds: int, bf16_rounds: int, device: str
) -> list[dict]:
    """Rows per (length, precision, kind): every step's seconds, the fastest, the median ratio to the first kind."""
    rows = []
    for length in lengths:
        runners = {kind: Runner(kind, length, device) for kind in kinds}
        steps: dict[tuple[str, str], list[float]] = {(p, k): [] for p in precisions for k in kinds}
        for precision in precisions:  # warm-up: first-touch allocations, kernel selection
            for runner in runners.values():
                runner.step(precision)
        for r in range(rounds):
            for precision in precisions:
                if precision == "bf16" and r >= bf16_rounds:
                    continue
                for kind, runner in runners.items():
                    steps[precision, kind].append(runner.step(precision))
                    print(f"L={length} {precision} {kind}: {steps[precision, kind][-1]:.2f} s", file=sys.stderr)
        for precision in precisions:
            base = steps[precision, kinds[0]]
            for kind in kinds:
                seconds = steps[precision, kind]
                ratios = [s / b for s, b in zip(seconds, base)]
                rows.append(
                    {
                        "length": length,
                        "precision": precision,
                        "kind": kind,
                        "seconds": seconds,
                        "fastest_s": min(seconds),
                        "tokens_per_s": BATCH * length / min(seconds),
                        "median_ratio": statistics.median(ratios),
                    }
                )
    return rows


def markdown(rows: list[dict], command: str, machine: str, threads: int) -> str:
    """The table: tokens/s of each kind and the median within-round ratio to the first kind."""
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    lines = [
        "## Whole-model training step",
        "",
        f"`{command}` on {machine}, {threads} CPU threads.",
        "",
        (
            f"Batch {BATCH} × L random tokens, 6 layers, d_model 256, 8 heads, feed-forward 1024, vocabulary 390, "
            "dropout 0.1 on the residual stream, attention dropout 0, Adam. Tokens/s from the fastest step; "
            f"ratio = median over rounds of (step time / `{kinds[0]}`'s step time in the same round)."
        ),
        "",
        "| L | precision | "
        + " | ".join(f"{k} tokens/s" for k in kinds)
        + " | "
        + " | ".join(f"{k} / {kinds[0]}" for k in kinds[1:])
        + " | rounds |",
        "|---:|---|" + "---:|" * (2 * len(kinds) - 1) + "---:|",
    ]
    for length in sorted({r["length"] for r in rows}):
        for precision in dict.fromkeys(r["precision"] for r in rows):
            group = {r["kind"]: r for r in rows if r["length"] == length and r["precision"] == precision}
            if not group:
                continue
            lines.append(
                f"| {length} | {precision} | "
                + " | ".join(f"{group[k]['tokens_per_s']:,.0f}" for k in kinds)
                + " | "
                + " | ".join(f"{group[k]['median_ratio']:.2f}×" for k in kinds[1:])
                + f" | {len(group[kinds[0]]['seconds'])} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, required=True, help="Where to write every step's time.")
    parser.add_argument("--markdown", type=Path, help="Where to write the table (default: print it).")
    parser.add_argument("--kinds", nargs="+", default=["full", "relative"], help="The first is the baseline.")
    parser.add_argument("--lengths", nargs="+", type=int, default=[512, 1024, 2048])
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--bf16-rounds",
        type=int,
        default=5,
        help="Rounds that also run bf16 (slow on CPUs without AVX512-BF16: it is emulated).",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for a GPU's tokens/s")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from reprise.benchmark.output import write_results
    from reprise.device import describe_cpu

    machine = describe_cpu() if args.device == "cpu" else torch.cuda.get_device_name(args.device)
    rows = measure(args.kinds, args.lengths, args.precisions, args.rounds, args.bf16_rounds, args.device)
    command = "python " + " ".join(sys.argv)
    results = {"command": command, "machine": machine, "torch": torch.__version__, "threads": args.threads}
    results["rows"] = rows
    write_results(args.json, results, args.markdown, markdown(rows, command, machine, args.threads))


if __name__ == "__main__":
    main()
