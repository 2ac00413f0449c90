"""Files wherever a run directory lives: a local path or any Beam FileSystems scheme (gs://...).

Everything the pipeline writes into RUN goes through these functions, so a run on Dataflow
with `--out gs://bucket/run` works like a local one. Writers that need a real local file (the
shard and Megatron writers memory-map and rename theirs) write to a local staging folder that
`publish_tree` then copies to its remote place.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

TMP_MARK = ".tmp-"


def is_local(path: str) -> bool:
    """Whether `path` is on this machine's file system (a path without a scheme)."""
    return FileSystems.get_scheme(path) is None


def atomic_write(path: str | os.PathLike[str], data: bytes | str | Iterable[bytes]) -> None:
    """Write `data` (text as UTF-8; or pieces of bytes, written in turn, so a large file is
    never one bytes object in memory) to `path` through a temporary file and a rename, so `path`
    is either whole or as it was. iptkit's one whole-file atomic writer: run directories, eval
    outputs, charts, output shards; local paths (their folder is created) or any FileSystems
    scheme."""
    path = os.fspath(path)
    if is_local(path):
        path = os.path.abspath(path)  # a bare file name has a folder too
    if isinstance(data, str):
        data = data.encode("utf-8")
    pieces = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
    tmp = f"{path}{TMP_MARK}{uuid.uuid4().hex}"
    try:
        with FileSystems.create(tmp, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            for piece in pieces:
                f.write(piece)
        FileSystems.rename([tmp], [path])
    except BaseException:
        if FileSystems.exists(tmp):
            FileSystems.delete([tmp])
        raise


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read()


def list_tree(folder: str) -> list[str]:
    """Every file under `folder`, as paths relative to it with "/" separators, sorted."""
    prefix = FileSystems.join(folder, "")
    matched = FileSystems.match([FileSystems.join(folder, "**")])[0].metadata_list
    return sorted(m.path[len(prefix) :].replace("\\", "/") for m in matched)


def publish_tree(local: Path, dest: str) -> None:
    """Copy every file under the local folder `local` to the same place under `dest`."""
    for f in sorted(p for p in local.rglob("*") if p.is_file()):
        target = FileSystems.join(dest, *f.relative_to(local).parts)
        with (
            open(f, "rb") as src,
            FileSystems.create(target, compression_type=CompressionTypes.UNCOMPRESSED) as out,
        ):
            shutil.copyfileobj(src, out, 1 << 20)


def move(source: str, dest: str) -> None:
    """Rename one file, creating the destination's folder where the file system has folders."""
    if is_local(dest):
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
    FileSystems.rename([source], [dest])


def delete_tree(folder: str) -> None:
    """Delete a folder and everything under it (on an object store: every object under it)."""
    if is_local(folder):
        shutil.rmtree(folder)
        return
    files = [FileSystems.join(folder, *rel.split("/")) for rel in list_tree(folder)]
    if files:
        FileSystems.delete(files)
