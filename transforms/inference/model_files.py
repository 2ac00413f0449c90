"""Where a model reference points, and model folders on object stores (gs://, s3://, any scheme Beam's FileSystems reads), copied
once per worker to local disk before a tokenizer, a transformers model or a vLLM server loads
them, as Beam's vLLM examples do.

The copy goes to `$IPTKIT_MODEL_CACHE` (default: the temporary folder's `iptkit-models/`), in a
folder named by a hash of the remote path; it is written under a temporary name and renamed
when whole, so a worker process that starts later (or a second stage naming the same model)
finds the finished copy and copies nothing.

A reference is local unless it says otherwise: `hub:ORG/NAME` is the Hugging Face Hub (the only
form that may reach the network), a scheme (gs://, s3://) a remote folder, anything else a
local path; local and copied folders load with `local_files_only`, so no Hub request is made.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import uuid

_LOCK = threading.Lock()


HUB_PREFIX = "hub:"


def is_hub(path: str) -> bool:
    """Whether `path` names a model on the Hugging Face Hub (`hub:ORG/NAME`, said explicitly)."""
    return path.startswith(HUB_PREFIX)


def is_remote(path: str) -> bool:
    """Whether `path` names a folder outside the local file system (a scheme other than file)."""
    return "://" in path and not path.startswith("file://")


def cache_root() -> str:
    return os.environ.get("IPTKIT_MODEL_CACHE") or os.path.join(
        tempfile.gettempdir(), "iptkit-models"
    )


def local_model_path(path: str) -> str:
    """What `from_pretrained` (or a vLLM server) is given for `path`: a local folder itself, the
    Hub id of `hub:ORG/NAME`, else the local copy of the remote folder, made on the first call
    in this worker."""
    if is_hub(path):
        return path[len(HUB_PREFIX) :]
    if not is_remote(path):
        return path
    name = path.rstrip("/").rsplit("/", 1)[-1] or "model"
    dest = os.path.join(cache_root(), f"{hashlib.sha256(path.encode()).hexdigest()[:16]}-{name}")
    with _LOCK:
        if not os.path.isdir(dest):
            _copy_folder(path.rstrip("/"), dest)
    return dest


def _copy_folder(source: str, dest: str) -> None:
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    matches = FileSystems.match([f"{source}/**"])[0].metadata_list
    if not matches:
        raise FileNotFoundError(f"model folder {source} is empty or does not exist")
    raw = CompressionTypes.UNCOMPRESSED  # the bytes as stored, whatever a file's name
    partial = f"{dest}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        for meta in matches:
            relative = meta.path[len(source) :].lstrip("/")
            target = os.path.join(partial, relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with (
                FileSystems.open(meta.path, compression_type=raw) as src,
                open(target, "wb") as out,
            ):
                shutil.copyfileobj(src, out, 1 << 20)
        try:
            os.rename(partial, dest)
        except OSError:  # another process finished the same copy first
            if not os.path.isdir(dest):
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
