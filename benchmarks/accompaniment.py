"""Accompaniment given a melody (POP909 ``MELODY`` -> ``PIANO``): four designs at equal budgets, and
what an accompanist writes under melodies it never saw.

    # the designs side by side (each model the same wall-clock budget, one core each)
    OMP_NUM_THREADS=1 python benchmarks/accompaniment.py --pop909 ../shared/data/pop909 --pop909-pieces 300 \\
        --pop909-test-pieces 30 --minutes 10 --work /tmp/accompaniment --json docs/accompaniment.json
    # what a trained accompanist writes, against POP909's piano parts
    python benchmarks/accompaniment.py --model accompanist --reference data/pop-pairs --melodies 8 \\
        --json docs/accompaniment_writes.json

The designs (width 128, 4 heads, the settings of benchmarks/conditional.py):

- the encoder-decoder (``--model encoder-decoder --task accompany``): the melody through an encoder,
  read by cross-attention (2 encoder and 4 decoder blocks);
- anticipation (``--task accompany --melody anticipation``, a decoder-only model,
  :mod:`reprise.data.anticipation`): the melody's notes interleaved into the accompaniment's stream 2 s
  before they sound (6 blocks);
- features (``--task accompany``, :mod:`reprise.data.melody_condition`): the accompaniment's plain
  stream, the melody's features added to each token's embedding (6 blocks);
- the accompaniment alone: a decoder-only model of the ``PIANO`` events without the melody (6 blocks).

All four are scored on exactly the same tokens: every accompaniment event of the first
``--pop909-test-pieces`` test songs and their ends (checked, not only computed alike).

What an accompanist writes: ``reprise accompany``'s sampling (temperature 1) under the first
``--melodies`` songs of music21's Essen folk songs (``essen``; POP909 has no folk songs), compared with the
``PIANO`` tracks of POP909's test split by the report's statistics: notes sounding at an onset (a
dense cloud of long overlapping notes shows here), median note duration in seconds, and the share of
the accompaniment's notes in the key of its melody (Krumhansl-Schmuckler): an accompanist that ignores
its melody plays out of its key.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from conditional import (
    decoder_only,
    encoder_decoder,
    masked_nll,
    pop909_options,
    pop909_pairs,
    total,
    train_config,
    trained,
)
from reprise.api import load
from reprise.benchmark.output import write_results
from reprise.data.anticipation import Anticipated, AnticipatedPairs, interleave, melody_notes
from reprise.data.dataset import TokenDataset
from reprise.data.melody_condition import N_FEATURES, MelodyConditioned, MelodyPairs, features, times_after
from reprise.data.pairs import PairedDataset, Task, paired_indices
from reprise.data.performance import VOCAB_SIZE, Performance
from reprise.data.sources import list_source, read_item
from reprise.device import describe_cpu
from reprise.evaluation.conditional import nll_per_pair
from reprise.evaluation.music_stats import estimate_key, median_duration, notes_at_onset, polyphony, share_in_key
from reprise.evaluation.nll import nll_of
from reprise.evaluation.pieces import Piece, piece_from_score
from reprise.generation.conditional import accompany
from reprise.generation.sampling import SamplingConfig

CONTEXT, SOURCE_CONTEXT = 1024, 512


def designs(args) -> dict:
    """Train the four designs for ``--minutes`` each and score them on the same test tokens."""
    pairs_dir, n, config = pop909_pairs(args, args.work), args.pop909_test_pieces, train_config(args.minutes, "cpu")
    runs, rows = args.work / "runs", {}
    pairs = PairedDataset(pairs_dir, "test", "accompany", SOURCE_CONTEXT, 0.25)
    targets = [pairs.target_set.piece(t) for _, t in pairs.index[:n]]

    model, info = trained(
        runs / "encoder-decoder", pairs_dir, encoder_decoder(pairs.task, CONTEXT, SOURCE_CONTEXT), config
    )
    rows["encoder-decoder (melody through cross-attention)"] = {**info, **_nll(nll_per_pair(model, pairs, pairs=n))}

    streams = AnticipatedPairs(pairs_dir, "test")
    pieces = [streams.piece(i) for i in range(len(targets))]
    model, info = trained(runs / "anticipation", pairs_dir, decoder_only(Anticipated().vocab_size, CONTEXT), config)
    scored = [(ids < VOCAB_SIZE) & (np.arange(len(ids)) > 0) for ids in pieces]
    nlls = [masked_nll(model, ids, mask, predicted=streams.tokenizer.predicted) for ids, mask in zip(pieces, scored)]
    rows["anticipation (melody 2 s ahead in the stream)"] = {**info, **_nll(nlls)}

    beside = MelodyPairs(pairs_dir, "test")
    model, info = trained(runs / "features", pairs_dir, decoder_only(VOCAB_SIZE, CONTEXT, condition=N_FEATURES), config)
    given = [beside.piece(i) for i in range(len(targets))]
    assert all(np.array_equal(a, b) for a, b in zip(given, targets)), "the features' songs are not the targets"
    nll = nll_of(model, given, CONTEXT, condition=beside.condition)
    rows["features (melody beside each token)"] = {**info, "nll": nll.per_token, "tokens": nll.tokens}

    model, info = trained(runs / "alone", pairs_dir / "target", decoder_only(VOCAB_SIZE, CONTEXT), config)
    rows["the accompaniment alone (no melody)"] = {
        **info,
        **_nll([masked_nll(model, ids, np.arange(len(ids)) > 0) for ids in targets]),
    }
    counts = {row["tokens"] for row in rows.values()}
    if len(counts) != 1:
        raise AssertionError(f"the designs were scored on different numbers of tokens: {counts}")
    return {"pieces": len(targets), "rows": rows}


def _nll(nlls: list) -> dict:
    return {"nll": total(nlls), "tokens": sum(x.tokens for x in nlls)}


def writes(args) -> dict:
    """Accompany ``--melodies`` Essen folk songs and compare the parts with POP909's piano test split."""
    model, tokenizer = load(args.model, "cpu")
    items, _ = list_source("essen")
    written = []
    for i, item in enumerate(items[: args.melodies]):
        melody = Performance().encode_score(read_item(item)[0])
        task, sampling = Task("accompany", tokenizer), SamplingConfig()
        part = accompany(model, task, melody, args.max_tokens, sampling=sampling, seed=i)[0]
        written.append((_piece(melody, item.name), _piece(part, item.name)))
    pairs = PairedDataset(args.reference, "test", "accompany")
    songs = [pairs.pair(i) for i in range(len(pairs))]
    reference = [(_piece(pair.source, pair.name), _piece(pair.target, pair.name)) for pair in songs]
    rows = {"written": _statistics(written), "POP909 PIANO (test)": _statistics(reference)}
    rows["ratio"] = {k: rows["written"][k] / rows["POP909 PIANO (test)"][k] for k in rows["written"]}
    melodies = [item.name for item in items[: args.melodies]]
    return {
        "model": str(args.model),
        "melodies": melodies,
        "rows": rows,
        "nll": melody_used(model, tokenizer, args.reference, 8),
    }


