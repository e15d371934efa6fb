"""One training process per run directory: ``RUN_DIR/.lock``, held with ``flock`` for the run's life.

The kernel drops an ``flock`` when its process dies, however it dies, so a lock
file left behind by a killed run never blocks the next one; the file only tells
a refused process which pid holds the run.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reprise.errors import RepriseError

LOCK = ".lock"


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock while the block runs; a one-line error if another process holds it."""
    with open(Path(run_dir) / LOCK, "a+") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "another process"
            raise RepriseError(
                f"{run_dir}: in use by process {holder}, which is training in it; wait for it to finish or "
                "choose another --run"
            ) from None
        file.truncate(0)  # the file is never removed: unlinking a held lock lets two processes in
        file.write(f"{os.getpid()}\n")
        file.flush()
        try:
            yield
        finally:
            file.truncate(0)
            fcntl.flock(file, fcntl.LOCK_UN)
