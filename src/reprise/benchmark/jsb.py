"""``reprise benchmark jsb``: every architecture on JSB Chorales under one wall-clock budget.

Each entry trains on the raster-scan chorale tokens of the standard 229/76/77
split for the same number of minutes (the Markov chain just counts), then its
best checkpoint is scored on the valid and test splits with
:func:`reprise.evaluation.nll.nll_of`: mean NLL per token in nats, every token of
every chorale (the four voices of every 16th step, and the end token) counted
exactly once, with a sliding window for chorales longer than the context
that starts on a 16th-note step, as training windows do.
The Music Transformer paper reports 0.335 nats/token on the valid split.

NLL says how well a model predicts Bach, not what it writes: each entry also
draws ``report_samples`` chorales (8 bars each, from nothing) from its best
checkpoint and adds the report's headline figures against the test split (and
its copying against the train split) to its row, with the test split's own
figures as the reference column (``reprise.report``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from reprise.data.dataset import TokenDataset
from reprise.data.prepare import prepare
from reprise.errors import RepriseError
from reprise.evaluation.nll import nll_of
from reprise.evaluation.pieces import pieces_from_dataset
from reprise.generation.sampling import SamplingConfig
from reprise.models.checkpoint import load_checkpoint
from reprise.models.config import ModelConfig
from reprise.models.lstm import LSTMConfig
from reprise.models.markov import MarkovConfig
from reprise.report import headline
from reprise.report.samples import draw_samples
from reprise.training.config import TrainConfig
from reprise.training.metrics import read_metrics
from reprise.training.presets import preset
from reprise.training.trainer import train

PAPER_VALID_NLL = 0.335
SAMPLE_TOKENS = 8 * 16 * 4  # 8 bars of four voices on 16ths
REPORTED = {  # headline figure -> column of the table
    "distance_mean": "distance",
    "in_key": "in key",
    "parallels": "parallels",
    "loops": "loops",
    "copied_notes": "copied notes",
}


@dataclass
class Entry:
    """One row of the benchmark: a model configuration and how to train it."""

    name: str
    description: str
    model: Any
    train: TrainConfig


def _transformer(**fields: Any) -> ModelConfig:
    """The shared transformer shape of the comparison, with one idea changed.

    Dropout acts on the residual stream only: dropping attention probabilities
    forces SDPA's unfused path, which costs 30% of the CPU's throughput.
    """
    return ModelConfig(context=256, d_model=128, n_layers=4, n_heads=4, dropout=0.1, attention_dropout=0.0, **fields)


_TRAIN = TrainConfig(steps=1_000_000, batch_size=8, lr=2e-3, warmup=100, eval_every=400)

ENTRIES = [
    Entry("markov", "5-gram Markov chain, Witten-Bell", MarkovConfig(order=5), _TRAIN),
    Entry("lstm", "2-layer LSTM, 512 units", LSTMConfig(context=256, hidden=512, dropout=0.3), _TRAIN),
    Entry("learned", "transformer, learned positions", _transformer(positions="learned"), _TRAIN),
    Entry("sinusoidal", "transformer, sinusoidal positions", _transformer(positions="sinusoidal"), _TRAIN),
    Entry(
        "relative",
        "Music Transformer: relative attention (skewed), no absolute positions",
        _transformer(positions="none", attention="relative"),
        _TRAIN,
    ),
    Entry(
        "relative+absolute",
        "relative attention plus learned positions",
        _transformer(positions="learned", attention="relative"),
        _TRAIN,
    ),
    Entry(
        "local",
        "local attention (blocks of 64) with relative logits",
        _transformer(positions="none", attention="local", block_size=64, local_relative=True),
        _TRAIN,
    ),
    Entry("rope", "rotary position embeddings", _transformer(positions="none", attention="rope"), _TRAIN),
    Entry("alibi", "ALiBi linear distance biases", _transformer(positions="none", attention="alibi"), _TRAIN),
    Entry("fourier", "causal Fourier token mixing", _transformer(positions="learned", attention="fourier"), _TRAIN),
    Entry(
        "jsb-best",
        "the tuned preset (`--preset jsb-best`)",
        preset("jsb-best").model_config(),
        preset("jsb-best").train_config(),
    ),
]


def run_benchmark(
    jsb_json: Path, out: Path, budget_minutes: float, only: list[str] | None = None, report_samples: int = 20
) -> list[dict]:
    """Train and score the chosen entries; update ``out/results.json``, ``.md`` and ``.png``.

    ``report_samples`` chorales per entry are drawn for the report's headline figures (0: none).
    """
    known = {e.name: e for e in ENTRIES}
    unknown = [n for n in only or [] if n not in known]
    if unknown:
        raise RepriseError(f"unknown benchmark entry {unknown[0]!r}; choose from {', '.join(known)}")
    out = Path(out)
    data = out / "data"
    if not (data / "manifest.json").is_file():
        prepare(str(jsb_json), data)
    for entry in (known[n] for n in only) if only else ENTRIES:
        row = _run_entry(entry, data, out / "runs" / entry.name, budget_minutes)
        if report_samples:
            row["report"] = _report(out / "runs" / entry.name, data, report_samples)
        results = {**_load_results(out), entry.name: row}  # re-read: another run may have added rows
        _write_reports(out, results)
    return [results[e.name] for e in ENTRIES if e.name in results]


def _run_entry(entry: Entry, data: Path, run_dir: Path, budget_minutes: float) -> dict:
    """Train one entry from scratch within the budget and score its best checkpoint."""
    shutil.rmtree(run_dir, ignore_errors=True)
    vocab_size = TokenDataset(data, "train").tokenizer.vocab_size
    model_config = replace(entry.model, vocab_size=vocab_size)
    result = train(run_dir, data, model_config, replace(entry.train, max_minutes=budget_minutes))
    model, tokenizer = load_checkpoint(run_dir)
    nll = {}
    for split in ("valid", "test"):
        dataset = TokenDataset(data, split)
        pieces = [dataset.piece(i) for i in range(len(dataset))]
        nll[split] = nll_of(model, pieces, model.config.context, frame=tokenizer.frame).per_token
    return {
        "name": entry.name,
        "description": entry.description,
        "parameters": model.num_parameters(),
        "budget_minutes": budget_minutes,
        "steps": result.step,
        "train_tokens_per_s": round(result.tokens_per_second),
        "valid_nll": round(nll["valid"], 4),
        "test_nll": round(nll["test"], 4),
    }


def _report(run_dir: Path, data: Path, n: int) -> dict[str, dict]:
    """The report's headline figures for ``n`` chorales sampled from the run's best checkpoint."""
    model, tokenizer = load_checkpoint(run_dir)
    samples = draw_samples(model, tokenizer, n, SAMPLE_TOKENS, SamplingConfig(), 0, run_dir / "samples")
    figures = headline(samples, pieces_from_dataset(data, "test"), pieces_from_dataset(data, "train"))
    return {name: figures[name] for name in REPORTED if name in figures}


def _report_cells(row: dict) -> str:
    report = row.get("report", {})
    return " | ".join(
        f"{report[name]['samples']:.3g} ({report[name]['reference']:.3g})" if name in report else "–"
        for name in REPORTED
    )


def _load_results(out: Path) -> dict[str, dict]:
    path = out / "results.json"
    return {r["name"]: r for r in json.loads(path.read_text())} if path.is_file() else {}


def _write_reports(out: Path, results: dict[str, dict]) -> None:
    rows = [results[e.name] for e in ENTRIES if e.name in results]
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    lines = [
        "| entry | model | parameters | minutes | steps | tokens/s | valid NLL | test NLL | "
        + " | ".join(REPORTED.values())
        + " |",
        "|---|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(REPORTED),
    ]
    lines += [
        f"| {r['name']} | {r['description']} | {r['parameters']:,} | {r['budget_minutes']:g} | {r['steps']:,} | "
        f"{r['train_tokens_per_s']:,} | {r['valid_nll']:.4f} | {r['test_nll']:.4f} | {_report_cells(r)} |"
        for r in rows
    ]
    lines.append(f"\nNLL in nats per token; the Music Transformer paper reports {PAPER_VALID_NLL} on valid.")
    lines.append(
        "The last columns are the report's headline figures (docs/report.md) for chorales sampled from each "
        "entry's best checkpoint, with the test split's own figure in brackets: distance = mean of 1 - overlap "
        "over all statistics (brackets: a test subset against the rest), in key = share of notes in the estimated "
        "key, parallels = parallel fifths and octaves per sonority change, loops = share of samples that loop, "
        "copied notes = median longest melodic span found in a training chorale."
    )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    _plot_curves(out, rows)


def _plot_curves(out: Path, rows: list[dict]) -> None:
    """Validation NLL against training time, one line per entry (the Markov chain as a level)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5.5), dpi=110)
    ax = fig.subplots()
    for row in rows:
        run = out / "runs" / row["name"]
        valid = read_metrics(run)[1] if (run / "metrics.jsonl").is_file() else []
        points = [(p["elapsed"] / 60, p["val_nll"]) for p in valid]
        if row["name"] == "markov" or len(points) < 2:
            ax.axhline(row["valid_nll"], ls="--", lw=1, color="0.5", label=f"{row['name']} ({row['valid_nll']:.3f})")
        else:
            ax.plot(*zip(*points), marker=".", label=f"{row['name']} ({row['valid_nll']:.3f})")
    ax.axhline(PAPER_VALID_NLL, ls=":", color="k", label=f"Music Transformer paper ({PAPER_VALID_NLL})")
    ax.set_xlabel("training time (minutes)")
    ax.set_ylabel("validation NLL (nats/token)")
    ax.set_ylim(0.2, 1.6)
    ax.set_title("JSB Chorales, equal wall-clock budget")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "results.png")
