"""Conditional models side by side: harmonisation on JSB Chorales, accompaniment and infilling on POP909.

    python benchmarks/conditional.py --jsb ../shared/data/jsb/Jsb16thSeparated.json \
        --pop909 ../shared/data/pop909 --minutes 20 --work /tmp/conditional \
        --json docs/conditional.json --markdown docs/conditional.md

Every model trains for the same wall-clock budget (``--minutes``) with the same
optimiser settings (jsb-best's: AdamW, lr 3e-3 with warm-up and cosine decay,
weight decay 0.5, weight averaging 0.998, batch 2, transposition up to ±6
semitones; bf16 on CUDA only: on a CPU without AVX512-BF16 it is 3-8x slower)
and the same width (128, 4 heads); decoder-only models have 6 blocks,
encoder-decoders 2 encoder and 4 decoder blocks.

JSB Chorales (test split), NLL per alto, tenor and bass token given the soprano:

- (a) the encoder-decoder (``--task harmonize``): soprano -> A/T/B raster;
- (b) a decoder-only model reading the whole soprano as a prefix:
  ``BOS soprano BOS A/T/B raster EOS`` (context as long as the longest chorale,
  learned positions and RoPE; trained on the A/T/B tokens only, by a loop here
  with the trainer's optimiser, schedule and weight averaging);
- (c) the unconditional raster model (jsb-best's shape) scored on the same A/T/B
  tokens: it sees the soprano up to the current step, not the soprano to come.

Each for all test chorales and for those whose soprano shares no
transposition-invariant span of 13 or more notes (12 intervals; held and
repeated notes merged, rests skipped) with a training soprano. Then (a)
harmonises every test soprano (one sample, temperature 1) and the voice-leading
rates of :mod:`reprise.evaluation.voice_leading` compare its A/T/B with Bach's.

POP909 (test split): the accompaniment (``PIANO``) given the melody (``MELODY``)
by the encoder-decoder against a decoder-only model of the accompaniment alone
(performance events); and 2-bar infilling of the melody (melody grid) given the
rest of the song by the encoder-decoder against a decoder-only melody model
given only the bars before the gap.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reprise.data.chorale_grid import SILENCE
from reprise.data.dataset import TokenDataset
from reprise.data.pairs import PairedDataset, Task, harmonize_pair, write_pair_manifest
from reprise.data.prepare import prepare
from reprise.data.windows import scoring_windows
from reprise.device import autocast as autocast_for
from reprise.device import describe_cpu
from reprise.evaluation.conditional import nll_per_pair
from reprise.evaluation.nll import NLL, only_predicted
from reprise.evaluation.voice_leading import VoiceLeading, voice_leading
from reprise.generation.conditional import harmonize
from reprise.models.checkpoint import load_checkpoint
from reprise.models.config import ModelConfig
from reprise.models.encoder_decoder import EncoderDecoderConfig
from reprise.models.transformer import MusicTransformer
from reprise.training.config import TrainConfig
from reprise.training.trainer import lr_at, make_optimizer, train, weight_average

SHARED_SPAN = 13  # notes
BEGIN, END = "<!-- results -->", "<!-- /results -->"  # the section of docs/conditional.md this script writes
TRAIN = {
    "steps": 10**9,
    "batch_size": 2,
    "lr": 3e-3,
    "warmup": 100,
    "weight_decay": 0.5,
    "max_transpose": 6,
    "ema_decay": 0.998,
    "precision": "auto",
    "eval_every": 1000,
}
SHAPE = {"d_model": 128, "n_heads": 4, "dropout": 0.1, "attention_dropout": 0.0, "attention": "rope"}


def train_config(minutes: float, device: str, **changes) -> TrainConfig:
    return TrainConfig(**{**TRAIN, "max_minutes": minutes, "device": device, **changes})


def encoder_decoder(task: Task, context: int, source_context: int) -> EncoderDecoderConfig:
    return EncoderDecoderConfig(
        task=task.name,
        vocab_size=task.tokenizer.vocab_size,
        source_vocab_size=task.source_vocab_size,
        context=context,
        source_context=source_context,
        source_offset=0.5 if task.name == "infill" else 0.25,
        encoder_layers=2,
        n_layers=4,
        encoder_attention="rope",
        **SHAPE,
    )


def decoder_only(vocab_size: int, context: int, **changes) -> ModelConfig:
    return ModelConfig(
        **{"vocab_size": vocab_size, "context": context, "n_layers": 6, "positions": "none", **SHAPE, **changes}
    )


def trained(run: Path, data: Path, model, config: TrainConfig) -> tuple[torch.nn.Module, dict]:
    """Train (unless ``run`` already holds a finished run of this budget) and load ``best/``."""
    if not (run / "best" / "training.json").is_file():
        train(run, data, model, config, quiet=True)
    loaded, _ = load_checkpoint(run / "best", config.device if config.device != "auto" else "cpu")
    steps = max(json.loads(line).get("step", 0) for line in (run / "metrics.jsonl").read_text().splitlines())
    return loaded, {"parameters": sum(p.numel() for p in loaded.parameters()), "steps": steps}


def total(nlls: list[NLL], chosen: list[int] | None = None) -> float:
    chosen = range(len(nlls)) if chosen is None else chosen
    return sum(nlls[i].total for i in chosen) / max(1, sum(nlls[i].tokens for i in chosen))


@torch.no_grad()
def masked_nll(
    model: torch.nn.Module, ids: np.ndarray, scored: np.ndarray, frame: int = 1, predicted: np.ndarray | None = None
) -> NLL:
    """NLL of the tokens of ``ids`` where ``scored`` is true, under a decoder-only model (sliding windows);
    ``predicted`` leaves ids out of the softmax (:func:`reprise.evaluation.nll.only_predicted`)."""
    context = model.config.context
    device = next(model.parameters()).device
    result = NLL(0.0, 0)
    for start, end, first in scoring_windows(len(ids), context, max(1, context // 2), frame):
        targets = torch.from_numpy(ids[start + 1 : end].copy())
        keep = torch.from_numpy(scored[start + 1 : end].copy())
        keep[: first - start - 1] = False
        if not keep.any():
            continue
        logits = only_predicted(model(torch.from_numpy(ids[start : end - 1])[None].to(device))[0].float(), predicted)
        nll = F.cross_entropy(logits[keep.to(device)], targets[keep].to(device), reduction="sum")
        result = NLL(result.total + nll.item(), result.tokens + int(keep.sum()))
    return result


# -- JSB: the soprano-prefix decoder-only model (b) ------------------------------------------
def prefix_sequence(ids: np.ndarray, tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """``BOS soprano BOS A/T/B EOS`` and which of its tokens are A/T/B targets (the ``EOS`` is not)."""
    pair = harmonize_pair("", ids, tokenizer)
    sequence = np.r_[pair.source[:-1], pair.target]
    scored = np.zeros(len(sequence), dtype=bool)
    scored[len(pair.source) : -1] = True
    return sequence, scored


def train_prefix(model: MusicTransformer, train_set: TokenDataset, config: TrainConfig, device: str) -> int:
    """The trainer's optimiser, schedule, clipping, averaging and bf16 on whole prefixed chorales; returns steps."""
    tokenizer = train_set.tokenizer
    augment = config.augmentation() or (lambda ids, _tokenizer, _rng: ids)
    optimizer, average = make_optimizer(model, config), weight_average(model, config.ema_decay)
    lengths = np.diff(train_set.offsets)
    autocast = autocast_for(config.precision, torch.device(device))
    model.train()
    step, started = 0, time.perf_counter()
    while time.perf_counter() - started < 60 * config.max_minutes:
        rng = np.random.default_rng([config.seed, step])
        rows = [
            prefix_sequence(augment(train_set.piece(int(i)), tokenizer, rng), tokenizer)
            for i in rng.choice(len(train_set), size=config.batch_size, p=lengths / lengths.sum())
        ]
        width = max(len(s) for s, _ in rows) - 1
        inputs = np.zeros((len(rows), width), dtype=np.int64)
        targets = np.full((len(rows), width), -100, dtype=np.int64)
        for r, (sequence, scored) in enumerate(rows):
            inputs[r, : len(sequence) - 1] = sequence[:-1]
            targets[r, : len(sequence) - 1] = np.where(scored[1:], sequence[1:], -100)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config, time.perf_counter() - started)
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            logits = model(torch.from_numpy(inputs).to(device))
        loss = F.cross_entropy(logits.float().flatten(0, 1), torch.from_numpy(targets).to(device).flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        optimizer.step()
        if average is not None:
            average.update_parameters(model)
        step += 1
    if average is not None:
        model.load_state_dict(average.module.state_dict())
    return step


# -- JSB ---------------------------------------------------------------------------------------
def melody_notes(soprano: np.ndarray) -> np.ndarray:
    """A soprano column as its notes' pitches: repeated (held) pitches merged, rests dropped."""
    sounding = soprano[soprano != SILENCE]
    return sounding[np.r_[True, sounding[1:] != sounding[:-1]]] if len(sounding) else sounding


def interval_spans(notes: np.ndarray, length: int) -> set[tuple[int, ...]]:
    steps = np.diff(notes)
    return {tuple(steps[i : i + length - 1]) for i in range(len(steps) - length + 2)}


def unshared(train_sopranos: list[np.ndarray], test_sopranos: list[np.ndarray]) -> list[int]:
    """Test chorales whose soprano shares no transposition-invariant span of SHARED_SPAN notes with a training one."""
    known = set().union(*(interval_spans(melody_notes(s), SHARED_SPAN) for s in train_sopranos))
    return [i for i, s in enumerate(test_sopranos) if not interval_spans(melody_notes(s), SHARED_SPAN) & known]


def summed(results: list[VoiceLeading]) -> VoiceLeading:
    """Counts added over chorales, so that rates are over all their transitions, steps and notes."""
    counts = {
        f.name: sum(getattr(r, f.name) for r in results)
        for f in fields(VoiceLeading)
        if f.name != "out_of_range_by_voice"
    }
    by_voice = tuple(int(x) for x in np.sum([r.out_of_range_by_voice for r in results], axis=0))
    return VoiceLeading(**counts, out_of_range_by_voice=by_voice)


def jsb(args, work: Path) -> dict:
    data = prepare(str(args.jsb), work / "jsb") if not (work / "jsb" / "manifest.json").is_file() else work / "jsb"
    train_set, test_set = TokenDataset(data, "train"), TokenDataset(data, "test")
    tokenizer = test_set.tokenizer
    task = Task("harmonize", tokenizer)
    config = train_config(args.minutes, args.device)
    test_ids = [test_set.piece(i) for i in range(len(test_set))]
    grids = [tokenizer.decode_grid(ids) for ids in test_ids]
    fresh = unshared(
        [tokenizer.decode_grid(train_set.piece(i))[:, 0] for i in range(len(train_set))], [g[:, 0] for g in grids]
    )
    rows = {}

    model, info = trained(work / "runs" / "a-encoder-decoder", data, encoder_decoder(task, 768, 512), config)
    nlls = nll_per_pair(model, PairedDataset(data, "test", "harmonize", 512, 0.25), exclude_eos=True)
    rows["(a) encoder-decoder"] = {**info, "all": total(nlls), "unshared": total(nlls, fresh)}
    harmony = harmonised(model, tokenizer, grids[: args.harmonize_pieces])

    longest = max(
        len(prefix_sequence(TokenDataset(data, s).piece(i), tokenizer)[0])
        for s in ("train", "valid", "test")
        for i in range(len(TokenDataset(data, s)))
    )
    torch.manual_seed(0)
    prefix = MusicTransformer(decoder_only(tokenizer.vocab_size, longest, positions="learned")).to(args.device)
    steps = train_prefix(prefix, train_set, config, args.device)
    prefix.eval()
    nlls = [masked_nll(prefix, *prefix_sequence(ids, tokenizer)) for ids in test_ids]
    rows["(b) decoder-only, soprano prefix"] = {
        "parameters": sum(p.numel() for p in prefix.parameters()),
        "steps": steps,
        "all": total(nlls),
        "unshared": total(nlls, fresh),
    }

    raster_config = decoder_only(tokenizer.vocab_size, 1024, positions="frame", frame=4)
    model, info = trained(work / "runs" / "c-raster", data, raster_config, config)
    voice = (np.arange(max(len(ids) for ids in test_ids)) - 1) % 4
    nlls = [masked_nll(model, ids, (voice[: len(ids)] > 0) & (ids > tokenizer.eos_id), frame=4) for ids in test_ids]
    rows["(c) unconditional raster model"] = {**info, "all": total(nlls), "unshared": total(nlls, fresh)}
    return {
        "nll": rows,
        "test_chorales": len(test_ids),
        "unshared": len(fresh),
        "span_notes": SHARED_SPAN,
        "harmonisation": harmony,
    }


def harmonised(model, tokenizer, grids: list[np.ndarray]) -> dict:
    """Voice leading of (a)'s harmonisations of these chorales' sopranos and of Bach's, and the soprano kept."""
    generated, kept, tokens = [], 0, 0
    for i, grid in enumerate(grids):
        soprano = grid[:, 0]
        ids = harmonize(model, tokenizer, soprano, num_samples=1, seed=i)[0]
        new = tokenizer.decode_grid(ids)
        generated.append(voice_leading(new))
        kept += int((new[:, 0] == soprano).sum())
        tokens += len(soprano)
    bach = summed([voice_leading(g) for g in grids])
    return {
        "chorales": len(grids),
        "soprano_kept": kept / tokens,
        "generated": summed(generated).to_json(),
        "bach": bach.to_json(),
    }


# -- POP909 ---------------------------------------------------------------------------------------
def pop909_options(parser: argparse.ArgumentParser) -> None:
    """``--pop909`` (the folder of MIDI files) and how many of its songs to use and to score."""
    parser.add_argument("--pop909", type=Path, help="the POP909 folder of MIDI files (skip POP909 without it)")
    parser.add_argument("--pop909-pieces", type=int, default=None, help="use the first N songs of POP909 [all]")
    parser.add_argument("--pop909-test-pieces", type=int, default=None, help="score this many test songs [all]")


def pop909_folder(args, work: Path) -> Path:
    """The first ``--pop909-pieces`` songs, linked into one folder."""
    folder = work / "pop909-songs"
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(args.pop909).glob("*.mid"))[: args.pop909_pieces]:
        if not (folder / path.name).exists():
            (folder / path.name).symlink_to(path.resolve())
    return folder


