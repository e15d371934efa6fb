"""The training loop: AdamW, warm-up + cosine LR, clipping, accumulation, validation, checkpoints.

A run directory holds ``run.json`` (data, model and train configs), ``last/``
and ``best/`` checkpoints and ``metrics.jsonl``. The batch drawn at step ``s`` is
a pure function of ``(seed, s)``, and dropout is seeded afresh for every
micro-batch from ``(seed, s, rank, micro-batch)``, so a resumed run sees exactly
the data and dropout masks it would have seen without the interruption: no RNG
state needs saving. Ctrl-C waits for the step being applied, then saves ``last/``.
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from reprise.data.anticipation import Anticipated
from reprise.data.dataset import SPLITS, TokenDataset
from reprise.data.pairs import PairedDataset
from reprise.data.performance import STEPS_PER_SECOND
from reprise.device import autocast
from reprise.errors import RepriseError
from reprise.evaluation.conditional import nll_given
from reprise.evaluation.nll import nll_of, nll_of_split, only_predicted
from reprise.models import build_model
from reprise.models.checkpoint import init_weights, load_weights, read_checkpoint, save_checkpoint
from reprise.models.markov import MarkovChain
from reprise.training.checkpoint import load_training_state, save_training_checkpoint
from reprise.training.config import TrainConfig
from reprise.training.distributed import World, joined
from reprise.training.interrupt import deferred_interrupt, stoppable
from reprise.training.lock import run_lock
from reprise.training.metrics import append_metrics, truncate_metrics
from reprise.training.run_dir import clear_run, last_checkpoint, read_run, write_run
from reprise.training.splits import open_split
from reprise.training.unlikelihood import check_unlikelihood, unlikelihood_terms

LOG_INTERVAL_S = 60  # progress-bar updates when stderr is not a terminal (a log file)


@dataclass
class TrainResult:
    """What a finished run reports."""

    run_dir: Path
    step: int
    best_val_nll: float
    tokens_per_second: float
    leader: bool = True  # False in the other processes of a run on several (their best_val_nll is not known)


def lr_at(step: int, config: TrainConfig, elapsed: float = 0.0) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``lr * min_lr_ratio`` at the end.

    The end is ``steps``, or ``max_minutes`` of training (``elapsed`` seconds so
    far) when that comes first.
    """
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    if config.max_minutes:
        progress = max(progress, elapsed / (60 * config.max_minutes))
    progress = min(1.0, progress)
    floor = config.lr * config.min_lr_ratio
    return floor + 0.5 * (config.lr - floor) * (1 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not biases, norms or 1-D parameters)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98))


