"""Many processes, one run: the processes ``torchrun`` starts train one model with DistributedDataParallel.

``torchrun --nproc-per-node N -m reprise.cli.main train ...`` sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address in each process's
environment; :func:`joined` reads them and joins the process group (NCCL on CUDA,
one GPU per process; gloo on CPU). Without them a run is one process, as before.

Every process draws the whole global batch of a step from the same
``(seed, step, micro-batch)`` generator and keeps its :meth:`World.share` of the
rows, so together the processes see exactly the batch one process would. Process
0, the leader, alone touches the run directory and decides when time is up.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from reprise.device import pick_device
from reprise.errors import RepriseError

# the other processes wait in a collective while the leader validates and saves: allow it a long validation
WAIT = timedelta(hours=2)


@dataclass(frozen=True)
class World:
    """This process's place among the ``size`` processes training one run, and its device."""

    rank: int
    size: int
    device: torch.device

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def share(self, rows: int) -> slice:
        """This process's rows of a global batch of ``rows``: a contiguous block, the blocks covering it once."""
        if rows < self.size:
            raise RepriseError(f"a batch of {rows} windows cannot be shared among {self.size} processes")
        return slice(rows * self.rank // self.size, rows * (self.rank + 1) // self.size)

    def total(self, value: float) -> float:
        """The sum of ``value`` over the processes."""
        if self.size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor.item())

    def leaders(self, value: float) -> float:
        """The leader's ``value``, in every process: how they agree on the time spent, hence LR and stopping."""
        if self.size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(tensor, src=0)
        return float(tensor.item())


@contextmanager
def joined(device_name: str) -> Iterator[World]:
    """The world of this process: torchrun's process group, joined for the block, or a world of one."""
    device = pick_device(device_name)
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        yield World(0, 1, device)
        return
    if device.type not in ("cpu", "cuda"):
        raise RepriseError(f"training on several processes needs CPUs or CUDA GPUs, not {device.type}")
    if device.type == "cuda":  # one GPU per process on each machine
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=WAIT)
    try:
        yield World(dist.get_rank(), dist.get_world_size(), device)
    finally:
        dist.destroy_process_group()
