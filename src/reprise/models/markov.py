"""The n-gram Markov chain: the counting baseline that any neural model must beat.

The next token's distribution given the last ``order`` tokens is estimated by
counting, with Witten-Bell interpolation: each history mixes its own counts
with the next-shorter history's distribution, weighted by how many distinct
tokens followed it, down to a uniform distribution. That gives every token a
non-zero probability, so NLL is always finite, and needs no tuning.

It has the transformer's interface (``forward(ids, caches)`` returning
log-probabilities as logits, ``new_caches``), so scoring, sampling and
checkpoints treat it like the neural models; its counts are tensors, saved in
safetensors.

Shapes in comments: B batch, T time (queries), S source (keys), H heads, D model width,
Dh head dim (D / H), V vocabulary.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from reprise.config import JsonConfig
from reprise.errors import RepriseError


@dataclass
class MarkovConfig(JsonConfig):
    """``order`` tokens of history; ``context`` only sizes scoring windows (any > order is exact)."""

    vocab_size: int = 128
    order: int = 4
    context: int = 1024

    def __post_init__(self) -> None:
        if self.order < 0:
            raise RepriseError(f"a Markov chain's order must be 0 or more, not {self.order}")


class History:
    """The last ``order`` tokens of each sequence being decoded, as host-side lists.

    The chain counts on the host whatever device its inputs are on, so the
    history is kept where the counting happens and never meets a device tensor.
    """

    def __init__(self) -> None:
        self.tokens: list[list[int]] | None = None
        self.length = 0


class MarkovChain(nn.Module):
    """Interpolated n-gram model over token ids."""

    def __init__(self, config: MarkovConfig):
        super().__init__()
        self.config = config
        # counts[k][history of k tokens] = {next token: count}
        self.counts: list[dict[tuple[int, ...], Counter]] = [defaultdict(Counter) for _ in range(config.order + 1)]
        self._dummy = nn.Parameter(torch.zeros(0), requires_grad=False)  # gives the module a device

    def fit(self, pieces: Iterable[np.ndarray]) -> None:
        """Count every n-gram up to ``order + 1`` tokens in ``pieces`` (id arrays, ``BOS`` first)."""
        for ids in pieces:
            ids = [int(i) for i in ids]
            for t in range(1, len(ids)):
                for k in range(min(self.config.order, t) + 1):
                    self.counts[k][tuple(ids[t - k : t])][ids[t]] += 1

    def distribution(self, history: tuple[int, ...]) -> np.ndarray:
        """P(next token | the last ``order`` tokens of ``history``), Witten-Bell interpolated."""
        vocab = self.config.vocab_size
        p = np.full(vocab, 1.0 / vocab)
        for k in range(min(self.config.order, len(history)) + 1):
            seen = self.counts[k].get(history[len(history) - k :])
            if not seen:
                break  # a longer history cannot have been seen if this one was not
            counts = np.zeros(vocab)
            counts[list(seen)] = list(seen.values())
            total, distinct = counts.sum(), len(seen)
            p = (counts + distinct * p) / (total + distinct)
        return p

    def forward(self, ids: torch.Tensor, caches: list[History] | None = None) -> torch.Tensor:
        """Log-probabilities ``(batch, time, vocab)`` of the token after each position."""
        past = caches[0].tokens if caches and caches[0].tokens is not None else [[] for _ in range(len(ids))]
        full = [before + now for before, now in zip(past, ids.tolist())]
        start = len(past[0])
        out = np.stack(
            [
                [
                    np.log(self.distribution(tuple(row[max(0, t + 1 - self.config.order) : t + 1])))
                    for t in range(start, len(row))
                ]
                for row in full
            ]
        )
        if caches:
            caches[0].tokens = [row[len(row) - self.config.order :] for row in full]
            caches[0].length += ids.shape[1]
        return torch.from_numpy(out).float().to(ids.device)

    def new_caches(self, batch: int, capacity: int) -> list[History]:
        return [History()]

    def num_parameters(self) -> int:
        """Stored counts: the chain's counterpart of a parameter count."""
        return sum(len(c) for table in self.counts for c in table.values())

    # -- checkpoints: the counts as flat tensors, so safetensors can store them ------
    def state_dict(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """Per order: the histories, and the runs of (next token, count) that follow each."""
        tensors = {}
        for k, table in enumerate(self.counts):
            histories = list(table)
            runs = [table[h] for h in histories]
            tensors[f"history.{k}"] = torch.tensor(histories, dtype=torch.int32).reshape(len(histories), k)
            tensors[f"offsets.{k}"] = torch.tensor(np.cumsum([0] + [len(r) for r in runs]), dtype=torch.int64)
            tensors[f"tokens.{k}"] = torch.tensor([t for r in runs for t in r], dtype=torch.int32)
            tensors[f"counts.{k}"] = torch.tensor([c for r in runs for c in r.values()], dtype=torch.int64)
        return tensors

    def load_state_dict(self, state_dict: dict[str, torch.Tensor], strict: bool = True, assign: bool = False):
        """Rebuild the counts from :meth:`state_dict`'s tensors."""
        for k in range(self.config.order + 1):
            offsets = state_dict[f"offsets.{k}"].tolist()
            tokens, counts = state_dict[f"tokens.{k}"].tolist(), state_dict[f"counts.{k}"].tolist()
            table = self.counts[k] = defaultdict(Counter)
            for i, history in enumerate(state_dict[f"history.{k}"].tolist()):
                a, b = offsets[i], offsets[i + 1]
                table[tuple(history)] = Counter(dict(zip(tokens[a:b], counts[a:b])))
        return nn.modules.module._IncompatibleKeys([], [])
