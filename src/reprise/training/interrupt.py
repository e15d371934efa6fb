"""Ctrl-C between steps, never inside one: SIGINT is held back while a step's state changes."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Run the block with SIGINT held back, then raise the ``KeyboardInterrupt`` it would have raised.

    The optimizer step, the weight-average update and the step counter must
    change together, or a checkpoint saved on the way out describes no real step.
    Outside the main thread (where Python delivers no signals) the block just runs.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt
