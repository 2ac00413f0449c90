"""The generation cache's cost per record, against the bare file operations it is made of.

    .venv/bin/python benchmarks/bench_cache.py            # 20,000 records, 5 rounds, ~1 minute
    .venv/bin/python benchmarks/bench_cache.py --records 100000 --json out.json

For each record iptkit pays, on top of its generation:
- a miss (first run): the key (a BLAKE2b of the model identity, prompt and seed), an existence
  check, and, once generated, the entry written through `atomic_write` (temporary file, rename);
- a hit (rerun): the key, the existence check, reading and parsing the entry.
The bare side does the same file work with plain calls and no iptkit code: `os.path.exists`,
`open(...).write` of the same bytes (no temporary file, no rename), `open(...).read` and
`json.loads`. Both work on local disk in fresh folders, one round after the other, alternating
which goes first; the medians of per-round figures are reported, as microseconds per record and
as the ratio iptkit / bare.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from iptkit.transforms.inference.cache import entry_path, load, request_key, store
from iptkit.transforms.inference.core import Generation, GenerationRequest

IDENTITY = json.dumps({"backend": "vllm", "model": "/models/llama-70b", "max_model_len": 4096})


def workload(n: int) -> list[tuple[GenerationRequest, Generation]]:
    text = "A response of a typical length, a few sentences about the instruction. " * 6
    return [
        (
            GenerationRequest(f"Instruction number {i}: explain something.", i),
            Generation(text, 40, 90),
        )
        for i in range(n)
    ]


def iptkit_round(root: str, items) -> tuple[float, float]:
    start = time.perf_counter()
    for request, generation in items:  # first run: every lookup misses, then the answer is kept
        key = request_key(IDENTITY, request)
        if load(root, key) is None:
            store(root, key, generation)
    miss = time.perf_counter() - start
    start = time.perf_counter()
    for request, _ in items:  # rerun: every lookup hits
        assert load(root, request_key(IDENTITY, request)) is not None
    return miss, time.perf_counter() - start


def bare_round(root: str, items) -> tuple[float, float]:
    paths = [entry_path(root, f"{i:032x}") for i in range(len(items))]
    payloads = [json.dumps({"generation": g.to_dict()}, sort_keys=True).encode() for _, g in items]
    start = time.perf_counter()
    for path, payload in zip(paths, payloads, strict=True):
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(payload)
    miss = time.perf_counter() - start
    start = time.perf_counter()
    for path in paths:
        with open(path, "rb") as f:
            json.loads(f.read())
    return miss, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    items = workload(args.records)
    rows = []
    for r in range(args.rounds):
        order = [("iptkit", iptkit_round), ("bare", bare_round)]
        measured = {}
        for name, fn in order if r % 2 == 0 else order[::-1]:
            root = tempfile.mkdtemp(prefix=f"bench-cache-{name}-")
            try:
                miss, hit = fn(root, items)
            finally:
                shutil.rmtree(root)
            measured[name] = (miss / args.records * 1e6, hit / args.records * 1e6)
        rows.append(measured)
        print(f"round {r + 1}: " + ", ".join(
            f"{n} miss+store {m:.1f} us, hit {h:.1f} us" for n, (m, h) in measured.items()
        ))  # fmt: skip
    result = {}
    for side in ("iptkit", "bare"):
        result[side] = {
            "miss_store_us": statistics.median(row[side][0] for row in rows),
            "hit_us": statistics.median(row[side][1] for row in rows),
        }
    result["ratio"] = {
        "miss_store": statistics.median(row["iptkit"][0] / row["bare"][0] for row in rows),
        "hit": statistics.median(row["iptkit"][1] / row["bare"][1] for row in rows),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"rounds": rows, **result}, indent=2))


if __name__ == "__main__":
    main()
