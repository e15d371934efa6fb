"""Exact negative log-likelihood of targets given their sources, under an encoder-decoder.

Every target token after ``BOS`` is scored exactly once, with the sliding
windows of :func:`reprise.data.windows.scoring_windows` over the target (starting on
the target's frame boundaries); each window reads the source window that
training would have given it (:func:`reprise.data.pairs.decoder_window`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from reprise.data.pairs import PairedDataset, Window, collate, decoder_window
from reprise.data.windows import scoring_windows
from reprise.evaluation.nll import NLL


def scored_windows(
    model: torch.nn.Module, dataset: PairedDataset, index: int, stride: int, exclude_eos: bool
) -> list[Window]:
    """The windows of pair ``index``, each with ``PAD`` on the targets it does not score."""
    config, pad = model.config, dataset.tokenizer.pad_id
    pair = dataset.pair(index)
    out = []
    for start, end, first in scoring_windows(len(pair.target), config.context, stride, dataset.task.target_frame):
        window = decoder_window(pair, dataset.task, start, end, config.source_context, config.source_offset)
        targets = window.targets.copy()
        targets[: first - start - 1] = pad
        if exclude_eos:
            targets[targets == dataset.tokenizer.eos_id] = pad
        out.append(replace(window, targets=targets))
    return out


@torch.no_grad()
def nll_per_pair(
    model: torch.nn.Module,
    dataset: PairedDataset,
    stride: int | None = None,
    batch_size: int = 16,
    exclude_eos: bool = False,
    pairs: int | None = None,
) -> list[NLL]:
    """The NLL of each pair's target given its source (``exclude_eos``: of the target's body only), for the
    first ``pairs`` pairs (default: all)."""
    stride = stride or max(1, model.config.context // 2)
    device, pad = next(model.parameters()).device, dataset.tokenizer.pad_id
    was_training = model.training
    model.eval()
    n = len(dataset) if pairs is None else min(pairs, len(dataset))
    jobs = [(i, w) for i in range(n) for w in scored_windows(model, dataset, i, stride, exclude_eos)]
    totals, counts = np.zeros(n), np.zeros(n, dtype=np.int64)
    for at in range(0, len(jobs), batch_size):
        chunk = jobs[at : at + batch_size]
        inputs, targets = collate([w for _, w in chunk], pad)
        logits = model(*(torch.from_numpy(x).to(device) for x in inputs)).float()
        targets = torch.from_numpy(targets).to(device)
        nll = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=pad, reduction="none").sum(1)
        for (i, _), row_nll, row in zip(chunk, nll.tolist(), (targets != pad).sum(1).tolist()):
            totals[i] += row_nll
            counts[i] += row
    model.train(was_training)
    return [NLL(float(t), int(c)) for t, c in zip(totals, counts)]


def nll_given(
    model: torch.nn.Module, dataset: PairedDataset, stride: int | None = None, exclude_eos: bool = False
) -> NLL:
    """Summed NLL of every target of ``dataset`` given its source."""
    per_pair = nll_per_pair(model, dataset, stride, exclude_eos=exclude_eos)
    return NLL(sum(n.total for n in per_pair), sum(n.tokens for n in per_pair))
