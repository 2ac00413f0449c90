"""Scaling of the CPU pipeline on the DirectRunner: docs/s and peak RSS per stage per corpus size.

    .venv/bin/python benchmarks/bench_scaling.py                          # 25k, 50k, 100k
    .venv/bin/python benchmarks/bench_scaling.py --sizes 25000 100000 400000

On the cleaning benchmark's corpus (benchmarks/corpus.py: Debian documentation in en/ja/pl,
planted duplicates), at each size, every measurement a fresh process started by rusage.py (its
own wall, CPU seconds and peak RSS), one worker, in memory:
- `beam`: a bare Beam pipeline of the same data, ReadFromText -> key by line hash ->
  GroupByKey -> WriteToText (gzip): what the in-memory DirectRunner itself holds when every
  record crosses one shuffle, with no iptkit code;
- `beam lsh`: the same job plus, in the same pipeline, dedup_near's three shuffles of every
  record (signatures; 14 LSH band keys each with the node; the signatures joined to the chunks
  of two or more) with elements of its sizes and no iptkit code: what the runner holds for
  them (its own share: minus `beam`);
- `beam pack`: the same job plus pack's shuffles and its bucket-count side input with elements
  of pack's sizes and no iptkit code (its own share: minus `beam`);
- `beam synth`: the same job plus synthesize's structure (chosen half, chaining buckets from a
  count side input, chains joined) and its two outputs written as iptkit's sinks write them
  (byte-sized file count as a side input, grouped by file), with no iptkit code;
- `beam dedup`: the same job plus dedup_exact's group by normalised-text hash (lowest id kept)
  and its two outputs written as iptkit's sinks write them, with no iptkit code;
- `read+write`: `iptkit run` with no stage (read, output sink, rejects, ledger);
- each stage alone after read (langid, filters, dedup_exact, dedup_near, synthesize with the
  rule miner, decontaminate against the demo's benchmark files, pack = format + tokenize + pack,
  mix + pack), with the demo's options; synthesize also with chaining buckets of 1,000
  records (the one list a worker holds per bucket), pack also with 2 Mi-token buckets.
A stage's own cost is its run minus `read+write` at the same size (CPU seconds; peak RSS);
`read+write` minus `beam` is what iptkit's reading and sinks add over the runner's own. The bare
rows run with glibc's mmap threshold fixed as iptkit fixes it in its runs (iptkit/memory.py). The
slope of memory is the least-squares MB per 1,000 documents over the sizes. With
`--bounded-messages` every row runs through bounded_messages.py (the runner hands grouped data
to its worker in ~4 MB pieces instead of one message per stage) and is named "<row>, bounded
messages". Results: benchmarks/results/scaling.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import corpus
import yaml
from bench_cleaning import BEAM_FLAGS, IPTKIT, RESULTS, WORK, machine, measured

from iptkit.memory import THRESHOLD_BYTES

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "pipelines" / "examples"
BENCH = [
    str(EXAMPLES / "data/bench/arc_mini_en.jsonl"),
    {"path": str(EXAMPLES / "data/bench/jqa_mini_ja.jsonl"), "fields": {"id": "qid", "answer": "label"}},
]  # fmt: skip
PACK = {"tokenizer": str(EXAMPLES / "tokenizer"), "seq_len": 2048, "packing": "best_fit"}
# Each row: the stages of one run (the demo's options), after read.
ROWS: dict[str, list[dict[str, Any]]] = {
    "read+write": [],
    "langid": [{"langid": {"keep": ["en", "ja", "pl"], "min_score": 0.5}}],
    "filters": [{"filters": {}}],
    "dedup_exact": [{"dedup_exact": {}}],
    "dedup_near": [{"dedup_near": {"threshold": 0.8, "num_perm": 128, "shingle_size": 5}}],
    "synthesize": [{"synthesize": {"backend": "rules", "rounds": 2, "fraction": 0.5}}],
    # The same with chaining buckets of 1,000 records: what the chain list of one bucket holds.
    "synthesize chain_window 1k": [
        {"synthesize": {"backend": "rules", "rounds": 2, "fraction": 0.5, "chain_window": 1000}}
    ],
    "decontaminate": [{"decontaminate": {"benchmarks": BENCH, "action": "report"}}],
    "pack": [{"pack": PACK}],
    # The same with buckets of 2 Mi tokens: what pack holds when a bucket is not the whole split.
    "pack 2Mi-token buckets": [{"pack": {**PACK, "bucket_tokens": 2**21}}],
    "mix+pack": [
        {"mix": {"total_tokens": "all", "group_by": ["lang"],
                 "ratios": {"en": 0.5, "ja": 0.3, "pl": 0.2}, "on_infeasible": "scale_down"}},
        {"pack": PACK},
    ],
}  # fmt: skip
# The whole CPU flow in one run: every stage above once, in the data flow's order, with the
# same options (what a one-machine run holds at once, the README's guidance).
ROWS["flow"] = [
    *ROWS["langid"], *ROWS["filters"], *ROWS["dedup_exact"], *ROWS["dedup_near"],
    *ROWS["decontaminate"], *ROWS["synthesize"], *ROWS["mix+pack"],
]  # fmt: skip
# A bare Beam job of the same file: the runner's own memory, with nothing of iptkit's.
BARE_BEAM = """
import hashlib, struct, sys, zlib
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
src, dst = sys.argv[1], sys.argv[2]
{functions}
with beam.Pipeline(options=PipelineOptions(sys.argv[3:])) as p:
    lines = p | beam.io.ReadFromText(src)
{write}{branch}
"""
# Its write: the lines grouped into 16 shards, sorted, written by Beam's text sink.
BEAM_WRITE = """    (lines | beam.Map(lambda line: (zlib.crc32(line.encode()) % 16, line))
       | beam.GroupByKey()
       | beam.FlatMap(lambda kv: sorted(kv[1]))
       | beam.io.WriteToText(dst, file_name_suffix=".jsonl.gz"))
