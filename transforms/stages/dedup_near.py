"""dedup_near: MinHash LSH near-duplicate stars: each removed record is tied to a survivor it
resembles.

How a record goes through (every step a Beam transform; nothing is collected on the driver):

1. Sign: its shingles (`iptkit.transforms.text.shingles`: word n-grams, or character n-grams for
   Japanese, Chinese, Thai...), their 32-bit hashes, and a datasketch MinHash signature with
   permutations drawn from the spec seed. Records with identical signatures (copies, for all
   practical purposes) are grouped first and become one node, their smallest (they share its
   fate and survivor, at 1.0, unverified), so a text copied n times costs linear work. The
   signature is cut into `bands` bands of `rows` values; each band gives a bucket key, and
   each node enters each bucket alone (its id, ~20 bytes, not its 512-byte signature).
2. Edges: a GroupByKey on the bucket key; nodes that share a bucket in any band are
   candidates. A bucket of two or more nodes is a chunk to compare, named by a digest of its
   members, so the same chunk found in several bands (a near pair shares most of its 14
   buckets) is compared once; only then are the signatures joined to the chunks' members.
   Why the signatures do not travel in the buckets: every record enters 14 buckets and almost
   every bucket holds one record, so carrying them there shuffled ~8 KB a record; joining
   them to the few chunks afterwards shuffles each signature once (~0.5 KB), and the
   buckets ~0.8 KB a record. Every pair of a chunk is compared: by default the pair is an edge when its
   MinHash estimate (the share of equal signature values) reaches `threshold` less two
   standard errors of the estimate (`estimate_bar`: 0.729 at 0.8 with 128 values); with
   `verify`, when the true Jaccard similarity of the two shingle sets does (the shingle sets
   are joined to the pair; costlier). A hot bucket, more than `bucket_cap` nodes (a planted
   cluster of near-copies), is cut into salted sub-buckets of about bucket_cap/2 nodes, each
   holding the bucket's representative (its smallest node), so no key costs more than
   bucket_cap^2/2 estimates: every node keeps its edge to the representative, the first
   centre of the seeded walk among them, and to its sub-bucket. The bucket test alone, as LSH
   libraries use it, also links pairs far below the threshold (a pair at 0.6 shares a bucket
   one time in five with 14 x 9 bands).
3. Stars: star clustering of the edges (`iptkit.transforms.dedup.star`): in a seeded order of
   the records, the greedy maximal independent set is the set of centres, and every other
   record with an edge is tied to its most similar centre, so each removed record has an edge
   (a similarity at the threshold) to its survivor. A chain A~B~C with A and C far apart keeps
   A and C, or keeps B and removes both, each tied to B; never A's removal tied to C.
4. Survivors: each star's centre survives; each member is a reject with reason
   `near_duplicate`, whose record carries `meta.near_duplicate = {survivor, similarity,
   measure}` (measure `minhash_estimate`, or `jaccard` with verify).
5. Report: RUN/STAGE/clusters.json with the size histogram, counts and the largest stars.

Graph nodes are bytes: a seeded 64-bit hash of the record id, then the id (UTF-8). The hash
gives the star clustering its seeded order, and bytes compare like (hash, id) and travel with
Beam's deterministic bytes coder. Every choice depends on ids, texts and the seed only, never
on bundle order or worker count.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import struct
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any, Literal

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from pydantic import Field, model_validator

from iptkit.files import atomic_write
from iptkit.hashing import digest, hash_int
from iptkit.transforms.dedup.star import ASSIGNED, UNSETTLED, Edge, StarClusters
from iptkit.transforms.record import Record
from iptkit.transforms.stage import Drop, Stage, StageFn, metrics_namespace, outputs
from iptkit.transforms.stage_config import StageConfig
from iptkit.transforms.text.shingles import jaccard, shingle_hashes, shingle_unit, shingles

REASON = "near_duplicate"
META_KEY = "near_duplicate"  # a reject's record: {survivor, similarity, measure}
ESTIMATE = "minhash_estimate"
JACCARD = "jaccard"
REPORT_NAME = "clusters.json"
EXAMPLE_CLUSTERS = 5  # the largest clusters shown in the report
EXAMPLE_MEMBERS = 5  # members shown per example cluster (lowest ids)
SNIPPET_CHARS = 200
_SHINGLES = "shingles"
COPIES = "copies"
HOT = "hot"
SIGNATURES = "signatures"
_EVENTS = "events"
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class DedupNearConfig(StageConfig):
    """Options of the dedup_near stage."""

    num_perm: int = Field(128, ge=2, le=1024, description="MinHash permutations (signature size)")
    threshold: float = Field(
        0.8,
        gt=0,
        lt=1,
        description="Jaccard similarity of shingle sets that makes two records near-duplicates; "
        "sets bands and rows (datasketch's optimum) unless they are given, and is the bar "
        "for verify",
    )
    false_negative_weight: float = Field(
        0.9,
        gt=0,
        lt=1,
        description="when threshold sets bands and rows: weight of missed pairs against "
        "false candidates (datasketch's default 0.5 finds a pair at the threshold 40% of the "
        "time; 0.9 gives 14 x 9 at 0.8: 87% at 0.8, 97% at 0.85)",
    )
    bands: int | None = Field(
        None, ge=1, description="LSH bands; with rows, overrides the choice from threshold"
    )
    rows: int | None = Field(
        None, ge=1, description="signature values per band; bands x rows <= num_perm"
    )
    shingle_size: int = Field(
        5, ge=1, description="words per shingle, or characters for Japanese, Chinese, Thai..."
    )
    shingle_unit: Literal["auto", "word", "char"] = Field(
        "auto",
        description="auto: characters for a record whose lang is ja, zh, th, lo, km or my "
        "(without a lang: whose letters are mostly in those scripts), words otherwise",
    )
    max_chars: int = Field(
        1_000_000,
        ge=1,
        description="shingle at most this many characters of a record (its start): bounds the "
        "memory of one record (a 50 MB record's shingles took 9 GB); longer texts are compared "
        "on their first max_chars characters",
    )
    verify: bool = Field(
        False,
        description="keep a candidate pair only if the true Jaccard of its shingle sets "
        "reaches threshold (joins the shingle sets to every pair of each LSH bucket); without "
        "it, a pair is kept when its MinHash estimate reaches threshold less two standard "
        "errors of the estimate (0.729 at 0.8 with 128 permutations)",
    )
    bucket_cap: int = Field(
        256,
        ge=4,
        description="most members of an LSH bucket compared pair by pair: a larger (hot) "
        "bucket, such as a planted cluster of thousands of near-copies, is split into "
        "sub-buckets of about bucket_cap/2 members that all hold the bucket's representative, "
        "so no key costs more than bucket_cap^2/2 estimates; each member keeps its edge to "
        "the representative and to its sub-bucket",
    )
    rounds: int = Field(
        12,
        ge=1,
        le=64,
        description="star-clustering rounds (one GroupByKey each); a record still undecided "
        "after them survives (clusters.json counts them: unsettled_nodes)",
    )

    @model_validator(mode="after")
    def _bands_and_rows(self) -> DedupNearConfig:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("give both bands and rows, or neither (then threshold sets them)")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(
                f"bands x rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}"
            )
        return self


# ---------------------------------------------------------------------------------------------
# Pure functions


def lsh_params(cfg: DedupNearConfig) -> tuple[int, int]:
    """(bands, rows): as given, or datasketch's choice for the threshold: the pair that
    minimises the weighted areas under the S-curve below the threshold (false candidates) and
    above it (missed pairs)."""
    if cfg.bands is not None and cfg.rows is not None:
        return cfg.bands, cfg.rows
    return _optimal_bands_rows(cfg.threshold, cfg.num_perm, cfg.false_negative_weight)


@lru_cache
def _optimal_bands_rows(threshold: float, num_perm: int, fn_weight: float) -> tuple[int, int]:
    """Cached on the three numbers (the config holds lists, so it cannot be a cache key).
    datasketch is imported here and in `MinHasher`, not with the module: it pulls in
    scipy.integrate (~0.4 s), which every run paid at start-up through the stage registry."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(1 - fn_weight, fn_weight))
    return lsh.b, lsh.r


