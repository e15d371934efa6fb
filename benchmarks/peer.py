"""reprise against gwinndr/MusicTransformer-Pytorch, the most used PyTorch Music Transformer.

    python benchmarks/peer.py --peer PATH --json peer.json --markdown peer.md

``PATH`` is a checkout of github.com/gwinndr/MusicTransformer-Pytorch with its
``third_party/midi_processor`` submodule (jason9693/midi-neural-processor); it is
imported from there, never copied here. Two keyword arguments that torch 2's
``nn.Transformer`` passes and the peer's modules predate (``is_causal`` to its RPR
encoder, ``tgt_is_causal``/``memory_is_causal`` to its dummy decoder) are accepted
and dropped by wrappers installed at run time.

Both projects at the peer's benchmark shape: 6 layers, d_model 256, 8 heads,
feed-forward 1024, vocabulary 390, dropout 0.1, relative attention (the peer's RPR,
reprise's ``relative`` with its default settings), random tokens, 2 threads. Every
measurement runs in a fresh process, one after the other:

- training: batch 4 × 1024 tokens, forward + backward + Adam; tokens/s over the
  timed steps after one warm-up step, in fp32 and under bfloat16 autocast; peak
  resident memory (``ru_maxrss``) of the process;
- generation: one sequence, primed with random tokens up to ``context - N``, then
  sampled as each project's own ``generate`` does (the peer runs the whole prefix
  for every token; reprise decodes with its key/value cache); ms/token is the
  difference between generating N tokens and 1, over N - 1, so the prefill is not
  counted. N is 8 for the peer (seconds per token) and 64 for reprise, whose
  milliseconds per token would otherwise drown in the prefill's noise; each time
  is the fastest of 3 tries for reprise.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

SHAPE = {"n_layers": 6, "d_model": 256, "n_heads": 8, "d_ff": 1024, "vocab": 390, "dropout": 0.1}
BATCH, TRAIN_LENGTH = 4, 1024
GEN_NEW, GEN_TRIES = {"gwinndr": 8, "reprise": 64}, {"gwinndr": 1, "reprise": 3}
HERE = Path(__file__).resolve().parent


def peer_model(peer: Path, context: int):
    """The peer's RPR MusicTransformer, its modules wrapped to accept torch 2's extra keyword arguments."""
    sys.path.insert(0, str(peer))
    from model import music_transformer, rpr  # the peer's packages

    encoder_forward = rpr.TransformerEncoderRPR.forward
    decoder_forward = music_transformer.DummyDecoder.forward

    def encoder(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        return encoder_forward(self, src, mask, src_key_padding_mask)

    def decoder(
        self,
        tgt,
        memory,
        tgt_mask=None,
        memory_mask=None,
        tgt_key_padding_mask=None,
        memory_key_padding_mask=None,
        tgt_is_causal=None,
        memory_is_causal=False,
    ):
        return decoder_forward(self, tgt, memory, tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask)

    rpr.TransformerEncoderRPR.forward = encoder
    music_transformer.DummyDecoder.forward = decoder
    return music_transformer.MusicTransformer(
        n_layers=SHAPE["n_layers"],
        num_heads=SHAPE["n_heads"],
        d_model=SHAPE["d_model"],
        dim_feedforward=SHAPE["d_ff"],
        dropout=SHAPE["dropout"],
        max_sequence=max(context, 2048),
        rpr=True,
    )


def reprise_model(context: int, vocab: int):
    sys.path.insert(0, str(HERE.parent / "src"))
    from reprise.models.config import ModelConfig
    from reprise.models.transformer import MusicTransformer

    return MusicTransformer(
        ModelConfig(
            vocab_size=vocab,
            context=context,
            d_model=SHAPE["d_model"],
            n_layers=SHAPE["n_layers"],
            n_heads=SHAPE["n_heads"],
            ff_mult=SHAPE["d_ff"] // SHAPE["d_model"],
            dropout=SHAPE["dropout"],
            attention="relative",
        )
    )


def train(project: str, peer: Path, precision: str, steps: int) -> dict:
    """Training tokens/s of ``project`` (runs in the child process)."""
    import torch
    import torch.nn.functional as F

    model = peer_model(peer, TRAIN_LENGTH) if project == "gwinndr" else reprise_model(TRAIN_LENGTH, SHAPE["vocab"])
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    ids = torch.randint(0, SHAPE["vocab"], (BATCH, TRAIN_LENGTH + 1))

    def step() -> None:
        with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
            logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return {"tokens_per_s": BATCH * TRAIN_LENGTH * steps / (time.perf_counter() - started)}


def generation_seconds(project: str, model, context: int, n_new: int) -> tuple[float, int]:
    """Seconds to sample ``n_new`` tokens after a random primer of ``context - GEN_NEW`` tokens, and how many came
    (the fastest of ``GEN_TRIES``)."""
    return min(_generation_seconds(project, model, context, n_new) for _ in range(GEN_TRIES[project]))


def _generation_seconds(project: str, model, context: int, n_new: int) -> tuple[float, int]:
    import numpy as np
    import torch

    seeded = torch.Generator().manual_seed(0)
    primer = torch.randint(3, SHAPE["vocab"] - 2, (context - GEN_NEW[project],), generator=seeded)
    started = time.perf_counter()
    if project == "gwinndr":
        with torch.no_grad():
            out = model.generate(primer, len(primer) + n_new, beam=0)
        return time.perf_counter() - started, out.shape[1] - len(primer)
    from reprise.data.performance import Performance
    from reprise.generation.generate import generate

    tokenizer = Performance()
    primer = np.concatenate([[tokenizer.bos_id], primer[1:].numpy()])
    out = generate(model, tokenizer, primer, n_new, seed=0)
    return time.perf_counter() - started, out.shape[1] - len(primer)


def generation(project: str, peer: Path, context: int) -> dict:
    """Marginal ms per generated token at ``context`` (runs in the child process)."""
    import torch

    torch.manual_seed(0)
    if project == "gwinndr":
        model = peer_model(peer, context)
    else:
        from reprise.data.performance import Performance

        model = reprise_model(context, Performance().vocab_size)
    model.eval()
    generation_seconds(project, model, context, 1)  # warm-up
    one, n_one = generation_seconds(project, model, context, 1)
    many, n_many = generation_seconds(project, model, context, GEN_NEW[project])
    return {"ms_per_token": 1000 * (many - one) / (n_many - n_one)}


def child(project: str, task: str, peer: Path, argument: str, steps: int) -> dict:
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    try:
        result = train(project, peer, argument, steps) if task == "train" else generation(project, peer, int(argument))
    except Exception as error:  # noqa: BLE001 - reported as the measurement's outcome
        result = {"error": f"{type(error).__name__}: {error}".splitlines()[0][:200]}
    return {**result, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run(project: str, task: str, peer: Path, argument: str, steps: int) -> dict:
    """One measurement in a fresh Python process."""
    command = [sys.executable, __file__, "--child", project, task, argument, "--peer", str(peer), "--steps", str(steps)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=peer if project == "gwinndr" else None)
    if done.returncode:
        result = {"error": (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1][:200]}
    else:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    row = {"project": project, "task": task, "setting": argument, **result}
    print(json.dumps(row), file=sys.stderr)
    return row


def markdown(rows: list[dict], command: str, cpu: str) -> str:
    """Both projects side by side, and reprise's speed-up."""

    def get(project: str, task: str, setting: str, field: str) -> float | None:
        for row in rows:
            if (row["project"], row["task"], row["setting"]) == (project, task, setting):
                return row.get(field)
        return None

    def cell(value: float | None, digits: int = 0) -> str:
        return "–" if value is None else f"{value:,.{digits}f}"

    def ratio(a: float | None, b: float | None) -> str:
        return "–" if a is None or b is None else f"{a / b:.1f}×"

    peer_fp32 = get("gwinndr", "train", "fp32", "tokens_per_s")
    lines = [
        "## reprise against gwinndr/MusicTransformer-Pytorch",
        "",
        f"`{command}` on {cpu}, 2 threads, each measurement in a fresh process.",
        "",
        "| | gwinndr (RPR) | reprise `relative` | reprise / gwinndr |",
        "|---|---:|---:|---:|",
    ]
    for precision in ("fp32", "bf16"):
        a, b = get("gwinndr", "train", precision, "tokens_per_s"), get("reprise", "train", precision, "tokens_per_s")
        lines.append(
            f"| training tokens/s, {precision} | {cell(a)} | {cell(b)} | {ratio(b, peer_fp32)} of gwinndr fp32 |"
        )
        lines.append(
            f"| peak RSS training {precision}, MiB | {cell(get('gwinndr', 'train', precision, 'peak_rss_mib'))} "
            f"| {cell(get('reprise', 'train', precision, 'peak_rss_mib'))} | |"
        )
    for context in ("1024", "2048"):
        a, b = get("gwinndr", "generate", context, "ms_per_token"), get("reprise", "generate", context, "ms_per_token")
        lines.append(f"| generation ms/token, context {context} | {cell(a, 1)} | {cell(b, 1)} | {ratio(a, b)} faster |")
    errors = [f"- {r['project']} {r['task']} {r['setting']}: {r['error']}" for r in rows if "error" in r]
    return "\n".join(lines + ([""] + errors if errors else [])) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer", type=Path, required=True, help="A checkout of gwinndr/MusicTransformer-Pytorch.")
    parser.add_argument("--json", type=Path, help="Where to write the measurements.")
    parser.add_argument("--markdown", type=Path, help="Where to write the table (default: print it).")
    parser.add_argument("--steps", type=int, default=3, help="Timed training steps per measurement.")
    parser.add_argument(
        "--precisions",
        nargs="+",
        choices=["fp32", "bf16"],
        default=["fp32", "bf16"],
        help="Training precisions (bf16 is emulated, 3-8x slower, on CPUs without AVX512-BF16/AMX).",
    )
    parser.add_argument("--child", nargs=3, metavar=("PROJECT", "TASK", "SETTING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child[:2], args.peer.resolve(), args.child[2], args.steps)))
        return
    peer = args.peer.resolve()
    if (
        not (peer / "model" / "rpr.py").is_file()
        or not (peer / "third_party" / "midi_processor" / "processor.py").is_file()
    ):
        sys.exit(f"{peer}: not a gwinndr/MusicTransformer-Pytorch checkout with its midi_processor submodule")
    rows = [
        run(project, "train", peer, precision, args.steps)
        for project in ("gwinndr", "reprise")
        for precision in args.precisions
    ]
    rows += [
        run(project, "generate", peer, context, args.steps)
        for project in ("gwinndr", "reprise")
        for context in ("1024", "2048")
    ]
    command = "python benchmarks/peer.py " + " ".join(sys.argv[1:])
    sys.path.insert(0, str(HERE.parent / "src"))
    from reprise.benchmark.output import write_results
    from reprise.device import describe_cpu

    cpu = describe_cpu()
    write_results(
        args.json, {"command": command, "cpu": cpu, "rows": rows}, args.markdown, markdown(rows, command, cpu)
    )


if __name__ == "__main__":
    main()
