"""Reading small JSON Lines input files (prompt sets, question and problem files, labelled data)
where a bad line is the user's to fix: every error names the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def json_objects(
    path: str | Path, expected: str, error: type[Exception]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each non-blank line's object with its place `FILE:LINE`. An unreadable file, a line that
    is not JSON or not an object raises `error` naming the place and `expected` (what an
    object holds, e.g. "question_id, category, turns")."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read it as UTF-8 text: {exc}") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{where}: not JSON: {exc}") from None
        if not isinstance(row, dict):
            raise error(f"{where}: expected an object with {expected}")
        yield where, row