def estimate_bar(threshold: float, num_perm: int) -> float:
    """The MinHash estimate an edge needs: the threshold less two standard errors of the
    estimate at the threshold, sqrt(t (1 - t) / num_perm) (0.035 at 0.8 with 128 values), so a
    pair at the threshold passes 98% of the time and one at 0.1 under it about 2% of the time."""
    return threshold - 2 * math.sqrt(threshold * (1 - threshold) / num_perm)


def permutation_seed(seed: int) -> int:
    """datasketch's MinHash seed (numpy's RandomState needs 0 <= seed < 2**32) from the spec's."""
    return hash_int(f"dedup_near:{seed}", 4)


def _as_is(value: int) -> int:
    return value


class MinHasher:
    """MinHash signatures that share one set of permutations, drawn once.

    Each signature is a copy of an empty datasketch `MinHash` updated with the shingle hashes,
    which is what `MinHash.bulk` does: no record pays for drawing permutations. The hashes are
    already 32-bit, so datasketch's hash function is the identity.
    """

    def __init__(self, num_perm: int, seed: int):
        from datasketch import MinHash

        self._empty = MinHash(num_perm=num_perm, seed=permutation_seed(seed), hashfunc=_as_is)

    def signature(self, hashes: np.ndarray) -> np.ndarray:
        minhash = self._empty.copy()
        minhash.update_batch(hashes)
        return minhash.hashvalues


