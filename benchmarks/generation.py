"""Decoding speed of a relative-attention model with a 2048-token context: cached against recomputing.

    python benchmarks/generation.py --json generation.json [--markdown docs/generation.md]

The model is the ``base`` preset (width 512, 8 layers, 8 heads) with
``attention=relative``, ``positions=none`` and a 2048-token context, on the
chorale-grid vocabulary; weights are untrained, which does not change the speed.
At each amount of context ``c`` it times decoding steps whose new token attends
to about ``c`` tokens:

- cached, as ``reprise generate`` does: the new token goes through the model
  alone, against each layer's key/value cache, with its single row of relative
  logits (the prefill of the first ``c`` tokens is not timed);
- recomputing, as the public Music Transformer reimplementations do: the whole
  ``c``-token window goes through the model at every step.

Then ``generate()`` itself produces ``--generate`` new tokens (2048 by default)
from ``BOS``, with the cache (passing the context rebuilds the cache from the
last half-context). Times are the fastest of two runs of each cached
measurement and one run of the (slow) recomputing ones: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from reprise.data.chorale_grid import ChoraleGrid
from reprise.generation.generate import generate
from reprise.models.transformer import MusicTransformer
from reprise.training.presets import preset

CONTEXTS = (256, 1024, 2048)
CACHED_STEPS, RECOMPUTED_STEPS = 16, 2


def fastest(run, repeats: int) -> float:
    """The shortest wall time of ``repeats`` calls of ``run``."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


@torch.no_grad()
def cached_seconds_per_token(model: MusicTransformer, ids: torch.Tensor, context: int) -> float:
    """Seconds per cached decoding step, attending to ``context - CACHED_STEPS ... context`` tokens."""
    start = context - CACHED_STEPS

    def run() -> None:
        caches = model.new_caches(1, model.config.context)
        model(ids[:, :start], caches)
        started = time.perf_counter()
        for i in range(start, context):
            model(ids[:, i : i + 1], caches)
        run.seconds = time.perf_counter() - started

    best = float("inf")
    for _ in range(2):  # the prefill is outside the timed part
        run()
        best = min(best, run.seconds)
    return best / CACHED_STEPS


@torch.no_grad()
def recomputed_seconds_per_token(model: MusicTransformer, ids: torch.Tensor, context: int) -> float:
    """Seconds per step that runs the whole ``context``-token window through the model."""

    def run() -> None:
        for i in range(RECOMPUTED_STEPS):
            model(ids[:, i : i + context])[:, -1]

    return fastest(run, 1) / RECOMPUTED_STEPS


def measure(new_tokens: int) -> dict:
    torch.manual_seed(0)
    tokenizer = ChoraleGrid()
    config = preset("base").model_config(
        vocab_size=tokenizer.vocab_size, context=2048, attention="relative", positions="none", dropout=0.0
    )
    model = MusicTransformer(config).eval()
    ids = torch.randint(4, tokenizer.vocab_size, (1, 2048 + RECOMPUTED_STEPS))
    rows = []
    for context in CONTEXTS:
        cached = cached_seconds_per_token(model, ids, context)
        recomputed = recomputed_seconds_per_token(model, ids, context)
        rows.append(
            {
                "context": context,
                "cached_s_per_token": round(cached, 5),
                "cached_tokens_per_s": round(1 / cached, 2),
                "recomputed_s_per_token": round(recomputed, 4),
                "recomputed_tokens_per_s": round(1 / recomputed, 3),
                "speedup": round(recomputed / cached, 1),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
    started = time.perf_counter()
    out = generate(model, tokenizer, np.array([tokenizer.bos_id]), new_tokens)
    seconds = time.perf_counter() - started
    end_to_end = {
        "new_tokens": int(out.shape[1] - 1),
        "seconds": round(seconds, 1),
        "tokens_per_s": round((out.shape[1] - 1) / seconds, 2),
    }
    return {
        "model": config.to_json(),
        "parameters": model.num_parameters(),
        "threads": torch.get_num_threads(),
        "steps": rows,
        "generate": end_to_end,
    }


def markdown(result: dict, command: str) -> str:
    lines = [
        "# Generation speed: cached against recomputing",
        "",
        f"Produced by `{command}` ({result['threads']} threads, torch {torch.__version__}).",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        f"Model: {result['parameters']:,} parameters.",
        "",
        "| context | cached tokens/s | cached s/token | recomputing tokens/s | recomputing s/step | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["steps"]:
        lines.append(
            f"| {r['context']} | {r['cached_tokens_per_s']:.1f} | {r['cached_s_per_token']:.4f} | "
            f"{r['recomputed_tokens_per_s']:.2f} | {r['recomputed_s_per_token']:.3f} | {r['speedup']:.0f}× |"
        )
    g = result["generate"]
    lines += [
        "",
        f"`generate()` from `BOS`: {g['new_tokens']} new tokens in {g['seconds']} s, "
        f"{g['tokens_per_s']} tokens/s (sampling and the context rebuild included).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, required=True, help="Where to write the measurements.")
    parser.add_argument("--markdown", type=Path, default=Path(__file__).parents[1] / "docs" / "generation.md")
    parser.add_argument("--generate", type=int, default=2048, help="New tokens for the end-to-end run.")
    args = parser.parse_args()
    result = measure(args.generate)
    args.json.write_text(json.dumps(result, indent=1))
    args.markdown.write_text(markdown(result, "python " + " ".join(sys.argv)))


if __name__ == "__main__":
    main()
