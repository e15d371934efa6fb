"""Musical quality of chorale writers and harmonisers side by side, as `reprise report` measures it.

    python benchmarks/quality.py --data data/jsb \
        --writer bach=bach --writer unlikelihood=runs/ft-ul20 \
        --harmonizer bach=bach --harmonizer ahead16=runs/harm16-ul20 \
        --json docs/quality.json --markdown docs/quality_table.md

``--data`` is `reprise prepare ../shared/data/jsb/Jsb16thSeparated.json --out data/jsb`. For every
model, on the JSB test split:

- NLL per token at all scored tokens and at *sonority changes* only (the tokens whose pitch differs
  from the same voice's at the step before: about a quarter of them, and the ones a listener hears);
  a harmoniser is scored on alto, tenor and bass given the soprano (and the end);
- a writer draws ``--samples`` chorales from nothing (``--seed``; ``--seeds N``: N draws from that seed on,
  every rate the mean of theirs, since one draw of 20 moves the rates by 2x) at the report's settings (temperature 1,
  the median test length, and the model may end a piece: ``SamplingConfig.end``; also at exactly that
  length, as `--no-end` draws), a harmoniser harmonises the first ``--samples`` test sopranos once each
  (``--temperature`` changes the temperature of both);
- the report's rates for those pieces against the test chorales: parallel fifths and octaves per
  sonority change, voice crossings per step, notes in the estimated key, share of pieces that stall;
- for a writer's pieces, the *expected* parallels: the probability the model gave, at each of its
  choices, to those that make a parallel fifth or octave, per transition (round 4 of docs/quality.md);
  it estimates the sampled fifths + octaves with less noise;
- with ``--strict``, the same pieces drawn again under strict voice leading (``--strict`` of
  generate and harmonize), to show what the option hides, never in place of the model's own;
- ``--transpositions K`` scores and samples every model as its transposition ensemble over ±K semitones
  (0: as one network), whatever its config says (:mod:`reprise.models.transposition`).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from reprise.benchmark.output import write_results
from reprise.data.chorale_grid import ChoraleGrid
from reprise.data.dataset import TokenDataset
from reprise.device import describe_cpu
from reprise.evaluation.nll import nll_of
from reprise.evaluation.pieces import load_pieces, pieces_from_ids
from reprise.evaluation.voice_leading import parallel_choices, voice_leading
from reprise.generation.conditional import harmonize
from reprise.generation.generate import generate
from reprise.generation.sampling import SamplingConfig
from reprise.models.checkpoint import load_checkpoint
from reprise.report.build import build_report

RATES = ("parallel_fifths", "parallel_octaves", "voice_crossings")


def changes(ids: np.ndarray, tokenizer: ChoraleGrid) -> np.ndarray:
    """The tokens of ``ids`` whose voice changes pitch at their step (every voice's first step counts)."""
    grid = tokenizer.decode_grid(ids)
    changed = np.ones(grid.shape, dtype=bool)
    changed[1:] = grid[1:] != grid[:-1]
    step, voice = np.nonzero(changed)
    mask = np.zeros(len(ids), dtype=bool)
    slot = np.argsort(tokenizer.slot_voices)[voice]
    mask[1 + 4 * (step + np.where(voice > 0, tokenizer.soprano_ahead, 0)) + slot] = True
    return mask


def harmony_mask(ids: np.ndarray, tokenizer: ChoraleGrid) -> np.ndarray:
    """Alto, tenor and bass of real steps and the end: what a harmoniser is scored on."""
    return tokenizer.lower_voices(ids) | (ids == tokenizer.eos_id)


def nlls(model, tokenizer: ChoraleGrid, pieces: list[np.ndarray], harmony: bool) -> dict[str, float]:
    """NLL per token at all scored tokens and at sonority changes."""
    base = (lambda ids: harmony_mask(ids, tokenizer)) if harmony else (lambda ids: np.ones(len(ids), dtype=bool))
    context, frame = model.config.context, tokenizer.frame
    every = nll_of(model, pieces, context, frame=frame, scored=base)
    at_changes = nll_of(model, pieces, context, frame=frame, scored=lambda ids: base(ids) & changes(ids, tokenizer))
    return {"nll": every.per_token, "nll_changes": at_changes.per_token, "tokens": every.tokens}


def expected_parallels(model, tokenizer: ChoraleGrid, rows: np.ndarray, temperature: float = 1.0) -> float:
    """The probability the model gave to choices that make a parallel fifth or octave (the set
    unlikelihood training flags), summed over every choice of its own pieces ``rows``, per transition:
    the expectation of the sampled fifths + octaves, without the noise of drawing the choices
    themselves (at the ``temperature`` they were drawn at; pieces longer than the context count their
    first ``context`` tokens)."""
    pitches = torch.as_tensor(tokenizer.id_pitches())
    total, transitions = 0.0, 0
    for ids in rows:
        body = np.asarray(ids)[1 : model.config.context + 1]
        body = body[: np.argmax(body == tokenizer.eos_id) if tokenizer.eos_id in body else len(body)]
        body = body[: len(body) // tokenizer.frame * tokenizer.frame]
        with torch.no_grad():
            logits = model(torch.as_tensor(np.r_[tokenizer.bos_id, body[:-1]])[None])[0].float()
        log_p = (logits.log_softmax(-1) / temperature).log_softmax(-1)
        bad = parallel_choices(pitches[torch.as_tensor(body)].view(1, -1, tokenizer.frame), pitches).view(len(body), -1)
        total += float((log_p.exp() * bad).sum())
        transitions += voice_leading(tokenizer.decode_grid(np.r_[tokenizer.bos_id, body])).transitions
    return total / max(transitions, 1)


def rates(pieces, reference) -> dict[str, float]:
    """The report's rates for ``pieces`` against ``reference`` (means over pieces, as the report shows)."""
    report = build_report(pieces, reference)
    out = {name: report["statistics"][name]["samples"]["mean"] for name in RATES}
    out["in_key"] = report["headline"]["in_key"]["samples"]
    out["stalls"] = report["headline"]["stalls"]["samples"]
    out["bars"] = float(np.mean([p.n_bars for p in pieces]))
    return out


def reference_rates(reference) -> dict[str, float]:
    """The same rates for the reference itself."""
    report = build_report(reference, reference)
    out = {name: report["statistics"][name]["reference"]["mean"] for name in RATES}
    out.update(in_key=report["headline"]["in_key"]["reference"], stalls=report["headline"]["stalls"]["reference"])
    out["bars"] = float(np.mean([p.n_bars for p in reference]))
    return out


def writer_rows(name: str, checkpoint: str, test: TokenDataset, reference, samples: int, options) -> list[dict]:
    """A chorale writer: its NLL, and the report's rates with and without letting it end pieces (and,
    with ``--strict``, letting it end under strict voice leading)."""
    model, tokenizer = load_checkpoint(checkpoint, transpositions=options.transpositions)
    scores = nlls(
        model, tokenizer, [tokenizer.translate(test.piece(i), test.tokenizer) for i in range(len(test))], False
    )
    n_new = int(np.median([len(test.piece(i)) for i in range(len(test))])) - 1
    t = options.temperature
    settings = [
        ("may end", SamplingConfig(end=True, temperature=t)),
        ("exact length", SamplingConfig(end=False, temperature=t)),
    ]
    settings += [("may end, strict", SamplingConfig(end=True, temperature=t, strict=True))] if options.strict else []
    rows = []
    for label, sampling in settings:
        started, drawn = time.perf_counter(), []
        for seed in seeds(options):
            ids = generate(model, tokenizer, np.array([tokenizer.bos_id]), n_new, samples, sampling, seed=seed)
            names = [f"{name}-{seed}-{i}" for i in range(samples)]
            drawn.append(rates(pieces_from_ids(list(ids), tokenizer, names, names), reference))
            drawn[-1]["expected_parallels"] = None if sampling.strict else expected_parallels(model, tokenizer, ids, t)
        rows.append({"model": name, "checkpoint": checkpoint, "task": "write", "sampling": label, **scores})
        rows[-1].update(mean_rates(drawn), seconds=time.perf_counter() - started)
    return rows


def seeds(options) -> range:
    """The sampling seeds: ``--seeds`` of them from ``--seed`` on."""
    return range(options.seed, options.seed + options.seeds)


def mean_rates(drawn: list[dict]) -> dict:
    """Each rate's mean over the seeds' draws (``None`` stays ``None``)."""
    return {k: None if drawn[0][k] is None else float(np.mean([d[k] for d in drawn])) for k in drawn[0]}


def harmonizer_rows(name: str, checkpoint: str, test: TokenDataset, reference, samples: int, options) -> list:
    """A harmoniser: its NLL given the soprano, and the rates of its harmonisations of test sopranos
    (also under strict voice leading, with ``--strict``)."""
    model, tokenizer = load_checkpoint(checkpoint, transpositions=options.transpositions)
    pieces = [tokenizer.translate(test.piece(i), test.tokenizer) for i in range(len(test))]
    scores = nlls(model, tokenizer, pieces, True)
    sopranos = [test.tokenizer.decode_grid(test.piece(i))[:, 0] for i in range(samples)]
    rows = []
    t = options.temperature
    for label, sampling in [("test sopranos", SamplingConfig(temperature=t))] + (
        [("test sopranos, strict", SamplingConfig(temperature=t, strict=True))] if options.strict else []
    ):
        started, drawn = time.perf_counter(), []
        for seed in seeds(options):
            written = []
            for i, soprano in enumerate(sopranos):
                written += harmonize(model, tokenizer, soprano, num_samples=1, seed=i + 100 * seed, sampling=sampling)
            names = [f"{name}-{seed}-{i}" for i in range(samples)]
            drawn.append(rates(pieces_from_ids(written, tokenizer, names, names), reference))
        row = {"model": name, "checkpoint": checkpoint, "task": "harmonize", "sampling": label, **scores}
        rows.append({**row, **mean_rates(drawn), "seconds": time.perf_counter() - started})
    return rows


def table(results: dict) -> str:
    """The markdown table of every row, Bach's own rates first."""
    head = "| model | task | sampling | NLL | NLL at changes | fifths | octaves | crossings | in key | stalls | bars |"
    lines = [head + " expected |", "|" + "---|" * 12]
    bach = results["bach_test"]
    lines.append(
        f"| Bach (test split) | | | | | {bach['parallel_fifths']:.4f} | {bach['parallel_octaves']:.4f} | "
        f"{bach['voice_crossings']:.4f} | {bach['in_key']:.3f} | {bach['stalls']:.0%} | {bach['bars']:.1f} | |"
    )
    for r in results["rows"]:
        lines.append(
            f"| {r['model']} | {r['task']} | {r['sampling']} | {r['nll']:.4f} | {r['nll_changes']:.4f} | "
            f"{r['parallel_fifths']:.4f} | {r['parallel_octaves']:.4f} | {r['voice_crossings']:.4f} | "
            f"{r['in_key']:.3f} | {r['stalls']:.0%} | {r['bars']:.1f} | "
            + (f"{r['expected_parallels']:.4f} |" if r.get("expected_parallels") is not None else "|")
        )
    return "\n".join(lines) + "\n"


def _named(spec: str) -> tuple[str, str]:
    name, _, checkpoint = spec.partition("=")
    return name, checkpoint or name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="The prepared JSB Chorales (chorale grid).")
    parser.add_argument("--writer", action="append", default=[], help="NAME=CHECKPOINT of a chorale writer.")
    parser.add_argument("--harmonizer", action="append", default=[], help="NAME=CHECKPOINT of a harmoniser.")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--temperature", type=float, default=1.0, help="Sampling temperature [default: 1].")
    parser.add_argument("--strict", action="store_true", help="Also sample under strict voice leading.")
    parser.add_argument("--seed", type=int, default=0, help="Sampling seed (a harmoniser's piece i: i + 100 x seed).")
    parser.add_argument("--seeds", type=int, default=1, help="Seeds from --seed on; rates are their means.")
    parser.add_argument(
        "--transpositions", type=int, default=None, help="Override every model's transposition ensemble (0: off)."
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads [default: torch's].")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    test = TokenDataset(args.data, "test")
    reference = load_pieces(args.data, "test", "--data")
    rows = []
    for spec in args.writer:
        rows += writer_rows(*_named(spec), test, reference, args.samples, args)
    for spec in args.harmonizer:
        rows += harmonizer_rows(*_named(spec), test, reference, args.samples, args)
    results = {
        "cpu": describe_cpu(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "samples": args.samples,
        "seed": args.seed,
        "seeds": args.seeds,
        "transpositions": args.transpositions,
        "bach_test": reference_rates(reference),
        "rows": rows,
    }
    write_results(args.json, results, args.markdown, table(results))


if __name__ == "__main__":
    main()