def pop909_pairs(args, work: Path) -> Path:
    """The pair folder (MELODY -> PIANO, performance events) of the first ``--pop909-pieces`` songs."""
    songs = pop909_folder(args, work)
    pairs_dir = work / "pop909-pairs"
    if not (pairs_dir / "pairs.json").is_file():
        for side, track in (("source", "MELODY"), ("target", "PIANO")):
            prepare(str(songs), pairs_dir / side, "performance", tracks=(track,))
        write_pair_manifest(pairs_dir, "accompany", str(songs), ("MELODY", "PIANO"))
    return pairs_dir


def pop909(args, work: Path) -> dict:
    songs, pairs_dir = pop909_folder(args, work), pop909_pairs(args, work)
    melody_dir = work / "pop909-melody"
    if not (melody_dir / "manifest.json").is_file():
        prepare(str(songs), melody_dir, "melody-grid", tracks=("MELODY",))
    config = train_config(args.minutes, args.device)
    n = args.pop909_test_pieces
    rows = {}

    pairs = PairedDataset(pairs_dir, "test", "accompany", 512, 0.25)
    model, info = trained(work / "runs" / "d-accompany", pairs_dir, encoder_decoder(pairs.task, 1024, 512), config)
    given = total(nll_per_pair(model, pairs, pairs=n))
    model, alone_info = trained(
        work / "runs" / "e-piano", pairs_dir / "target", decoder_only(pairs.tokenizer.vocab_size, 1024), config
    )
    pieces = [pairs.target_set.piece(t) for _, t in pairs.index[:n]]
    alone = total([masked_nll(model, ids, np.arange(len(ids)) > 0) for ids in pieces])
    rows["accompaniment (PIANO given MELODY, performance events)"] = {
        "given": {**info, "nll": given},
        "alone": {**alone_info, "nll": alone},
        "pieces": len(pieces),
    }

    spans = PairedDataset(melody_dir, "test", "infill", 512, 0.5)
    model, info = trained(work / "runs" / "f-infill", melody_dir, encoder_decoder(spans.task, 256, 512), config)
    given = total(nll_per_pair(model, spans, exclude_eos=True, pairs=n))
    model, alone_info = trained(
        work / "runs" / "g-melody", melody_dir, decoder_only(spans.tokenizer.vocab_size, 512), config
    )
    nlls = []
    for i in range(len(spans) if n is None else min(n, len(spans))):
        pair, ids = spans.pair(i), spans.target_set.piece(spans.index[i][1])
        first, last = (1 + s for s in pair.span)
        nlls.append(masked_nll(model, ids[:last], (np.arange(last) >= first)))
    rows["infilling 2 bars of the melody (melody grid)"] = {
        "given": {**info, "nll": given},
        "alone": {**alone_info, "nll": total(nlls)},
        "pieces": len(nlls),
    }
    return rows


