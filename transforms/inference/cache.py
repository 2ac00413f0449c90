"""Resumable generation: every finished generation is kept, and never asked for twice.

A model stage's generations are the expensive part of a run (GPU-days at the papers' scale), so
each one is written to the cache as soon as its batch is done (`StoringHandler`, inside
RunInference's step), one small JSON file per generation under RUN/cache/STAGE/ (or the stage's `cache:` folder, which may be `gs://...`).
The key is a hash of everything that decides the output: the model's identity (backend, model
and tokenizer location with a fingerprint of a local model folder, dtype, context length, the
too-long policy, special tokens), the sampling parameters, the prompt text (or messages) and
the request's seed. The batch size is not in it: a result never depends on its batch-mates.

Each request is looked up before inference (`Lookup`, in `Generate`): a hit skips the model and returns the stored
generation, byte for byte what the model gave, so a rerun (after a crash, a SIGKILL, a failed
bundle) sends only the prompts without an answer and writes the same outputs as an uninterrupted
run. Failed generations (errors) are not stored: a timeout or a dead server is worth a retry.
Hits and misses are counted per stage (`cache_hits`, `cache_misses` in stats.json's `model` row).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from iptkit.files import atomic_write, is_local, read_bytes
from iptkit.hashing import digest
from iptkit.transforms.inference.core import (
    MODEL_COUNTER_PREFIX,
    Generation,
    GenerationRequest,
    ModelSpec,
)

# Fields of ModelSpec that never change what a model writes: how many prompts share a call, and
# how a server is reached (a served model is its name: a server moved to another host, or asked
# with more patience, keeps its answers).
NOT_IN_IDENTITY = (
    "batch_size",
    "gpu_memory_utilization",
    "base_url",
    "api_key_env",
    "concurrency",
    "timeout_s",
    "max_retries",
    "retry_backoff_s",
)
HITS, MISSES = "cache_hits", "cache_misses"
FORMAT = "iptkit-generation/1"


def folder_fingerprint(location: str) -> str:
    """A cheap fingerprint of a local model folder: its config files' bytes and every file's
    name and size (weights are not read: a 405B checkpoint would take minutes to hash). A hub
    id or remote path is its own identity."""
    if not is_local(location) or not os.path.isdir(location):
        return ""
    parts = []
    for name in sorted(os.listdir(location)):
        path = os.path.join(location, name)
        if not os.path.isfile(path):
            continue
        if name.endswith((".json", ".model", ".txt", ".jinja")) and os.path.getsize(path) < 2**22:
            with open(path, "rb") as f:
                parts.append(f"{name}:{digest(f.read(), 16).hex()}")
        else:
            parts.append(f"{name}:{os.path.getsize(path)}")
    return digest("\n".join(parts), 16).hex()


def model_identity(spec: ModelSpec) -> str:
    """Everything about a model and its sampling that decides its outputs, as canonical JSON."""
    fields = {k: v for k, v in dataclasses.asdict(spec).items() if k not in NOT_IN_IDENTITY}
    fields["model_fingerprint"] = folder_fingerprint(spec.model)
    if spec.tokenizer:
        fields["tokenizer_fingerprint"] = folder_fingerprint(spec.tokenizer)
    return json.dumps(fields, sort_keys=True, ensure_ascii=False)


def request_key(identity: str, request: GenerationRequest) -> str:
    """The cache key of one request to one model (hex, 32 characters)."""
    content = json.dumps([identity, dataclasses.asdict(request)], sort_keys=True)
    return digest(content, 16).hex()


def entry_path(root: str, key: str) -> str:
    """Where a key's generation lives: two levels of folders keep any one folder small."""
    return FileSystems.join(root, key[:2], key[2:4], f"{key}.json")


def load(root: str, key: str) -> Generation | None:
    """The stored generation of `key`, or None (no entry, or one a killed write left unusable)."""
    path = entry_path(root, key)
    if not FileSystems.exists(path):
        return None
    try:
        stored = json.loads(read_bytes(path))
    except (OSError, ValueError):
        return None
    if stored.get("format") != FORMAT or stored.get("key") != key:
        return None
    return Generation(**stored["generation"])


def store(root: str, key: str, generation: Generation) -> None:
    """Keep a finished generation (written whole or not at all). ASCII JSON: any character,
    a lone surrogate included, is kept exactly and the file is valid UTF-8."""
    entry = {"format": FORMAT, "key": key, "generation": generation.to_dict()}
    atomic_write(entry_path(root, key), json.dumps(entry, sort_keys=True))


class Lookup(beam.DoFn):
    """`(key, request)` -> a hit `(key, Generation)` (tagged `HITS`), or a miss
    `(key, (cache key, request))` for the model, whose handler stores the answer."""

    def __init__(self, root: str, spec: ModelSpec, namespace: str):
        self._root, self._identity = root, model_identity(spec)
        self._hits = Metrics.counter(namespace, MODEL_COUNTER_PREFIX + HITS)
        self._misses = Metrics.counter(namespace, MODEL_COUNTER_PREFIX + MISSES)

    def process(self, item: tuple[Any, GenerationRequest]) -> Iterator[Any]:
        key, request = item
        cache_key = request_key(self._identity, request)
        found = load(self._root, cache_key)
        if found is not None:
            self._hits.inc()
            yield beam.pvalue.TaggedOutput(HITS, (key, found))
        else:
            self._misses.inc()
            yield key, (cache_key, request)