"""
# The same job, plus, in the same pipeline, dedup_near's shuffles of every record with
# elements of its sizes and no iptkit code: (128 x 32-bit signature, node = 8 hash bytes + id)
# grouped by signature; each head under 14 band keys of 2 + 9 x 4 bytes, as the demo's options
# give (14 x 9 at 0.8); the (head, signature) of every head joined to the members of buckets of
# two or more. The signature is a digest of the line (no MinHash), so a bucket holds one
# record, as most of dedup_near's do, and the join's "many" side is empty.
LSH_FUNCTIONS = """
from typing import Any, Iterator
BANDS, ROWS = 14, 9

def sign(line):
    record_id = line.split('"', 4)[3].encode()  # {"id": "...", ...}
    node = hashlib.blake2b(record_id, digest_size=8).digest() + record_id
    return hashlib.shake_128(line.encode()).digest(512), node

def heads(item) -> Iterator[Any]:
    signature, nodes = item
    head = min(nodes)
    yield beam.pvalue.TaggedOutput("signatures", (head, (True, signature)))
    for band in range(BANDS):
        key = struct.pack(">H", band) + signature[band * ROWS * 4 : (band + 1) * ROWS * 4]
        yield key, head

def shared(item):
    members = sorted(item[1])
    if len(members) > 1:
        chunk = hashlib.blake2b(b"".join(members), digest_size=16).digest()
        for node in members:
            yield node, (False, chunk)

def joined(item):
    signature = next((value for is_one, value in item[1] if is_one), None)
    for is_one, chunk in item[1]:
        if not is_one:
            yield chunk, signature
"""
LSH_BRANCH = """
    signed = (lines | beam.Map(sign)
       | "Signatures" >> beam.GroupByKey()
       | beam.FlatMap(heads).with_outputs("signatures", main="buckets"))
    entries = (signed.buckets
       | "Buckets" >> beam.GroupByKey()
       | beam.FlatMap(shared))
    ((signed.signatures, entries)
       | beam.Flatten()
       | "With signatures" >> beam.GroupByKey()
       | beam.FlatMap(joined)
       | beam.combiners.Count.Globally())