def melody_used(model, tokenizer: Anticipated | MelodyConditioned, pairs_dir: Path, n: int, tokens: int = 3000) -> dict:
    """An accompanist's NLL of the first ``tokens`` of ``n`` test songs given their melody and given it a
    tritone off (anticipated in its stream, or as the features beside each token): a model that ignores
    its melody scores both alike."""
    source, target = (TokenDataset(pairs_dir / side, "test") for side in ("source", "target"))
    conditioned = isinstance(tokenizer, MelodyConditioned)
    nll = {}
    for name, shift in (("melody", 0), ("melody a tritone off", 6)):
        streams, given = [], []
        for s, t in paired_indices(pairs_dir, "test")[:n]:
            notes = melody_notes(source.piece(s))
            notes[:, 2] = np.clip(notes[:, 2] + shift, 0, 127)
            if conditioned:
                streams.append(target.piece(t)[:tokens])
                given.append(features(times_after(streams[-1]), notes))
            else:
                streams.append(interleave(target.piece(t), notes, tokenizer.anticipation)[:tokens])
        scoring = {"scored": tokenizer.scored, "predicted": tokenizer.predicted}
        condition = given.__getitem__ if conditioned else None
        nll[name] = nll_of(model, streams, model.config.context, condition=condition, **scoring).per_token
    return nll


