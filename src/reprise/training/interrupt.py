"""Ctrl-C between steps, never inside one: SIGINT (and SIGTERM) held back while a step's state changes.

SIGTERM is how ``torchrun`` stops its workers when it is itself interrupted (they run
in sessions of their own, out of the terminal's reach), and how ``kill`` and job
schedulers stop a process: while a run trains, it interrupts as Ctrl-C does.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOPS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stoppable() -> Iterator[None]:
    """While the block runs, SIGTERM raises ``KeyboardInterrupt`` as SIGINT does, so the run saves on its way out."""
    if threading.current_thread() is not threading.main_thread():  # Python delivers signals to the main thread
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Run the block with SIGINT and SIGTERM held back, then raise the ``KeyboardInterrupt`` they stand for.

    The optimizer step, the weight-average update and the step counter must
    change together, or a checkpoint saved on the way out describes no real step.
    Outside the main thread (where Python delivers no signals) the block just runs.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {stop: signal.signal(stop, lambda signum, frame: received.append(signum)) for stop in STOPS}
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)
    if received:
        raise KeyboardInterrupt
