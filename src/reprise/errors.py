"""The one exception type for problems caused by the user's input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


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


def checked(path: Path, read: Callable[[], T]) -> T:
    """``read()``, with any failure to make sense of ``path``'s content turned into a one-line error naming it."""
    try:
        return read()
    except RepriseError as err:
        raise RepriseError(str(err) if str(path) in str(err) else f"{path}: {err}") from err
    except Exception as err:  # safetensors, torch, tokenizers and configs raise many kinds on damaged files
        message = " ".join(str(err).split())[:200]
        raise RepriseError(
            f"{path}: damaged or not from this version of reprise ({type(err).__name__}: {message})"
        ) from err
