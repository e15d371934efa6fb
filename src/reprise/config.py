"""JSON round-trips for the configuration dataclasses that checkpoints and runs store."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, Self


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