def _piece(events: np.ndarray, name: str) -> Piece:
    return piece_from_score(Performance().decode(events), name, name)


def _statistics(songs: list[tuple[Piece, Piece]]) -> dict:
    """Of the accompaniments of ``(melody, accompaniment)`` songs, per song, then over songs: mean notes
    at an onset, polyphony and share of notes in the melody's key (and, the control, in the key of
    another song's melody); median of the median durations."""
    parts = [part for _, part in songs]
    others = [(tune, part) for (tune, _), part in zip(songs, parts[1:] + parts[:1])]  # each with another's melody
    return {
        "notes_at_onset": float(np.nanmean([notes_at_onset(p) for p in parts])),
        "polyphony": float(np.nanmean([polyphony(p) for p in parts])),
        "median_duration_s": float(np.nanmedian([median_duration(p) for p in parts])),
        "in_melody_key": float(np.nanmean([share_in_key(part, estimate_key(tune)) for tune, part in songs])),
        "in_other_key": float(np.nanmean([share_in_key(part, estimate_key(tune)) for tune, part in others])),
        "notes": int(sum(len(p.pitch) for p in parts)),
    }


def markdown(results: dict) -> str:
    lines = [f"Command: `{results['command']}`; {results['machine']}.", ""]
    if "designs" in results:
        lines += [
            f"NLL per accompaniment token, {results['designs']['pieces']} POP909 test songs, "
            f"{results['minutes']:g} minutes of training each:",
            "",
            "| design | parameters | steps | NLL/token | tokens |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, row in results["designs"]["rows"].items():
            lines.append(
                f"| {name} | {row['parameters']:,} | {row['steps']:,} | {row['nll']:.4f} | {row['tokens']:,} |"
            )
    if "writes" in results:
        lines += [
            "",
            "| accompaniments | notes at an onset | polyphony | median duration (s) | in the melody's key "
            "| in another melody's key | notes |",
        ]
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for name, row in results["writes"]["rows"].items():
            cells = [
                f"{row[k]:.3f}"
                for k in ("notes_at_onset", "polyphony", "median_duration_s", "in_melody_key", "in_other_key")
            ]
            lines.append(f"| {name} | {' | '.join(cells)} | {row['notes'] if name != 'ratio' else ''} |")
        given = ", ".join(f"{k} {v:.4f}" for k, v in results["writes"]["nll"].items())
        lines += ["", f"NLL per accompaniment token, first 3,000 tokens of 8 test songs, given the {given}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    pop909_options(parser)
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget of every design")
    parser.add_argument("--work", type=Path, default=Path("/tmp/accompaniment"), help="datasets and runs")
    parser.add_argument("--model", help="an accompanist (run, folder or shipped name): measure what it writes")
    parser.add_argument("--reference", type=Path, help="POP909's pair folder (MELODY -> PIANO, prepare-pairs)")
    parser.add_argument("--melodies", type=int, default=8, help="Essen folk songs to accompany")
    parser.add_argument("--max-tokens", type=int, default=4096, help="events per accompaniment at most")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    results = {
        "command": "python benchmarks/accompaniment.py " + " ".join(sys.argv[1:]),
        "machine": f"{describe_cpu()}, {torch.get_num_threads()} threads",
        "minutes": args.minutes,
        "train": asdict(train_config(args.minutes, "cpu")),
    }
    if args.pop909:
        results["designs"] = designs(args)
    if args.model:
        results["writes"] = writes(args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.json, results, args.markdown, markdown(results))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
