"""Where a benchmark's results go: every measurement as JSON, the table as markdown (or the terminal)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_results(json_path: Path | None, results: dict[str, Any], markdown_path: Path | None, table: str) -> None:
    """Write ``results`` to ``json_path`` and ``table`` to ``markdown_path``; print the table without one."""
    if json_path:
        json_path.write_text(json.dumps(results, indent=1))
    if markdown_path:
        markdown_path.write_text(table)
    else:
        print(table)