def band_keys(signature: np.ndarray, bands: int, rows: int) -> list[bytes]:
    """One bucket key per band: the band's index and its values as little-endian bytes."""
    values = signature[: bands * rows].astype("<u4").reshape(bands, rows)
    return [struct.pack(">H", i) + band.tobytes() for i, band in enumerate(values)]


def id_key(record_id: str) -> bytes:
    """An id as bytes, for keys: UTF-8 sorts like the code points, and `surrogatepass` keeps
    an undecodable input byte (Beam's string coders would fail on it)."""
    return record_id.encode("utf-8", "surrogatepass")


def node_of(record_id: str, seed: int) -> bytes:
    """A record's graph node: 8 bytes of seeded hash, then the id; ordered like (hash, id)."""
    raw = id_key(record_id)
    return digest(b"%d:" % seed + raw) + raw


def id_bytes(node: bytes) -> bytes:
    """The id in a node, as UTF-8 bytes (which sort like the id's code points)."""
    return node[8:]


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MinHash's estimate of the Jaccard similarity: the share of equal signature values, for
    one signature `a` against each row of `b`."""
    return (b == a).mean(axis=-1)


def signature_heads(item: tuple[bytes, Iterable[bytes]], bands: int, rows: int) -> Iterator[Any]:
    """The records of one signature as one graph node, their smallest (the head): its bucket
    entries `(band key, head)`; tagged `SIGNATURES`, `(head, signature)`, joined to the chunks
    later; and, tagged `COPIES`, `(head, copy)` for the others.

    Records with identical signatures are copies for all practical purposes (two sets at 0.8
    agree on all 128 values with probability 0.8^128): they share every bucket, so comparing
    them pair by pair would be quadratic work for nothing. `nodes` (Beam's grouped values) is
    read twice, never copied, so a text copied a million times costs linear time and no memory.
    """
    signature, nodes = item
    head = min(nodes)
    for node in nodes:
        if node != head:
            yield beam.pvalue.TaggedOutput(COPIES, (head, node))
    yield beam.pvalue.TaggedOutput(SIGNATURES, (head, signature))
    for key in band_keys(np.frombuffer(signature, "<u4"), bands, rows):
        yield key, head


def split_bucket(item: tuple[bytes, Iterable[bytes]], cap: int) -> Iterator[Any]:
    """One LSH bucket, `(key, nodes)`: the whole bucket as one sorted chunk to compare when it
    holds at most `cap` nodes; else, tagged `HOT`, each member
    under a sub-bucket key (`key` + salt) and the bucket's representative (its smallest node)
    under every one, marked.

    Why: a planted cluster of n near-copies puts n members in one bucket, and comparing every
    pair is n^2/2 estimates on one worker. Sub-buckets of about cap/2 members each, all holding
    the representative, bound the work of every key; a member keeps its edge to the
    representative (the first centre of the seeded walk among them) and to the members of its
    sub-bucket. The salt is the member's seeded hash (its node's first 8 bytes) modulo the
    number of sub-buckets, so the split depends on the bucket's members only.
    """
    key, members = item
    count, representative = 0, None
    for node in members:
        count += 1
        representative = node if representative is None or node < representative else representative
    if count < 2:  # most buckets: one record
        return
    if count <= cap:
        yield sorted(members)
        return
    subs = -(-(count - 1) // max(1, cap // 2))
    for node in members:
        if node == representative:
            for salt in range(subs):
                yield beam.pvalue.TaggedOutput(HOT, (key + struct.pack(">I", salt), (True, node)))
        else:
            salt = int.from_bytes(node[:8], "big") % subs
            yield beam.pvalue.TaggedOutput(HOT, (key + struct.pack(">I", salt), (False, node)))


def sub_bucket_chunks(members: Iterable[tuple[bool, bytes]], cap: int) -> Iterator[list[bytes]]:
    """A hot bucket's sub-bucket `(is representative, node)` as chunks of at most
    `cap` members to compare, each holding the representative: sorted, so the chunks depend
    on the members only. A sub-bucket averages cap/2 members; one over `cap` (a tail of the
    salt's binomial spread) becomes several chunks rather than one quadratic one."""
    representative, others = None, []
    for is_representative, node in members:
        if is_representative:
            representative = node
        else:
            others.append(node)
    others.sort()
    step = cap - 1
    for start in range(0, len(others), step):
        yield [representative, *others[start : start + step]]


def chunk_entries(chunk: list[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """A sorted chunk of nodes as `(node, chunk id)` per member, the id a digest of the
    members: identical chunks (one pair's buckets in several bands) get one id, so after a
    Distinct they are joined to their signatures and compared once."""
    chunk_id = digest(b"".join(struct.pack(">I", len(node)) + node for node in chunk), 16)
    for node in chunk:
        yield node, chunk_id


def key_by_chunk(
    node: bytes, chunk_id: bytes, signature: bytes
) -> tuple[bytes, tuple[bytes, bytes]]:
    return chunk_id, (node, signature)


def sorted_members(item: tuple[bytes, Iterable[tuple[bytes, bytes]]]) -> list[tuple[bytes, bytes]]:
    """A chunk's `(node, signature)` members sorted by node (at most `bucket_cap` of them)."""
    return sorted(item[1])


def bucket_pairs(members: list[tuple[bytes, bytes]], min_estimate: float) -> Iterator[Edge]:
    """Candidate edges among the distinct signatures of one chunk of `(node, signature
    bytes)`, sorted by node, as `(a, b, estimate)` with `a < b` and a MinHash estimate of at
    least `min_estimate`: len(members) * (len(members) - 1) / 2 estimates, vectorised by row."""
    if len(members) < 2:
        return
    matrix = np.stack([np.frombuffer(signature, np.uint32) for _, signature in members])
    for i, (a, _) in enumerate(members[:-1]):
        estimates = estimated_jaccard(matrix[i], matrix[i + 1 :])
        for j in np.flatnonzero(estimates >= min_estimate):
            yield a, members[i + 1 + j][0], float(estimates[j])


def resolve_copies(head: bytes, tagged: Iterable[tuple[bool, Any]]) -> Iterator[tuple]:
    """A head's copies with their survivor: the head's own centre (and the head's similarity
    to it) when the head was removed, else the head itself at 1.0. `tagged` holds
    `(True, (centre, similarity))` when the head was removed, and `(False, copy)` per copy."""
    centre, similarity = next((value for is_head, value in tagged if is_head), (head, 1.0))
    for is_head, value in tagged:
        if not is_head:
            yield value, centre, similarity


def reject_detail(survivor: str, similarity: float, measure: str, size: int) -> str:
    what = "Jaccard" if measure == JACCARD else "estimated Jaccard"
    return f"near-duplicate of {survivor} ({what} {similarity:.3f}; cluster of {size} records)"


def _printable(text: str) -> str:
    # Report values pass through Beam's coders and JSON as UTF-8: lone surrogates (undecodable
    # input bytes) are shown as U+FFFD there.
    return _SURROGATE.sub("\ufffd", text)


# ---------------------------------------------------------------------------------------------
# The cluster report: a combine with a bounded accumulator


def _empty_report() -> dict[str, Any]:
    return {"records": 0, "histogram": {}, "examples": {}}


def _top_examples(examples: dict[str, list]) -> dict[str, list]:
    """The largest clusters (ties: lowest survivor id), each with its lowest-id members."""
    chosen = sorted(examples.items(), key=lambda kv: (-kv[1][0], kv[0]))[:EXAMPLE_CLUSTERS]
    return {s: [size, sorted(members)[:EXAMPLE_MEMBERS]] for s, (size, members) in chosen}


class ClusterReportFn(beam.CombineFn):
    """Folds one event per record into the report; order- and bundle-independent.

    An event is `None` for a record outside any cluster, else `(survivor, size, id, snippet)`.
    The accumulator holds the histogram (one entry per distinct cluster size) and at most
    EXAMPLE_CLUSTERS x EXAMPLE_MEMBERS members, so it stays small for any corpus.
    """

    def create_accumulator(self) -> dict[str, Any]:
        return _empty_report()

    def add_input(self, acc: dict[str, Any], event: tuple[str, int, str, str] | None):
        acc["records"] += 1
        if event is None:
            return acc
        survivor, size, record_id, snippet = event
        if record_id == survivor:
            acc["histogram"][size] = acc["histogram"].get(size, 0) + 1
        entry = acc["examples"].setdefault(survivor, [size, []])
        entry[1].append([record_id, snippet])
        acc["examples"] = _top_examples(acc["examples"])
        return acc

    def merge_accumulators(self, accumulators: Iterable[dict[str, Any]]) -> dict[str, Any]:
        merged = _empty_report()
        for acc in accumulators:
            merged["records"] += acc["records"]
            for size, count in acc["histogram"].items():
                merged["histogram"][size] = merged["histogram"].get(size, 0) + count
            for survivor, (size, members) in acc["examples"].items():
                merged["examples"].setdefault(survivor, [size, []])[1].extend(members)
        merged["examples"] = _top_examples(merged["examples"])
        return merged

    def extract_output(self, acc: dict[str, Any]) -> dict[str, Any]:
        return acc


def cluster_report(acc: dict[str, Any], unsettled: int, params: dict[str, Any]) -> dict[str, Any]:
    """clusters.json from the combined accumulator."""
    histogram = acc["histogram"]
    clusters = sum(histogram.values())
    in_clusters = sum(size * count for size, count in histogram.items())
    return {
        "records": acc["records"],
        "clusters": clusters,
        "records_in_clusters": in_clusters,
        "removed": in_clusters - clusters,
        "size_histogram": {str(size): histogram[size] for size in sorted(histogram)},
        "converged": unsettled == 0,
        "unsettled_nodes": unsettled,
        "largest_clusters": [
            {
                "survivor": survivor,
                "size": size,
                "members": [{"id": i, "text": text} for i, text in members],
            }
            for survivor, (size, members) in _top_examples(acc["examples"]).items()
        ],
        "params": params,
    }


# ---------------------------------------------------------------------------------------------
# Beam


class _SignFn(StageFn):
    """Record -> (signature, node); with verify, also (node, shingle hashes)."""

    def setup(self) -> None:
        self._hasher = MinHasher(self.stage.config.num_perm, self.stage.seed)

    def process(self, record: Record) -> Iterator[Any]:
        with self.timed():
            cfg = self.stage.config
            text = record.text[: cfg.max_chars]
            unit = (
                shingle_unit(text, record.lang) if cfg.shingle_unit == "auto" else cfg.shingle_unit
            )
            hashes = shingle_hashes(shingles(text, cfg.shingle_size, unit))
            node = node_of(record.id, self.stage.seed)
            signature = self._hasher.signature(hashes).astype("<u4").tobytes()
        yield signature, node
        if cfg.verify:
            yield beam.pvalue.TaggedOutput(_SHINGLES, (node, hashes.tobytes()))


class _CandidatesFn(beam.DoFn):
    """A chunk of a bucket -> its candidate edges; the estimates per chunk go to the metric
    `bucket_pair_estimates` (a distribution: its max is the most work any key did)."""

    def __init__(self, min_estimate: float, namespace: str):
        self._min_estimate = min_estimate
        self._estimates = Metrics.distribution(namespace, "bucket_pair_estimates")

    def process(self, chunk: list[tuple[bytes, bytes]]) -> Iterator[Edge]:
        self._estimates.update(len(chunk) * (len(chunk) - 1) // 2)
        yield from bucket_pairs(chunk, self._min_estimate)


def _with_one(item: tuple[Any, Iterable[tuple[bool, Any]]]) -> Iterator[tuple[Any, Any, Any]]:
    """`(key, many, one)` for each of a key's `many` values, `one` being its single other value.

    Two passes over the grouped values (re-iterable, and paged from the shuffle on distributed
    runners) instead of CoGroupByKey, which lists every value of a key in memory.
    """
    key, tagged = item
    one = next((value for is_one, value in tagged if is_one), None)
    if one is None:
        return
    for is_one, value in tagged:
        if not is_one:
            yield key, value, one


class JoinOne(beam.PTransform):
    """`{"one": (key, value), "many": (key, value)}` in, `(key, many value, one value)` out:
    each value of `many` with the single value `one` has under the same key."""

    def expand(self, pcolls: dict[str, Any]):
        return (
            (
                pcolls["one"] | "Tag one" >> beam.MapTuple(lambda k, v: (k, (True, v))),
                pcolls["many"] | "Tag many" >> beam.MapTuple(lambda k, v: (k, (False, v))),
            )
            | "Flatten" >> beam.Flatten()
            | "Group" >> beam.GroupByKey()
            | "Pair" >> beam.FlatMap(_with_one)
        )


class VerifyPairs(beam.PTransform):
    """Candidate edges `(a, b, estimate)` in; out, the edges whose shingle sets reach the
    threshold, with their true Jaccard similarity in place of the estimate."""

    def __init__(self, threshold: float, namespace: str):
        super().__init__()
        self._threshold = threshold
        self._namespace = namespace

    def expand(self, pcolls: dict[str, Any]):
        threshold = self._threshold
        dropped = Metrics.counter(self._namespace, "pairs_below_threshold")
        sets = pcolls["shingles"]

        def similar(b: bytes, a_and_set: tuple[bytes, bytes], b_set: bytes):
            a, a_set = a_and_set
            score = jaccard(np.frombuffer(a_set, np.uint32), np.frombuffer(b_set, np.uint32))
            if score >= threshold:
                yield a, b, score
            else:
                dropped.inc()

        pairs = pcolls["pairs"] | "Drop estimates" >> beam.MapTuple(lambda a, b, _: (a, b))
        with_a = {"one": sets, "many": pairs} | "With first set" >> JoinOne()
        return (
            {
                "one": sets,
                "many": with_a | "Key second" >> beam.MapTuple(lambda a, b, a_set: (b, (a, a_set))),
            }
            | "With second set" >> JoinOne()
            | "Similar" >> beam.FlatMapTuple(similar)
        )


def cluster_members(
    centre: bytes, members: Iterable[tuple[bytes, float]]
) -> Iterator[tuple[bytes, tuple[bytes, int, float]]]:
    """A star's records keyed by id: each member and the centre with `(centre id, size,
    similarity to the centre)`, ids as bytes (Beam's string coder fails on a lone surrogate).
    `members` (Beam's grouped values) is read twice, never copied."""
    size = 1 + sum(1 for _ in members)
    survivor = id_bytes(centre)
    yield survivor, (survivor, size, 1.0)
    for member, similarity in members:
        yield id_bytes(member), (survivor, size, similarity)


class _SplitFn(StageFn):
    """Records joined with their star's (centre id, size, similarity), if any: kept, or a
    `near_duplicate` reject that names its centre and their similarity; one report event per
    record."""

    def process(self, item: tuple[bytes, dict[str, list]]) -> Iterator[Any]:
        _, joined = item
        measure = JACCARD if self.stage.config.verify else ESTIMATE
        pairs = []
        with self.timed():
            for record in joined["record"]:
                if not joined["cluster"]:
                    yield beam.pvalue.TaggedOutput(_EVENTS, None)
                    pairs.append((record, record))
                    continue
                survivor_key, size, similarity = joined["cluster"][0]
                survivor = survivor_key.decode("utf-8", "surrogatepass")
                snippet = record.text[:SNIPPET_CHARS]
                event = (_printable(survivor), size, _printable(record.id), _printable(snippet))
                yield beam.pvalue.TaggedOutput(_EVENTS, event)
                if record.id == survivor:
                    pairs.append((record, record))
                    continue
                evidence = {"survivor": survivor, "similarity": round(similarity, 4)}
                evidence["measure"] = measure
                view = dataclasses.replace(record, meta={**record.meta, META_KEY: evidence})
                detail = reject_detail(survivor, similarity, measure, size)
                pairs.append((record, Drop(REASON, detail, view)))
        yield from self.emit(pairs)


class DedupNear(
    Stage,
    stage="dedup_near",
    config=DedupNearConfig,
    summary="MinHash LSH near-duplicate stars: each removed record is tied to a similar "
    "survivor; RUN/STAGE/clusters.json",
):
    """Drops near duplicates: MinHash LSH buckets give candidate pairs, kept when their MinHash
    estimate (or, with verify, their true Jaccard) reaches the threshold; star clustering ties
    each removed record to a survivor it resembles; writes RUN/STAGE/clusters.json."""

    def files(self) -> dict[str, str]:
        return {"clusters": self.context.file(REPORT_NAME)}

    def run(self, records):
        cfg, namespace = self.config, metrics_namespace(self.name)
        bands, rows = lsh_params(cfg)
        # With verify every pair of a bucket is checked on its shingles; else on its estimate.
        min_estimate = 0.0 if cfg.verify else estimate_bar(cfg.threshold, cfg.num_perm)

        signed = records | "Sign" >> beam.ParDo(_SignFn(self)).with_outputs(
            _SHINGLES, main="signatures"
        )
        heads = (
            signed["signatures"]
            | "Signatures" >> beam.GroupByKey()
            | "Heads"
            >> beam.FlatMap(signature_heads, bands, rows).with_outputs(
                COPIES, SIGNATURES, main="buckets"
            )
        )
        buckets = (
            heads["buckets"]
            | "Buckets" >> beam.GroupByKey()
            | "Split buckets"
            >> beam.FlatMap(split_bucket, cfg.bucket_cap).with_outputs(HOT, main="chunks")
        )
        hot_chunks = (
            buckets[HOT]
            | "Sub-buckets" >> beam.GroupByKey()
            | "Sub-bucket members" >> beam.Values()
            | "Sub-bucket chunks" >> beam.FlatMap(sub_bucket_chunks, cfg.bucket_cap)
        )
        entries = (
            (buckets["chunks"], hot_chunks)
            | "All chunks" >> beam.Flatten()
            | "Chunk entries" >> beam.FlatMap(chunk_entries).with_output_types(tuple[bytes, bytes])
            | "Distinct chunk entries" >> beam.Distinct()
        )
        edges = (
            {"one": heads[SIGNATURES], "many": entries}
            | "With signatures" >> JoinOne()
            | "Key by chunk" >> beam.MapTuple(key_by_chunk)
            | "Chunks" >> beam.GroupByKey()
            | "Chunk members" >> beam.Map(sorted_members)
            | "Candidates" >> beam.ParDo(_CandidatesFn(min_estimate, namespace))
        )
        copies = heads[COPIES]
        edges = edges | "Distinct candidates" >> beam.Distinct()
        if cfg.verify:
            edges = {"pairs": edges, "shingles": signed[_SHINGLES]} | "Verify" >> VerifyPairs(
                cfg.threshold, namespace
            )
        stars = edges | "Stars" >> StarClusters(cfg.rounds, namespace)

        copies_resolved = (
            (
                stars[ASSIGNED] | "Head" >> beam.MapTuple(lambda n, c, sim: (n, (True, (c, sim)))),
                copies | "Copy" >> beam.MapTuple(lambda head, copy: (head, (False, copy))),
            )
            | "Heads and copies" >> beam.Flatten()
            | "By head" >> beam.GroupByKey()
            | "Resolve copies" >> beam.FlatMapTuple(resolve_copies)
        )
        clusters = (
            (stars[ASSIGNED], copies_resolved)
            | "All removed" >> beam.Flatten()
            | "Key centres" >> beam.MapTuple(lambda node, centre, sim: (centre, (node, sim)))
            | "Centres" >> beam.GroupByKey()
            | "Members" >> beam.FlatMapTuple(cluster_members)
        )
        keyed = records | "Key records" >> beam.Map(lambda r: (id_key(r.id), r)).with_output_types(
            tuple[bytes, Record]
        )
        joined = {"record": keyed, "cluster": clusters} | "Join records" >> beam.CoGroupByKey()
        split = outputs(joined, _SplitFn(self), "Split", tags=(_EVENTS,))

        unsettled = stars[UNSETTLED] | "Count unsettled" >> beam.combiners.Count.Globally()
        params = {
            **cfg.model_dump(exclude={"save", "bands", "rows"}),
            "bands": bands,
            "rows": rows,
        }
        path = self.context.file(REPORT_NAME)

        def write(acc: dict[str, Any], unsettled_nodes: int) -> None:
            report = cluster_report(acc, unsettled_nodes, params)
            text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
            atomic_write(path, text.encode("utf-8"))

        (
            split.pop(_EVENTS)
            | "Report" >> beam.CombineGlobally(ClusterReportFn())
            | "Write report" >> beam.Map(write, beam.pvalue.AsSingleton(unsettled))
        )
        return split
