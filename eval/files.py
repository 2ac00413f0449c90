"""Writing an eval run's files: whole or not at all, through iptkit's one atomic writer
(`iptkit.files.atomic_write`, as the run directories are written), so a killed evaluation leaves
no half-written summary that a comparison or a report would read as whole."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_text(path: Path, text: str) -> Path:
    """`text` to `path` as UTF-8, its folder created; returns `path`."""
    # Imported here: Beam's FileSystems (under atomic_write) loads only when a file is written.
    from iptkit.files import atomic_write

    atomic_write(path, text)
    return path


def write_json(path: Path, data: Any, default: Any = None) -> Path:
    """Indented UTF-8 JSON (Japanese stays readable); `default` serialises other objects."""
    return write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=default) + "\n")


def write_jsonl(path: Path, rows: list[dict[str, Any]], default: Any = None) -> Path:
    return write_text(
        path, "".join(json.dumps(r, ensure_ascii=False, default=default) + "\n" for r in rows)
    )