# -- the report --------------------------------------------------------------------------------
def markdown(results: dict, command: str) -> str:
    """The measurements section of docs/conditional.md."""
    lines = [
        "## Measurements",
        "",
        f"Produced by `{command}` ({results['machine']}); every model trained for {results['minutes']:g} "
        "minutes of wall-clock time on that machine.",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
    ]
    if "jsb" in results:
        j = results["jsb"]
        lines += [
            f"## JSB Chorales: NLL of alto, tenor and bass given the soprano ({j['test_chorales']} test chorales)",
            "",
            f"'unshared': the {j['unshared']} test chorales whose soprano shares no {j['span_notes']}-note "
            "transposition-invariant span with a training soprano.",
            "",
            "| model | parameters | steps | NLL/token, all | NLL/token, unshared |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, r in j["nll"].items():
            lines.append(f"| {name} | {r['parameters']:,} | {r['steps']:,} | {r['all']:.4f} | {r['unshared']:.4f} |")
        h = j["harmonisation"]
        lines += [
            "",
            f"## Harmonisation against Bach ({h['chorales']} test sopranos, one sample each, (a))",
            "",
            "| A/T/B by | parallel fifths / transition | parallel octaves / transition | voice crossings / step "
            "| out of range / note | soprano kept |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for who in ("generated", "bach"):
            rates = h[who]["rates"]
            kept = f"{h['soprano_kept']:.1%}" if who == "generated" else "100%"
            lines.append(
                f"| {'the encoder-decoder' if who == 'generated' else 'Bach'} | "
                f"{rates['parallel_fifths']:.4f} | {rates['parallel_octaves']:.4f} | "
                f"{rates['voice_crossings']:.4f} | {rates['out_of_range']:.4f} | {kept} |"
            )
    if "pop909" in results:
        lines += [
            "",
            "## POP909: NLL of the target with and without the source (test songs)",
            "",
            "| task | songs | with source: NLL/token (params, steps) | without: NLL/token (params, steps) |",
            "|---|---:|---:|---:|",
        ]
        for name, r in results["pop909"].items():
            g, a = r["given"], r["alone"]
            lines.append(
                f"| {name} | {r['pieces']} | {g['nll']:.4f} ({g['parameters']:,}, {g['steps']:,}) | "
                f"{a['nll']:.4f} ({a['parameters']:,}, {a['steps']:,}) |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jsb", type=Path, help="Jsb16thSeparated.json (skip the JSB part without it)")
    pop909_options(parser)
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget of every model")
    parser.add_argument("--work", type=Path, required=True, help="folder for datasets and runs (reused if present)")
    parser.add_argument("--harmonize-pieces", type=int, default=None, help="harmonise this many test sopranos [all]")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    results = {
        "minutes": args.minutes,
        "machine": f"{describe_cpu()}, {torch.get_num_threads()} threads, {args.device}",
        "train": asdict(train_config(args.minutes, args.device)),
        "shape": SHAPE,
    }
    if args.jsb:
        results["jsb"] = jsb(args, args.work)
    if args.pop909:
        results["pop909"] = pop909(args, args.work)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    command = "python benchmarks/conditional.py " + " ".join(sys.argv[1:])
    report = markdown(results, command)
    if args.markdown:
        write_section(args.markdown, report)
    print(report)


def write_section(path: Path, section: str) -> None:
    """Put ``section`` between the results markers of ``path`` (the whole file when it has none)."""
    text = path.read_text() if path.is_file() else ""
    if BEGIN in text and END in text:
        section = text[: text.index(BEGIN) + len(BEGIN)] + "\n" + section + text[text.index(END) :]
    path.write_text(section)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
