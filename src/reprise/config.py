"""JSON round-trips for the configuration dataclasses that checkpoints and runs store, and reading JSON files."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Self

from reprise.errors import RepriseError


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; a one-line :class:`RepriseError` naming ``path`` if it is missing or broken."""
    try:
        data = json.loads(Path(path).read_bytes())
    except FileNotFoundError as err:
        raise RepriseError(f"{path}: missing") from err
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RepriseError(f"{path}: not valid JSON ({err}); the file is damaged") from err
    if not isinstance(data, dict):
        raise RepriseError(f"{path}: expected a JSON object, found {type(data).__name__}; the file is damaged")
    return data


class JsonConfig:
    """Mixin for dataclasses: ``to_json`` and a ``from_json`` that ignores unknown keys.

    Ignoring keys a newer or older reprise wrote keeps old checkpoints loadable;
    fields missing from ``data`` take their defaults.
    """

    def to_json(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in known})
