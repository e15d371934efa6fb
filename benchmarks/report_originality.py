"""How long the report's copy search takes on a POP909-sized training set.

    python benchmarks/report_originality.py ../shared/data/pop909 --json originality.json [--markdown out.md]

POP909's MIDI files are split by name: the last ``--queries`` files are the pieces
looked up, the rest the training set. Times (seconds, the fastest of
``--repeats`` runs, since the machine is shared): reading the training MIDI into
pieces, building the n-gram index of their lines and bars, and looking up every
query's longest melodic and whole-bar spans. The index replaces a scan of every
(query, training piece) pair, whose count is given for scale.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from reprise.evaluation.originality import TrainingIndex, originality
from reprise.evaluation.pieces import pieces_from_midi


def fastest(repeats: int, work):
    """(smallest wall time, result) of ``repeats`` calls of ``work``."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="POP909's folder of MIDI files")
    parser.add_argument("--queries", type=int, default=20, help="pieces looked up (the rest is the training set)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()

    read_s, pieces = fastest(1, lambda: pieces_from_midi(args.folder))
    train, queries = pieces[: -args.queries], pieces[-args.queries :]
    index_s, index = fastest(args.repeats, lambda: TrainingIndex(train))
    query_s, found = fastest(args.repeats, lambda: originality(queries, index))
    row = {
        "training_pieces": len(train),
        "training_notes": int(sum(len(p.pitch) for p in train)),
        "queries": len(queries),
        "pairs_a_scan_would_compare": len(train) * len(queries),
        "read_s": round(read_s, 2),
        "index_s": round(index_s, 2),
        "query_s": round(query_s, 2),
        "query_ms_per_piece": round(1000 * query_s / len(queries), 1),
        "median_longest_span_notes": found["median_notes"],
        "share_with_2_whole_bars": found["share_with_full_bars"],
    }
    args.json.write_text(json.dumps(row, indent=1))
    table = "| " + " | ".join(row) + " |\n|" + "---|" * len(row) + "\n| " + " | ".join(map(str, row.values())) + " |\n"
    if args.markdown:
        args.markdown.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