def train(
    run_dir: Path,
    data_dir: Path | None = None,
    model_config: Any = None,
    train_config: TrainConfig | None = None,
    resume: bool = False,
    quiet: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Train a new run in ``run_dir``, or continue it with ``resume=True``.

    The run directory is locked while the run trains (:mod:`reprise.training.lock`).
    A new run refuses a directory that already holds one unless ``overwrite``, which
    deletes that run's files (and nothing else in the directory).
    """
    run_dir = Path(run_dir)
    if resume:
        train_config = train_config or read_run(run_dir)[2]  # a clear error before anything is created or locked
    elif data_dir is None or model_config is None or train_config is None:
        raise ValueError("a new run needs data_dir, model_config and train_config")
    with joined(train_config.device) as world:
        if not world.leader:  # the leader alone writes in the run directory; the others read what it read
            if resume:
                data_dir, model_config, _ = read_run(run_dir)
            return _train(run_dir, data_dir, model_config, train_config, True, resume, world)
        run_dir.mkdir(parents=True, exist_ok=True)
        with run_lock(run_dir):
            if resume:
                data_dir, model_config, _ = read_run(run_dir)
            else:
                clear_run(run_dir, overwrite)
            return _train(run_dir, data_dir, model_config, train_config, quiet, resume, world)


def _train(
    run_dir: Path, data_dir: Path, model_config: Any, config: TrainConfig, quiet: bool, resume: bool, world: World
) -> TrainResult:
    stream = Anticipated(round(config.anticipation * STEPS_PER_SECOND))  # if the data is a pair folder
    train_set, valid_set = (
        open_split(data_dir, split, model_config, config.infill, stream, config.scored_only) for split in SPLITS[:2]
    )
    tokenizer = train_set.tokenizer
    if model_config.vocab_size != tokenizer.vocab_size:
        raise RepriseError(f"model vocab {model_config.vocab_size} != tokenizer vocab {tokenizer.vocab_size}")
    if getattr(model_config, "positions", None) == "frame" and model_config.frame != tokenizer.frame:
        raise RepriseError(
            f"model frame {model_config.frame} != the {tokenizer.name} tokenizer's frame {tokenizer.frame}"
        )

    if config.unlikelihood:
        check_unlikelihood(tokenizer, model_config.context)
    if config.sampled_unlikelihood:
        check_unlikelihood(tokenizer, model_config.context, "--sampled-unlikelihood")
    if config.held_unlikelihood:
        check_unlikelihood(tokenizer, model_config.context, "--held-unlikelihood")
    torch.manual_seed(config.seed)
    model = build_model(model_config).to(world.device)
    if config.init is not None and not resume:
        init_weights(model, read_checkpoint(config.init)[0], tokenizer.grown_from)
    if isinstance(model, MarkovChain):
        if world.size > 1:
            raise RepriseError("a Markov chain is counted in one pass by one process: train it without torchrun")
        write_run(run_dir, data_dir, model_config, config)
        return _fit_counts(run_dir, model, train_set, valid_set)
    optimizer = make_optimizer(model, config)
    average = weight_average(model, config.ema_decay)
    step, best, elapsed = 0, math.inf, 0.0
    if resume:  # every process loads the same checkpoint
        last = last_checkpoint(run_dir)
        load_weights(model, last)
        state = load_training_state(last, optimizer, average)
        step, best, elapsed = state["step"], state["best_val_nll"], state["elapsed"]
        if world.leader:
            truncate_metrics(run_dir, step)
    elif world.leader:
        write_run(run_dir, data_dir, model_config, config)

    loop = _Loop(run_dir, model, optimizer, average, tokenizer, config, world, quiet)
    with stoppable():
        return loop.run(train_set, valid_set, step, best, elapsed)


def weight_average(model: torch.nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of ``model``'s weights, or ``None`` when ``decay`` is 0."""
    if not decay:
        return None
    if not 0 < decay < 1:
        raise RepriseError(f"ema_decay must be between 0 and 1, not {decay}")
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def dropout_seed(seed: int, step: int, rank: int, micro: int) -> int:
    """The seed of dropout's masks in micro-batch ``micro`` of step ``step`` on process ``rank``."""
    return int(np.random.SeedSequence([seed, step, rank, micro]).generate_state(1, np.uint64)[0])


class _Loop:
    """The state one training run carries from step to step."""

    def __init__(self, run_dir, model, optimizer, average, tokenizer, config: TrainConfig, world: World, quiet):
        self.run_dir, self.model, self.optimizer, self.average = run_dir, model, optimizer, average
        self.evaluated = average.module if average is not None else model  # what validation scores
        self.tokenizer, self.config, self.world, self.quiet = tokenizer, config, world, quiet
        # what computes the gradients: across processes, DDP averages them as backward runs
        self.forward = model if world.size == 1 else DistributedDataParallel(model)
        self.device = world.device
        self.autocast = autocast(config.precision, world.device)
        self.augmentation = config.augmentation()
        self.conditioned = bool(getattr(model.config, "condition", 0))  # batches: ((ids, features), targets)
        self.saved_at = time.perf_counter()  # when last/ was written, for the timed checkpoints

    def run(
        self, train_set: TokenDataset, valid_set: TokenDataset, step: int, best: float, elapsed: float
    ) -> TrainResult:
        config, model = self.config, self.model
        bar = self.progress_bar(step, elapsed)
        tokens_done, started = 0, time.perf_counter() - elapsed
        session_start = time.perf_counter()
        model.train()
        self.consistent = True  # False while an update is half applied: nothing may be saved then
        leader = self.world.leader
        try:
            while step < config.steps:
                elapsed = self.world.leaders(time.perf_counter() - started)  # all processes agree on the time
                if config.max_minutes is not None and elapsed >= 60 * config.max_minutes:
                    break
                lr = lr_at(step, config, elapsed)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                loss, tokens = self.gradients(train_set, step)
                with deferred_interrupt():
                    self.consistent = False
                    self.apply()
                    step += 1
                    tokens_done += tokens
                    rate = tokens_done / (time.perf_counter() - session_start)
                    self.log(
                        {
                            "step": step,
                            "loss": loss,
                            "lr": lr,
                            "tokens_per_s": rate,
                            "elapsed": time.perf_counter() - started,
                        }
                    )
                    self.consistent = True
                bar.update(1 if config.max_minutes is None else min(bar.total, time.perf_counter() - started) - bar.n)
                bar.set_postfix(
                    step=step, loss=f"{loss:.3f}", tok_s=f"{rate:,.0f}", best_val=f"{best:.3f}", refresh=False
                )
                if not leader:
                    continue
                if step % config.eval_every == 0:
                    best = self.validate(valid_set, step, best, started)
                elif time.perf_counter() - self.saved_at >= 60 * config.checkpoint_minutes:
                    self.save("last", step, best, time.perf_counter() - started)
            if leader and step % config.eval_every:  # the final step, unless just validated
                best = self.validate(valid_set, step, best, started)
        except KeyboardInterrupt as interrupt:
            bar.close()
            if not leader:
                raise RepriseError(f"process {self.world.rank}: interrupted at step {step}") from interrupt
            self.save("last", step, best, time.perf_counter() - started)
            raise RepriseError(
                f"interrupted at step {step}, saved in last/; "
                f"continue with: reprise train --resume --run {self.run_dir}"
            ) from interrupt
        except Exception:
            if leader and self.consistent:  # whatever failed, the steps done so far are kept
                self.save("last", step, best, time.perf_counter() - started)
            raise
        bar.close()
        rate = tokens_done / max(1e-9, time.perf_counter() - session_start)
        return TrainResult(self.run_dir, step, best, rate, leader)

    def progress_bar(self, step: int, elapsed: float) -> tqdm:
        """Counts steps, or seconds when the run has a time budget, so the ETA is right either way."""
        # on a terminal the bar redraws in place; in a log file every redraw is a new line, so update rarely
        common = dict(
            desc="train",
            disable=self.quiet,
            dynamic_ncols=True,
            mininterval=0.1 if sys.stderr.isatty() else LOG_INTERVAL_S,
        )
        if self.config.max_minutes is None:
            return tqdm(total=self.config.steps, initial=step, unit="step", **common)
        return tqdm(
            total=round(60 * self.config.max_minutes),
            initial=elapsed,
            unit="s",
            bar_format="{l_bar}{bar}| {n:.0f}/{total}s [{elapsed}<{remaining}{postfix}]",
            **common,
        )

    def gradients(self, train_set: TokenDataset, step: int) -> tuple[float, int]:
        """The clipped gradients of step ``step`` over ``grad_accum`` micro-batches; returns mean loss and tokens.

        Each process takes its share of every micro-batch; the loss is summed over target tokens and
        divided by their count in the whole micro-batch, so the processes' gradients add up to one
        process's. Nothing but the gradients changes, so an interruption here leaves the run as it was.
        """
        config, world = self.config, self.world
        self.optimizer.zero_grad(set_to_none=True)
        total, tokens = 0.0, 0
        for micro in range(config.grad_accum):
            rng = np.random.default_rng([config.seed, step, micro])
            inputs, targets = train_set.batch(rng, config.batch_size, self.model.config.context, self.augmentation)
            count = int((targets != self.tokenizer.pad_id).sum())  # over the whole micro-batch, all processes
            rows = world.share(config.batch_size)
            inputs = inputs if isinstance(inputs, tuple) else (inputs,)
            inputs = [torch.from_numpy(x[rows]).to(self.device) for x in inputs]
            targets = torch.from_numpy(targets[rows]).to(self.device)
            seed = dropout_seed(config.seed, step, world.rank, micro)
            torch.manual_seed(seed)
            last = micro == config.grad_accum - 1
            with nullcontext() if last or world.size == 1 else self.forward.no_sync():  # sync once per step
                with self.autocast:
                    logits = self.forward(inputs[0], condition=inputs[1]) if self.conditioned else self.forward(*inputs)
                pad = self.tokenizer.pad_id
                predicted = only_predicted(logits.float(), self.tokenizer.predicted)
                loss = F.cross_entropy(predicted.flatten(0, 1), targets.flatten(), ignore_index=pad, reduction="sum")
                with self.autocast:  # the sampled term runs the model again
                    samplers, windows = (self.model, self.forward), inputs[0]
                    loss = loss + unlikelihood_terms(
                        config, step, logits, targets, samplers, windows, self.tokenizer, seed
                    )
                loss = loss / (count * config.grad_accum)
                (loss * world.size).backward()  # DDP averages over the processes; their sum is wanted
            total += loss.item()
            tokens += count
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.clip)
        return world.total(total), tokens

    def apply(self) -> None:
        """Apply the gradients: the optimizer step, then the weight average."""
        self.optimizer.step()
        if self.average is not None:
            self.average.update_parameters(self.model)

    def validate(self, valid_set: TokenDataset, step: int, best: float, started: float) -> float:
        """Score the validation split, log it, save ``last`` and (if better) ``best``.

        Scored in float32 whatever the training precision, as ``reprise evaluate`` scores, so that
        ``best/`` is chosen on the number that evaluating it reports.
        """
        if isinstance(valid_set, PairedDataset):
            nll = nll_given(self.evaluated, valid_set)
        else:
            nll = nll_of_split(self.evaluated, valid_set)
        self.log(
            {
                "step": step,
                "val_nll": nll.per_token,
                "val_ppl": nll.perplexity,
                "val_tokens": nll.tokens,
                "elapsed": time.perf_counter() - started,
            }
        )
        if not self.quiet:
            tqdm.write(f"step {step}: validation NLL {nll.per_token:.4f} nats/token (perplexity {nll.perplexity:.3f})")
        elapsed = time.perf_counter() - started
        if nll.per_token < best:
            best = nll.per_token
            self.save("best", step, best, elapsed)
        self.save("last", step, best, elapsed)
        return best

    def save(self, name: str, step: int, best: float, elapsed: float) -> None:
        """``best`` holds the validated weights (the average, if kept); ``last`` what resuming needs."""
        training = {"step": step, "best_val_nll": best, "elapsed": elapsed, "train_config": self.config.to_json()}
        if name == "last":
            self.saved_at = time.perf_counter()
        if name == "best":
            save_training_checkpoint(self.run_dir / name, self.evaluated, self.tokenizer, training, self.optimizer)
        else:
            save_training_checkpoint(
                self.run_dir / name, self.model, self.tokenizer, training, self.optimizer, self.average
            )

    def log(self, row: dict[str, Any]) -> None:
        if self.world.leader:
            append_metrics(self.run_dir, row)


def _fit_counts(run_dir: Path, chain: MarkovChain, train_set: TokenDataset, valid_set: TokenDataset) -> TrainResult:
    """ "Training" a Markov chain: count once, score validation, save it as both best and last."""
    started = time.perf_counter()
    chain.fit(train_set.piece(i) for i in range(len(train_set)))
    rate = train_set.n_tokens() / (time.perf_counter() - started)
    nll = nll_of(
        chain,
        [valid_set.piece(i) for i in range(len(valid_set))],
        chain.config.context,
        frame=train_set.tokenizer.frame,
    )
    append_metrics(
        run_dir,
        {"step": 1, "val_nll": nll.per_token, "val_ppl": nll.perplexity, "elapsed": time.perf_counter() - started},
    )
    for name in ("best", "last"):
        save_checkpoint(run_dir / name, chain, train_set.tokenizer)
    return TrainResult(run_dir, 1, nll.per_token, rate)
