"""The one exception type for problems caused by the user's input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class RepriseError(Exception):
    """A problem caused by the user's input (a missing file, a bad option).

    The command line prints these as one line and exits non-zero, instead of a
    traceback, because they are not bugs in reprise.
    """


def named(what: object, action: Callable[[], Any]) -> Any:
    """``action()``, with ``what`` (a file, an upload's name) before any :class:`RepriseError` it raises,
    so that the one-line message says which input was wrong (nothing is added when ``what`` is empty)."""
    try:
        return action()
    except RepriseError as err:
        raise RepriseError(f"{what}: {err}" if what else str(err)) from err
