"""Work per key of dedup_near's LSH buckets on a planted cluster of near-copies, by bucket_cap.

    .venv/bin/python benchmarks/bench_dedup_hot.py            # 10,000 and 300 copies

The stage's own pure functions, without Beam (the Beam run is tests/test_dedup_near.py): `n`
copies of a 40-word text, each with one word of its own (word Jaccard 38/41 between two), and 5
byte-identical copies; their signatures grouped into nodes (`signature_heads`), bucketed,
split (`split_bucket`, `sub_bucket_chunks`) and counted: the pair estimates of the largest
chunk (the most work one key does) and of all chunks, for each cap.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import apache_beam as beam

from iptkit.transforms.stages.dedup_near import (
    MinHasher,
    node_of,
    signature_heads,
    split_bucket,
    sub_bucket_chunks,
)
from iptkit.transforms.text.shingles import shingle_hashes, shingles

SEED = 1234


def near_copies(n: int) -> list[str]:
    base = [f"w{i}" for i in range(40)]
    texts = [" ".join(base[: i % 40] + [f"h{i}"] + base[i % 40 + 1 :]) for i in range(n)]
    return texts + texts[:1] * 5


def buckets_of(texts: list[str], num_perm: int, bands: int, rows: int) -> tuple[int, dict]:
    hasher = MinHasher(num_perm, SEED)
    nodes = defaultdict(list)
    for i, text in enumerate(texts):
        signature = hasher.signature(shingle_hashes(shingles(text, 1, "word")))
        nodes[signature.astype("<u4").tobytes()].append(node_of(f"h:{i}", SEED))
    buckets = defaultdict(list)
    for item in nodes.items():
        for out in signature_heads(item, bands, rows):
            if not isinstance(out, beam.pvalue.TaggedOutput):
                buckets[out[0]].append(out[1])
    return len(nodes), buckets


def chunks_of(buckets: dict, cap: int) -> list[list]:
    chunks, subs = [], defaultdict(list)
    for item in buckets.items():
        for out in split_bucket(item, cap):
            if isinstance(out, beam.pvalue.TaggedOutput):
                subs[out.value[0]].append(out.value[1])
            else:
                chunks.append(out)
    for members in subs.values():
        chunks += sub_bucket_chunks(members, cap)
    return chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caps", type=int, nargs="+", default=[8, 256, 10**9])
    args = parser.parse_args()
    print("| copies | nodes | largest bucket | bucket_cap | chunks | estimates, largest chunk "
          "| estimates, all |\n|---|---|---|---|---|---|---|")  # fmt: skip
    for n, num_perm, bands, rows in [(10_000, 32, 4, 4), (300, 64, 16, 4)]:
        heads, buckets = buckets_of(near_copies(n), num_perm, bands, rows)
        largest = max(map(len, buckets.values()))
        for cap in args.caps:
            work = [len(c) * (len(c) - 1) // 2 for c in chunks_of(buckets, cap)]
            shown = "none" if cap >= 10**9 else cap
            print(f"| {n:,} | {heads:,} | {largest:,} | {shown} | {len(work):,} | "
                  f"{max(work):,} | {sum(work):,} |")  # fmt: skip


if __name__ == "__main__":
    main()