"""
# The same job, plus, in the same pipeline, pack's shuffles of every record with elements of
# its sizes and no iptkit code: each line routed to ((split, prefix), (sort key, token bytes,
# empty mask)) with as many 2-byte ids as the demo tokenizer gives its text (0.652 tokens a
# character, BOS and EOS; bytes of a digest of the line); per split the token sum -> bucket
# count (32 Mi tokens a bucket) as a dict side input of the step that keys each value by
# (split, prefix, bucket); grouped by bucket, sorted and measured as pack's writer does; the
# buckets grouped by split.
PACK_FUNCTIONS = """
import json
from typing import Any, Iterator
TOKENS_PER_CHAR, ID_BYTES, BUCKET_TOKENS = 0.652, 2, 2**25

def route(line):
    record = json.loads(line)
    key = record["id"]
    tokens = 2 + round(len(record["text"]) * TOKENS_PER_CHAR)
    ids = hashlib.shake_128(line.encode()).digest(tokens * ID_BYTES)
    order = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") >> 1
    return ("train", "train"), ((0.0, order, key), ids, b"")

def bucket(item, counts) -> Iterator[Any]:
    (folder, prefix), value = item
    yield (folder, prefix, value[0][1] % counts[folder]), value

def write(item):
    (folder, prefix, number), values = item
    docs = sorted(values, key=lambda v: v[0])
    return folder, (number, sum(len(v[1]) for v in docs) // ID_BYTES)
"""
PACK_BRANCH = """
    routed = {source} | "Route" >> beam.Map({route})
    counts = beam.pvalue.AsDict(routed
       | beam.Map(lambda kv: (kv[0][0], len(kv[1][1]) // ID_BYTES))
       | beam.CombinePerKey(sum)
       | beam.MapTuple(lambda split, n: (split, max(1, -(-n // BUCKET_TOKENS)))))
    (routed
       | "Bucket" >> beam.ParDo(bucket, counts)
       | "By bucket" >> beam.GroupByKey()
       | "Write" >> beam.Map(write)
       | "By split" >> beam.GroupByKey()
       | beam.combiners.Count.Globally())
"""
# The same job, plus, in the same pipeline, synthesize's structure (rule miner, the demo's
# options) and its two outputs, with no iptkit code: half the lines chosen by a hash of the id;
# per language the count of chosen lines as a dict side input of the step that keys each by
# (language, chain bucket of 10,000); grouped by bucket, sorted, cut into chains of 2; per chain
# one augmented record of twice its members' lines joined (synthesize's carries the members'
# texts and the pairs mined from them, which quote their sentences: 12.4 KB against 6.2 KB of
# member lines at 100k) and every member but the first as a reject; the output (the lines not
# chosen and the augmented records, as synthesize keeps them) and the rejects written as
# iptkit's sinks write (`held_sink`: each line keyed by its id's hash into as many files as its
# total bytes need at 128 MiB a file, a count that is a side input, so the runner holds the
# lines until it is known; grouped by file, sorted, gzip). Its output sink comes on top of the
# base job's (synthesize's replaces read+write's), so its own share is an upper bound of what
# the runner holds for synthesize's shuffles and outputs.
SYNTH_FUNCTIONS = """
import gzip, json
from typing import Any, Iterator
FRACTION, WINDOW, ROUNDS = 0.5, 10_000, 2

def digest(text):
    return hashlib.blake2b(text.encode(), digest_size=8).digest()

def chosen(line):
    return int.from_bytes(digest(line.split('"', 4)[3]), "big") < FRACTION * 2**64

def by_lang(line):
    return json.loads(line).get("lang") or "", line

def bucket(item, sizes):
    lang, line = item
    return (lang, zlib.crc32(line.encode()) % max(1, sizes[lang] // WINDOW)), line

def file_count(total):
    return max(1, -(-total // 2**27))

def keyed(kv, n):
    return int.from_bytes(kv[0], "big") % n, kv

def write_file(item, dst):
    number, rows = item
    with open(f"{dst}-{number:05d}.jsonl.gz", "wb") as f:
        f.write(gzip.compress(b"".join(line for _, line in sorted(rows)), 6, mtime=0))

def held_sink(pcoll, label, dst):
    lines = pcoll | f"{label} encode" >> beam.Map(lambda l: (digest(l), l.encode() + b"\\n"))
    n = beam.pvalue.AsSingleton(lines
       | f"{label} sizes" >> beam.Map(lambda kv: len(kv[1]))
       | f"{label} total" >> beam.CombineGlobally(sum)
       | f"{label} count" >> beam.Map(file_count))
    (lines | f"{label} key" >> beam.Map(keyed, n)
       | f"{label} group" >> beam.GroupByKey()
       | f"{label} write" >> beam.Map(write_file, f"{dst}-{label}"))

def chains(item) -> Iterator[Any]:
    ordered = sorted(item[1], key=digest)
    for start in range(0, len(ordered), ROUNDS):
        members = ordered[start : start + ROUNDS]
        yield "\\n".join(members) * 2
        for member in members[1:]:
            yield beam.pvalue.TaggedOutput("rejects", member)
"""
SYNTH_BRANCH = """
    chosen_lines = lines | beam.Filter(chosen) | "By lang" >> beam.Map(by_lang)
    sizes = beam.pvalue.AsDict(chosen_lines
       | beam.Map(lambda kv: (kv[0], 1))
       | beam.CombinePerKey(sum))
    out = (chosen_lines
       | "Bucket" >> beam.Map(bucket, sizes)
       | "Group" >> beam.GroupByKey()
       | beam.FlatMap(chains).with_outputs("rejects", main="augmented"))
    kept = (lines | "Not chosen" >> beam.Filter(lambda line: not chosen(line)), out.augmented)
    held_sink(kept | "Kept" >> beam.Flatten(), "output", dst)
    held_sink(out.rejects, "rejects", dst)
"""
# The same job, plus, in the same pipeline, dedup_exact's structure with no iptkit code: each
# line keyed by a 16-byte BLAKE2b of its case-folded, whitespace-collapsed text, grouped, the
# lowest id kept and the others rejected, the kept lines and the rejects written as iptkit's
# sinks write (`held_sink`, above). Its output sink comes on top of the base job's (dedup_exact's
# replaces read+write's), so its own share is an upper bound of what the runner holds for
# dedup_exact's shuffle and outputs.
DEDUP_FUNCTIONS = SYNTH_FUNCTIONS + """
def text_key(line):
    text = json.loads(line)["text"]
    return hashlib.blake2b(" ".join(text.casefold().split()).encode(), digest_size=16).digest(), line

def first(item) -> Iterator[Any]:
    ordered = sorted(item[1], key=lambda line: line.split('"', 4)[3])
    yield ordered[0]
    for line in ordered[1:]:
        yield beam.pvalue.TaggedOutput("rejects", line)
"""
DEDUP_BRANCH = """
    out = (lines
       | "Text key" >> beam.Map(text_key)
       | "Group texts" >> beam.GroupByKey()
       | beam.FlatMap(first).with_outputs("rejects", main="kept"))
    held_sink(out.kept, "output", dst)
    held_sink(out.rejects, "rejects", dst)
"""
# The same job, plus, in the same pipeline, mix's structure (the mix+pack row's options: lang
# shares 0.5/0.3/0.2, total "all", scale_down) then pack's (above), with no iptkit code: each
# line made a tokenized document of its size (its other fields as a JSON header, then 2 bytes
# for each token the demo tokenizer gives its text, at that tokenizer's rate per character in
# each language, so the same shares are taken), held whole for the select step, whose
# side inputs come from every document: the token sum per language -> the plan (each
# language's target), token totals per range of the hash order -> the range each remainder
# ends in, the documents of that range grouped -> the cutoff. Selected documents go on to
# pack's routing; the others are small reject lines written as iptkit's sinks write. Pack's
# shards are not written (as in `beam pack`).
MIX_FUNCTIONS = SYNTH_FUNCTIONS + PACK_FUNCTIONS + """
SHARES, RANGE_SHIFT = {"en": 0.5, "ja": 0.3, "pl": 0.2}, 52
LANG_TOKENS_PER_CHAR = {"en": 0.529, "ja": 0.888, "pl": 0.805}  # the demo tokenizer's, at 25k

def tokenized(line):
    record = json.loads(line)
    rate = LANG_TOKENS_PER_CHAR.get(record.get("lang"), TOKENS_PER_CHAR)
    tokens = 2 + round(len(record["text"]) * rate)
    del record["text"]
    head = json.dumps(record | {"kind": "raw", "copy": 0}, sort_keys=True).encode()
    order = int.from_bytes(digest(record["id"]), "big")
    ids = hashlib.shake_128(line.encode()).digest(tokens * ID_BYTES)
    return record.get("lang") or "", order, record["id"], tokens, head + ids

def solve(_, available):
    total = min(available[g] / share for g, share in SHARES.items() if g in available)
    return {g: total * share for g, share in SHARES.items() if g in available}

def boundary(item, plan) -> Iterator[Any]:
    lang, ranges = item
    left = plan.get(lang)
    if left is None:
        return
    for number, tokens in sorted(ranges):
        if tokens >= left:
            yield lang, (number, left)
            return
        left -= tokens
    yield lang, (None, left)

def in_boundary(doc, where) -> Iterator[Any]:
    found = where.get(doc[0])
    if found is not None and found[0] == doc[1] >> RANGE_SHIFT:
        yield doc[0], (doc[1], doc[2], doc[3])

def cutoff(item, where):
    lang, docs = item
    left = where[lang][1]
    for order, key, tokens in sorted(docs):
        left -= tokens
        if left <= 0:
            break
    return lang, (order, key)

def select(doc, plan, cutoffs) -> Iterator[Any]:
    lang, order, key, tokens, payload = doc
    if lang in plan and (cutoffs[lang] is None or (order, key) <= tuple(cutoffs[lang])):
        yield doc
    else:
        reject = {"id": key, "reason": "not_sampled", "record": {"lang": lang, "tokens": tokens}}
        yield beam.pvalue.TaggedOutput("rejects", json.dumps(reject, sort_keys=True))

def route_doc(doc):
    lang, order, key, tokens, payload = doc
    return ("train", "train"), ((0.0, order >> 1, key), payload[-tokens * ID_BYTES :], b"")
"""
MIX_BRANCH = """
    docs = lines | "Tokenize" >> beam.Map(tokenized)
    plan = beam.pvalue.AsSingleton(p
       | beam.Create([None])
       | "Plan" >> beam.Map(solve, beam.pvalue.AsDict(docs
          | beam.Map(lambda d: (d[0], d[3]))
          | "Tokens" >> beam.CombinePerKey(sum))))
    boundaries = (docs
       | beam.Map(lambda d: ((d[0], d[1] >> RANGE_SHIFT), d[3]))
       | "Range totals" >> beam.CombinePerKey(sum)
       | beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1])))
       | "Ranges" >> beam.GroupByKey()
       | "Boundary" >> beam.FlatMap(boundary, plan))
    where = beam.pvalue.AsDict(boundaries)
    from_docs = (docs
       | "In boundary" >> beam.FlatMap(in_boundary, where)
       | "Boundary docs" >> beam.GroupByKey()
       | "Cutoff" >> beam.Map(cutoff, where))
    from_ranges = boundaries | beam.FlatMap(lambda kv: [(kv[0], None)] if kv[1][0] is None else [])
    cutoffs = beam.pvalue.AsDict((from_docs, from_ranges) | beam.Flatten())
    mixed = (docs
       | "Select" >> beam.FlatMap(select, plan, cutoffs).with_outputs("rejects", main="kept"))
    mixed.kept | beam.Map(lambda d: d[0]) | "Taken" >> beam.combiners.Count.PerElement()
    held_sink(mixed.rejects, "rejects", dst)
""" + PACK_BRANCH.format(source="mixed.kept", route="route_doc")
# read+write's structure with no iptkit code, in place of the bare job's write: every line
# keyed by its id and grouped (read's duplicate-id check), the first of each id written as
# iptkit's sinks write (`held_sink`, above: the count of files from the total bytes, a side
# input, then grouped by file). Against `beam`, what the id check and the byte-sized sink cost
# the runner; against read+write, what iptkit's code adds on the same structure.
READ_WRITE = """    firsts = (lines
       | "Id" >> beam.Map(lambda line: (line.split('"', 4)[3], line))
       | "Ids" >> beam.GroupByKey()
       | "First" >> beam.Map(lambda kv: next(iter(kv[1]))))
    held_sink(firsts, "output", dst)
"""


def bare(functions: str = "", branch: str = "", write: str = BEAM_WRITE) -> str:
    return BARE_BEAM.format(functions=functions, write=write, branch=branch)


BARE = {
    "beam": bare(),
    "beam read+write": bare(SYNTH_FUNCTIONS, write=READ_WRITE),
    "beam synth": bare(SYNTH_FUNCTIONS, SYNTH_BRANCH),
    "beam lsh": bare(LSH_FUNCTIONS, LSH_BRANCH),
    "beam pack": bare(PACK_FUNCTIONS, PACK_BRANCH.format(source="lines", route="route")),
    "beam mix pack": bare(MIX_FUNCTIONS, MIX_BRANCH),
    "beam dedup": bare(DEDUP_FUNCTIONS, DEDUP_BRANCH),
}
# What each row's own share is measured against.
BASE = {
    "beam": "beam",
    "read+write": "beam",
    "beam read+write": "beam",
    "beam lsh": "beam",
    "beam pack": "beam",
    "beam synth": "beam",
    "beam dedup": "beam",
    "beam mix pack": "beam",
}


# `--bounded-messages`: every run through this launcher (the DirectRunner's grouped data
# handed over in ~4 MB pieces); rows are then named "<row>, bounded messages".
BOUNDED = [sys.executable, str(HERE / "bounded_messages.py")]
BOUNDED_SUFFIX = ", bounded messages"


def run_row(name: str, docs: Path, work: Path, bounded: bool = False) -> dict[str, Any]:
    """One `iptkit run` of a row's stages on `docs`; its rusage and RUN/timings.json."""
    run = work / "run"
    spec = {
        "seed": 1234,
        "output": str(run),
        "sources": [{"name": "corpus", "format": "jsonl", "path": str(docs), "id_field": "id",
                     "lang_field": "lang", "kind": "raw"}],
        "stages": ROWS[name],
    }  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    (work / "spec.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True))
    iptkit = [*BOUNDED, "iptkit"] if bounded else [str(IPTKIT)]
    cmd = [*iptkit, "run", str(work / "spec.yaml"), "--out", str(run), "--force", *BEAM_FLAGS]
    result = measured(cmd, work / "log.txt")
    timings = json.loads((run / "timings.json").read_text())
    result["wall_seconds"] = timings["wall_seconds"]
    result["stage_seconds"] = timings["stage_seconds"]
    return result


# The allocator setting iptkit makes in every run (iptkit/memory.py), given to the bare replicas
# through glibc's environment, so a replica's memory differs from iptkit's by code alone.
SAME_ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": str(THRESHOLD_BYTES)}


def run_bare_beam(name: str, docs: Path, work: Path, bounded: bool = False) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    script = work / "bare_beam.py"
    script.write_text(BARE[name])
    python = BOUNDED if bounded else [sys.executable]
    cmd = [*python, str(script), str(docs), str(work / "out"), *BEAM_FLAGS]
    result = measured(cmd, work / "log.txt", SAME_ALLOCATOR)
    result["wall_seconds"] = result["process_seconds"]
    return result


def results_file(out: Path, script: str, sizes: list[int], **fields: Any) -> dict[str, Any]:
    """The results in `out` so far (runs of other sizes and rows are kept), with this run's
    date, command, machine, the sizes measured in all and `fields`."""
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    results.update(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        command=" ".join([".venv/bin/python", f"benchmarks/{script}", *sys.argv[1:]]),
        machine=machine(),
        sizes=sorted(set(sizes) | {int(n) for n in results["runs"]}),
        **fields,
    )
    return results


def work_folder(*parts: Any) -> Path:
    """WORK/parts..., a row's name made a folder name."""
    return WORK.joinpath(*(str(p).replace("+", "_").replace(" ", "_") for p in parts))


def mb_per_1k(points: dict[int, float]) -> float | None:
    """Least-squares slope of MB on documents, per 1,000 documents."""
    if len(points) < 2:
        return None
    xs, ys = list(points), list(points.values())
    mx, my = statistics.mean(xs), statistics.mean(ys)
    return (
        1000
        * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
        / sum((x - mx) ** 2 for x in xs)
    )


def base_of(row: str) -> str:
    """The row a row's own share is measured against, run the same way (bounded or not)."""
    name = row.removesuffix(BOUNDED_SUFFIX)
    return BASE.get(name, "read+write") + row[len(name) :]


def own(results: dict[str, Any], row: str, size: int, key: str) -> float:
    """A row's figure less its baseline's at the same size (a stage's own share)."""
    by = results["runs"][str(size)]
    return by[row][key] - by[base_of(row)][key]


def table(results: dict[str, Any]) -> str:
    sizes = results["sizes"]
    head = " | ".join(f"{n:,} docs: docs/s (own CPU), peak RSS (own)" for n in sizes)
    lines = [
        f"| row | {head} | own RSS slope, MB per 1k docs | whole RSS slope |",
        "|---" * (len(sizes) + 3) + "|",
    ]
    names = [*BARE, *ROWS]
    for row in [*names, *(name + BOUNDED_SUFFIX for name in names)]:
        if not any(row in results["runs"][str(n)] for n in sizes) and row not in names:
            continue
        cells, own_rss, whole_rss = [], {}, {}
        for n in sizes:
            r = results["runs"][str(n)].get(row)
            if r is None or (row != base_of(row) and base_of(row) not in results["runs"][str(n)]):
                cells.append("-")
                continue
            whole_rss[n] = r["maxrss_mb"]
            if row == base_of(row):
                cells.append(f"{n / r['cpu_seconds']:,.0f} (-), {r['maxrss_mb']:,.0f} MB (-)")
                continue
            cpu, rss = own(results, row, n, "cpu_seconds"), own(results, row, n, "maxrss_mb")
            own_rss[n] = rss
            rate = f"{n / cpu:,.0f}" if cpu > 0 else "-"
            cells.append(f"{rate}, {r['maxrss_mb']:,.0f} MB ({rss:+,.0f})")
        slopes = [mb_per_1k(own_rss), mb_per_1k(whole_rss)]
        own_text, whole_text = (f"{x:+.2f}" if x is not None else "-" for x in slopes)
        lines.append(f"| {row} | {' | '.join(cells)} | {own_text} | {whole_text} |")
    return "\n".join(lines)


# The flow's stages for the planning table: one read and write, each stage's own cost once
# (mix+pack holds format, tokenize, mix and pack; the pack row alone is left out).
PLAN_ROWS = ("langid", "filters", "dedup_exact", "dedup_near", "synthesize", "decontaminate",
             "mix+pack")  # fmt: skip
# Dataflow's n2-standard machine types: (vCPUs, GB of memory).
MACHINES = {"n2-standard-4": (4, 16), "n2-standard-8": (8, 32), "n2-standard-16": (16, 64)}


def mean_chars(size: int) -> float:
    """Characters per document of the corpus at `size`."""
    with gzip.open(WORK / f"corpus-{size}" / "docs.jsonl.gz", "rt", encoding="utf-8") as f:
        return statistics.mean(len(json.loads(line)["text"]) for line in f)


def plan(
    results: dict[str, Any], tokens: float, chars_per_token: float, prices: tuple[float, float]
) -> str:
    """Workers, hours and cost for `tokens` on Dataflow from the per-core rate at the largest
    size where every row of the flow was measured: CPU seconds per character of the whole flow (read+write once, each stage's
    own share), `chars_per_token` characters a token, every vCPU running one SDK process at the
    measured rate (no autoscaling ramp, stragglers or shuffle service: a lower bound on hours)."""
    needed = {"read+write", *PLAN_ROWS}
    complete = [n for n in results["sizes"] if needed <= set(results["runs"].get(str(n), {}))]
    if not complete:
        return f"no plan: no size has every row of the flow measured ({', '.join(sorted(needed))})"
    size = max(complete)
    per_doc = results["runs"][str(size)]["read+write"]["cpu_seconds"] / size
    per_doc += sum(own(results, row, size, "cpu_seconds") / size for row in PLAN_ROWS)
    chars = mean_chars(size)
    core_hours = tokens * chars_per_token / chars * per_doc / 3600
    lines = [
        f"at {size:,} documents: {per_doc * 1000:.2f} CPU ms per document of {chars:,.0f} "
        f"characters; {tokens:.3g} tokens at {chars_per_token} characters a token = "
        f"{tokens * chars_per_token / chars / 1e6:,.0f} M such documents, {core_hours:,.0f} "
        "vCPU-hours",
        "",
        "| machine | workers | vCPUs | hours | cost (vCPU + memory) |",
        "|---|---|---|---|---|",
    ]
    for kind, (vcpus, gb) in MACHINES.items():
        for workers in (25, 100):
            hours = core_hours / (workers * vcpus)
            cost = hours * workers * (vcpus * prices[0] + gb * prices[1])
            lines.append(
                f"| {kind} | {workers} | {workers * vcpus:,} | {hours:,.2f} | ${cost:,.0f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[25_000, 50_000, 100_000])
    parser.add_argument("--rows", nargs="+", choices=[*BARE, *ROWS], default=[*BARE, *ROWS])
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--out", type=Path, default=RESULTS / "scaling.json")
    parser.add_argument("--plan-tokens", type=float, default=100e9)
    parser.add_argument("--chars-per-token", type=float, default=3.0)
    parser.add_argument("--vcpu-hour", type=float, default=0.056, help="USD per vCPU-hour")
    parser.add_argument("--gb-hour", type=float, default=0.003557, help="USD per GB-hour")
    parser.add_argument("--plan-only", action="store_true", help="tables from --out; no runs")
    parser.add_argument(
        "--bounded-messages",
        action="store_true",
        help="run through bounded_messages.py (rows named '<row>, bounded messages')",
    )
    args = parser.parse_args()
    if args.plan_only:
        results = json.loads(args.out.read_text())
        print(
            table(results)
            + "\n\n"
            + plan(results, args.plan_tokens, args.chars_per_token, (args.vcpu_hour, args.gb_hour))
        )
        return
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    results = results_file(args.out, "bench_scaling.py", args.sizes, rows=ROWS)
    started = time.time()
    for n in sorted(args.sizes):
        corpus_dir = corpus.ensure(n, args.seed, WORK / f"corpus-{n}", log)
        docs = corpus_dir / "docs.jsonl.gz"
        runs = results["runs"].setdefault(str(n), {})
        for name in args.rows:
            row = name + BOUNDED_SUFFIX if args.bounded_messages else name
            work = work_folder("scaling", n, row)
            run = run_bare_beam if name in BARE else run_row
            runs[row] = run(name, docs, work, args.bounded_messages)
            log(
                f"{n} {row}: wall {runs[row]['wall_seconds']:.1f} s, cpu "
                f"{runs[row]['cpu_seconds']:.1f} s, rss {runs[row]['maxrss_mb']:.0f} MB, "
                f"load {os.getloadavg()[0]:.1f}"
            )
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2) + "\n")
    results["machine"]["load_average_end"] = os.getloadavg()
    results["seconds"] = round(time.time() - started, 1)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    report = table(results)  # "-" where a size lacks a row
    args.out.with_suffix(".md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
