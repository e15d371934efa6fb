"""Infilling with context on both sides: fill in the middle (decoder-only) against the left-only decoder.

    OMP_NUM_THREADS=1 python benchmarks/infill.py --pop909 ../shared/data/pop909 --pop909-pieces 300 \
        --pop909-test-pieces 30 --jsb ../shared/data/jsb/Jsb16thSeparated.json --minutes 10 \
        --work /tmp/fim --json docs/infill.json --markdown /tmp/fim/infill.md

Two decoder-only models per corpus, of the same shape as benchmarks/conditional.py's left-only melody model
(width 128, 4 heads, 6 blocks, RoPE, context 512) and trained with its settings for the same wall-clock
budget (``--minutes``, or ``--steps``: the same tokens whatever the machine's load):

- left only: a model of the plain pieces, scored on the gap's tokens given everything before them
  (sliding windows of half a context: at least 256 tokens of history);
- fill in the middle (``reprise train --task infill``, :mod:`reprise.data.fill`): trained on streams of
  random 1-4-bar spans in its grid's layout (chorale grid: ``BOS before FILL landing MIDDLE middle``, the
  one bar after the gap; melody grid: ``BOS after FILL before MIDDLE middle``), scored on the middle.

Both are scored on exactly the same tokens: the ``EVAL_INFILL_BARS`` (2) bars of each test piece that
the encoder-decoder's scoring fills, at a place fixed by the piece's index (:func:`reprise.data.pairs.eval_span`).
POP909: the melody (``MELODY`` track) on the melody grid, as in benchmarks/conditional.py; JSB Chorales:
the chorale grid, all four voices of the gap.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from conditional import decoder_only, masked_nll, pop909_folder, pop909_options, total, train_config, trained
from reprise.benchmark.output import write_results
from reprise.data.dataset import TokenDataset
from reprise.data.fill import FillDataset
from reprise.data.pairs import eval_span
from reprise.data.prepare import prepare
from reprise.device import describe_cpu
from reprise.evaluation.nll import NLL, nll_of

CONTEXT = 512


def left_only(model: torch.nn.Module, test: TokenDataset, spans: FillDataset, n: int) -> list[NLL]:
    """The left-only model's NLL of each test piece's gap, given everything before it (the same tokens as
    the middle of the piece's stream: checked, not only computed alike)."""
    frame, nlls = test.tokenizer.frame, []
    for i in range(n):
        ids = test.piece(i)
        first, last = (1 + step * frame for step in eval_span((len(ids) - 2) // frame, i))
        if not np.array_equal(ids[first:last], spans.tokenizer.parts(spans.piece(i))[2]):
            raise AssertionError(f"test piece {i}: the gap is not the middle of its stream")
        nlls.append(masked_nll(model, ids[:last], np.arange(last) >= first, frame))
    return nlls


def in_the_middle(model: torch.nn.Module, spans: FillDataset, n: int) -> list[NLL]:
    """The fill-in-the-middle model's NLL of each test piece's middle."""
    frame, scored = spans.tokenizer.frame, spans.tokenizer.scored
    return [nll_of(model, [spans.piece(i)], model.config.context, frame=frame, scored=scored) for i in range(n)]


def compare(data: Path, name: str, args, work: Path, n: int | None) -> dict:
    """Train both models on ``data`` (or reuse finished runs) and score them on the same gaps."""
    test = TokenDataset(data, "test")
    n = len(test) if n is None else min(n, len(test))
    spans = FillDataset(data, "test", CONTEXT)
    vocab = test.tokenizer.vocab_size
    budget = {"steps": args.steps} if args.steps else {}  # else the minutes
    config = train_config(None if args.steps else args.minutes, args.device, **budget)
    left, left_info = trained(work / "runs" / f"{name}-left", data, decoder_only(vocab, CONTEXT), config)
    fim_config = train_config(None if args.steps else args.minutes, args.device, infill=True, **budget)
    fim, fim_info = trained(work / "runs" / f"{name}-fim", data, decoder_only(vocab + 2, CONTEXT), fim_config)
    left_nlls, fim_nlls = left_only(left, test, spans, n), in_the_middle(fim, spans, n)
    assert [x.tokens for x in left_nlls] == [x.tokens for x in fim_nlls], "scored different tokens"
    return {
        "pieces": n,
        "tokens": sum(x.tokens for x in fim_nlls),
        "left_only": {**left_info, "nll": total(left_nlls)},
        "fill_in_the_middle": {**fim_info, "nll": total(fim_nlls)},
        "fim_better_pieces": sum(f.per_token < x.per_token for f, x in zip(fim_nlls, left_nlls)),
    }


def markdown(results: dict, command: str) -> str:
    """The table of docs/conditional.md's infilling section."""
    lines = [
        f"Produced by `{command}` ({results['machine']}); each model trained for "
        + (f"{results['steps']:,} steps." if results["steps"] else f"{results['minutes']:g} minutes."),
        "",
        "| data (test pieces, scored tokens) | left only: NLL/token (params, steps) | fill in the middle: "
        "NLL/token (params, steps) | pieces where FIM is better |",
        "|---|---:|---:|---:|",
    ]
    for name, r in results["corpora"].items():
        a, b = r["left_only"], r["fill_in_the_middle"]
        lines.append(
            f"| {name} ({r['pieces']}, {r['tokens']:,}) | {a['nll']:.4f} ({a['parameters']:,}, {a['steps']:,}) | "
            f"{b['nll']:.4f} ({b['parameters']:,}, {b['steps']:,}) | {r['fim_better_pieces']}/{r['pieces']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    pop909_options(parser)
    parser.add_argument("--jsb", type=Path, help="Jsb16thSeparated.json (skip JSB without it)")
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget of every model")
    parser.add_argument("--steps", type=int, help="a budget in steps instead (equal tokens, whatever the load)")
    parser.add_argument("--work", type=Path, required=True, help="folder for datasets and runs (reused if present)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    results = {
        "minutes": None if args.steps else args.minutes,
        "steps": args.steps,
        "machine": f"{describe_cpu()}, {torch.get_num_threads()} threads, {args.device}",
        "train": asdict(train_config(args.minutes, args.device)),
        "context": CONTEXT,
        "corpora": {},
    }
    if args.pop909:
        melody = args.work / "pop909-melody"
        if not (melody / "manifest.json").is_file():
            prepare(str(pop909_folder(args, args.work)), melody, "melody-grid", tracks=("MELODY",), workers=1)
        corpus = "POP909 melody, 2-bar gaps (melody grid)"
        results["corpora"][corpus] = compare(melody, "melody", args, args.work, args.pop909_test_pieces)
    if args.jsb:
        chorales = args.work / "jsb"
        if not (chorales / "manifest.json").is_file():
            prepare(str(args.jsb), chorales)
        results["corpora"]["JSB Chorales, 2-bar gaps (chorale grid)"] = compare(chorales, "jsb", args, args.work, None)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_results(
        args.json, results, args.markdown, markdown(results, "python benchmarks/infill.py " + " ".join(sys.argv[1:]))
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
