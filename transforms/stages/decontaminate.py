"""decontaminate: find benchmark examples in the training data; report, drop or mask them.

Three detectors, each on or off (`detectors`):
- `ngram`: any `ngram`-word window (13, as lm-eval's decontamination) of a benchmark example's
  text found in the training text, both folded alike (`iptkit.transforms.text.contam_text`: case,
  punctuation, whitespace). Text written without spaces (kana, Han, Thai) has no words to count:
  there a window is `ngram_spaceless` letters (iptkit's calibration on Japanese, not lm-eval's:
  13 letters are a stock phrase, not a sign of contamination).
- `substring`: the GPT-4 report's method (its Appendix C, used by Cheng et al. 2024 for Table 9):
  spaces and symbols stripped, letters and digits kept (case-folded here too); three random
  `substring_chars`-character substrings of each example (seeded from the spec seed, the
  benchmark and the example id; the whole example when shorter), searched in the training text
  processed the same way.
- `exact`: a whole normalised question equal to the whole text, one of its lines, or one
  synthesized pair's instruction or response.

The index over every benchmark example (`BenchIndex`: sorted 64-bit hash arrays, about 12 bytes
per n-gram) is built once, by one worker, into a file in the run directory (any Beam FileSystems
place, so remote workers read it too); the side input is only its path. Each worker process
loads it once (`apache_beam.utils.shared.Shared`), its arrays views into the file's bytes, so a
50 MB index costs 50 MB per process, not a decoded copy per thread as a pickled side input.

What is checked is labelled by kind of text, which is what Table 9 needs: a record's `text` under
its kind (`raw`, `augmented`: raw text and synthesized pairs rendered together, `instruction`,
`tuning`) and its synthesized `pairs` (instruction + response) under `pairs`. The evidence goes
on the record (`meta.contamination`, one entry per match, with the stage's name), so a later
decontaminate stage, the rejects and the report all see it; RUN/contamination/stages/STAGE.json
sums the stage up for the report, which combines every decontaminate stage of the run.
"""

from __future__ import annotations

import glob
import json
import os
import random
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.utils.shared import Shared
from pydantic import Field, ValidationInfo, model_validator

from iptkit.errors import IptkitError
from iptkit.files import atomic_write, read_bytes
from iptkit.hashing import digest, seeded_int
from iptkit.transforms.bundle_fold import FoldBundles, Merged
from iptkit.transforms.reading.benchmarks import BenchExample, BenchmarkSet, load_set, set_name
from iptkit.transforms.record import Record
from iptkit.transforms.stage import (
    KEPT,
    REJECTS,
    Drop,
    RecordStage,
    StageContext,
    metrics_namespace,
)
from iptkit.transforms.stage_config import BASE_DIR, StageConfig
from iptkit.transforms.text.contam_text import CHAR_BASE, Folded, RollingHash, fold
from iptkit.transforms.text.scripts import code_points

REASON = "contaminated"
META_KEY = "contamination"
PAIRS = "pairs"  # the `checked` label of synthesized pairs
EVIDENCE_PER_BENCHMARK = 20  # matches kept per benchmark in the summary, for the report
QUESTION_CHARS = 300  # of each example's question, kept in the index for the report
_SURROGATE = re.compile(r"[\ud800-\udfff]")
Detector = Literal["ngram", "substring", "exact"]
# Letters of a spaceless script per n-gram window: at 13 (one letter a word) shared stock phrases
# of Japanese technical prose flag clean documents; see benchmarks/RESULTS.md.
SPACELESS_NGRAM = 21


class DecontaminateConfig(StageConfig):
    """Options of the decontaminate stage."""

    benchmarks: list[BenchmarkSet] = Field(
        ...,
        min_length=1,
        description="benchmark sets: a JSONL/Parquet path or glob (one set per file, named "
        "by its stem, default field names), or {name, path, fields: {question, context, choices, answer, id}}, or "
        "{lm_eval_task: NAME} (offline, from the local datasets cache)",
    )
    detectors: list[Detector] = Field(
        ["ngram", "substring", "exact"],
        min_length=1,
        description="ngram: shared word n-grams; substring: GPT-4's 50-character substrings; "
        "exact: a whole normalised question",
    )
    ngram: int = Field(13, ge=3, description="words per n-gram, in text written with spaces")
    ngram_spaceless: int = Field(
        SPACELESS_NGRAM,
        ge=3,
        description="letters per n-gram in text written without spaces (kana, Han, Thai); in "
        "mixed text a word weighs ngram_spaceless/ngram letters. Calibrated on Japanese "
        "(benchmarks/bench_contamination_ja.py): 13 letters flag common phrases",
    )
    substring_chars: int = Field(
        50, ge=8, description="length of the substrings, in letters and digits"
    )
    substrings: int = Field(3, ge=1, description="random substrings per benchmark example")
    fields: list[Literal["context", "question", "choices", "answer"]] = Field(
        ["context", "question"],
        min_length=1,
        description="the parts of each example that are looked for (exact always uses the "
        "question)",
    )
    check: list[Literal["text", "pairs"]] = Field(
        ["text", "pairs"],
        min_length=1,
        description="what to check: the record's text (labelled by its kind) and/or its "
        "synthesized pairs",
    )
    action: Literal["report", "drop", "mask"] = Field(
        "report",
        description="report: flag only (evidence in meta); drop: reject the record; mask: "
        "replace each matched span with mask_with (a record left without letters or digits is dropped)",
    )
    mask_with: str = Field("", description="what a masked span becomes")
    context_chars: int = Field(
        80, ge=0, description="characters of text kept on each side of a match as evidence"
    )

    @model_validator(mode="before")
    @classmethod
    def _path_shorthand(cls, data: Any, info: ValidationInfo) -> Any:
        """A string is a path or glob: one benchmark set per matching file, named by its stem."""
        if not (isinstance(data, dict) and isinstance(data.get("benchmarks"), list)):
            return data
        base = (info.context or {}).get(BASE_DIR, os.getcwd())
        sets: list[Any] = []
        for item in data["benchmarks"]:
            if not isinstance(item, str):
                sets.append(item)
                continue
            files = sorted(glob.glob(os.path.join(base, os.path.expanduser(item))))
            sets += [{"path": os.path.abspath(f)} for f in files] or [{"path": item}]
        return {**data, "benchmarks": sets}

    @model_validator(mode="after")
    def _loadable(self) -> DecontaminateConfig:
        names = []
        for bench in self.benchmarks:
            try:
                load_set(bench)
            except IptkitError as exc:
                raise ValueError(str(exc)) from None
            names.append(set_name(bench))
        if len(set(names)) != len(names):
            raise ValueError(f"benchmark names must be unique (give `name`): {names}")
        return self


# ---------------------------------------------------------------------------------------------
# The index


def _sorted_pairs(keys: list[np.ndarray], examples: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, example numbers) sorted by hash, one row per distinct (hash, example)."""
    if not keys:
        return np.zeros(0, np.uint64), np.zeros(0, np.int32)
    hashes = np.concatenate(keys)
    owners = np.concatenate(
        [np.full(k.size, e, np.int32) for k, e in zip(keys, examples, strict=True)]
    )
    rows = np.unique(np.stack([hashes, owners.astype(np.uint64)], axis=1), axis=0)
    return rows[:, 0].copy(), rows[:, 1].astype(np.int32)


def substring_starts(example: BenchExample, seed: int, letters: int, chars: int, count: int):
    """Where the example's random substrings start (seeded, never from order): distinct starts,
    at most `count`; [0] when the example is no longer than one substring."""
    if letters <= chars:
        return [0]
    rng = random.Random(seeded_int(seed, str(example.benchmark), str(example.id)))
    positions = range(letters - chars + 1)
    return sorted(rng.sample(positions, min(count, len(positions))))


@dataclass(frozen=True)
class SubstringTable:
    """Substrings of any length, found in one pass over a text: sorted by the hash of their
    first `prefix` letters (the shortest substring's length), each candidate position then
    checked on the substring's full hash."""

    prefix: int
    keys: np.ndarray
    full: np.ndarray
    lengths: np.ndarray
    owners: np.ndarray

    def arrays(self) -> list[np.ndarray]:
        return [self.keys, self.full, self.lengths, self.owners]


def substring_table(needles: list[tuple[np.ndarray, int]]) -> SubstringTable | None:
    """The table of `(letters as uint64, example)` needles; None when there are none."""
    if not needles:
        return None
    prefix = min(chars.size for chars, _ in needles)
    rows = set()
    for chars, owner in needles:
        rolling = RollingHash(chars, CHAR_BASE)
        ends = np.array([prefix, chars.size])
        key, full = rolling.spans(np.zeros(2, dtype=np.int64), ends)
        rows.add((int(key), int(full), chars.size, owner))
    key, full, length, owner = zip(*sorted(rows), strict=True)
    return SubstringTable(
        prefix=prefix,
        keys=np.array(key, dtype=np.uint64),
        full=np.array(full, dtype=np.uint64),
        lengths=np.array(length, dtype=np.int32),
        owners=np.array(owner, dtype=np.int32),
    )


@dataclass(frozen=True)
class BenchIndex:
    """Every benchmark example's n-gram, substring and question hashes, sorted for lookup.

    Example `i` is `(names[i], ids[i])`; each `*_keys` array is sorted and its `*_owners`
    array gives the example of each key (a key shared by several examples appears once per
    example).
    """

    totals: dict[str, int]
    names: tuple[str, ...]
    ids: tuple[str, ...]
    questions: tuple[str, ...]
    ngram: tuple[int, int]  # (words, spaceless letters) per window
    ngram_keys: np.ndarray
    ngram_owners: np.ndarray
    substrings: SubstringTable | None
    exact_keys: np.ndarray
    exact_owners: np.ndarray

    def nbytes(self) -> int:
        arrays = [self.ngram_keys, self.ngram_owners, self.exact_keys, self.exact_owners]
        arrays += self.substrings.arrays() if self.substrings else []
        return sum(a.nbytes for a in arrays)


def build_index(examples: Iterable[BenchExample], cfg: DecontaminateConfig, seed: int):
    """The index of `examples` for the detectors `cfg` turns on."""
    examples = list(examples)
    totals: dict[str, int] = {}
    ngram_keys, ngram_of, exact_keys, exact_of = [], [], [], []
    needles: list[tuple[np.ndarray, int]] = []
    fields = tuple(cfg.fields)
    for number, example in enumerate(examples):
        totals[example.benchmark] = totals.get(example.benchmark, 0) + 1
        folded = fold(example.text(fields))
        if "ngram" in cfg.detectors:
            starts, ends = folded.ngram_spans(cfg.ngram, cfg.ngram_spaceless)
            if starts.size:
                ngram_keys.append(folded.word_hashes().spans(starts, ends))
                ngram_of.append(number)
        if "substring" in cfg.detectors and folded.chars.size:
            letters = folded.chars.size
            length = min(letters, cfg.substring_chars)
            chars = folded.chars.astype(np.uint64)
            for start in substring_starts(example, seed, letters, length, cfg.substrings):
                needles.append((chars[start : start + length], number))
        if "exact" in cfg.detectors:
            question = fold(example.question)
            if question.n_words:
                exact_keys.append(
                    question.word_hashes().spans(np.array([0]), np.array([question.n_words]))
                )
                exact_of.append(number)
    ngram_keys, ngram_owners = _sorted_pairs(ngram_keys, ngram_of)
    exact_keys, exact_owners = _sorted_pairs(exact_keys, exact_of)
    return BenchIndex(
        totals=totals,
        names=tuple(e.benchmark for e in examples),
        ids=tuple(e.id for e in examples),
        questions=tuple(e.question[:QUESTION_CHARS] for e in examples),
        ngram=(cfg.ngram, cfg.ngram_spaceless),
        ngram_keys=ngram_keys,
        ngram_owners=ngram_owners,
        substrings=substring_table(needles),
        exact_keys=exact_keys,
        exact_owners=exact_owners,
    )


def load_index(cfg: DecontaminateConfig, seed: int) -> BenchIndex:
    return build_index((e for b in cfg.benchmarks for e in load_set(b)), cfg, seed)


# ---------------------------------------------------------------------------------------------
# The index as a file: built once, loaded once per worker process

_ARRAYS = ("ngram_keys", "ngram_owners", "exact_keys", "exact_owners")
_SUBSTRING_ARRAYS = ("keys", "full", "lengths", "owners")
_ALIGN = 8


def index_bytes(index: BenchIndex) -> bytes:
    """The index as one file: a JSON header line (the example names, ids, questions and the
    arrays' dtypes and sizes), then each array's bytes, 8-byte aligned. Deterministic: the same
    index gives the same bytes."""
    arrays = [(name, getattr(index, name)) for name in _ARRAYS]
    if index.substrings:
        arrays += [(f"substrings.{n}", getattr(index.substrings, n)) for n in _SUBSTRING_ARRAYS]
    header = {
        "totals": index.totals,
        "names": index.names,
        "ids": index.ids,
        "questions": index.questions,
        "ngram": index.ngram,
        "substring_prefix": index.substrings.prefix if index.substrings else None,
        "arrays": [[name, array.dtype.str, int(array.size)] for name, array in arrays],
    }
    head = json.dumps(header, ensure_ascii=True).encode("ascii") + b"\n"
    parts = [head, b"\0" * (-len(head) % _ALIGN)]
    for _, array in arrays:
        data = np.ascontiguousarray(array).tobytes()
        parts += [data, b"\0" * (-len(data) % _ALIGN)]
    return b"".join(parts)


def index_from_bytes(data: bytes) -> BenchIndex:
    """The index `index_bytes` wrote. Its arrays are read-only views into `data`: loading
    costs the file's size once, not a copy per array."""
    end = data.index(b"\n") + 1
    header = json.loads(data[:end])
    offset = end + (-end % _ALIGN)
    arrays = {}
    for name, dtype, size in header["arrays"]:
        array = np.frombuffer(data, dtype=np.dtype(dtype), count=size, offset=offset)
        arrays[name] = array
        offset += array.nbytes + (-array.nbytes % _ALIGN)
    substrings = None
    if header["substring_prefix"] is not None:
        substrings = SubstringTable(
            prefix=header["substring_prefix"],
            **{n: arrays[f"substrings.{n}"] for n in _SUBSTRING_ARRAYS},
        )
    return BenchIndex(
        totals=header["totals"],
        names=tuple(header["names"]),
        ids=tuple(header["ids"]),
        questions=tuple(header["questions"]),
        ngram=tuple(header["ngram"]),
        substrings=substrings,
        **{name: arrays[name] for name in _ARRAYS},
    )


def write_index(path: str, cfg: DecontaminateConfig, seed: int) -> str:
    """Build the index and write it to `path` (any Beam FileSystems place); returns `path`."""
    atomic_write(path, index_bytes(load_index(cfg, seed)))
    return path


def read_index(path: str) -> BenchIndex:
    return index_from_bytes(read_bytes(path))


# ---------------------------------------------------------------------------------------------
# Detection on one text


@dataclass(frozen=True)
class Match:
    """A benchmark example found in a text: which detector, and the span in the text."""

    detector: str
    example: int
    start: int
    end: int


def candidates(keys: np.ndarray, queries: np.ndarray) -> list[tuple[int, int]]:
    """(query position, key position) for every query hash found in the sorted `keys`: one
    binary search per query, then a walk over equal keys (rare)."""
    if not keys.size or not queries.size:
        return []
    left = np.searchsorted(keys, queries)
    found = np.flatnonzero(keys[np.minimum(left, keys.size - 1)] == queries)
    pairs = []
    for q in found:
        k = int(left[q])
        while k < keys.size and keys[k] == queries[q]:
            pairs.append((int(q), k))
            k += 1
    return pairs


def lookup(keys: np.ndarray, owners: np.ndarray, queries: np.ndarray) -> list[tuple[int, int]]:
    """(query position, example) for every query hash found in the sorted `keys`."""
    return [(q, int(owners[k])) for q, k in candidates(keys, queries)]


def _merged(detector: str, hits: list[tuple[int, int, int]], span) -> list[Match]:
    """One match per run of overlapping windows `(position, example, width)` of one example;
    `span(position, offset)` is the original-text span of one unit of a window."""
    by_example: dict[int, list[tuple[int, int]]] = {}
    for position, example, width in hits:
        by_example.setdefault(example, []).append((position, position + width))
    matches = []
    for example, windows in by_example.items():
        windows.sort()
        first, end = windows[0]
        for position, stop in [*windows[1:], (None, None)]:
            if position is not None and position < end:
                end = max(end, stop)
                continue
            matches.append(Match(detector, example, span(first)[0], span(end - 1)[1]))
            if position is not None:
                first, end = position, stop
    return matches


def substring_hits(folded: Folded, table: SubstringTable) -> list[tuple[int, int, int]]:
    """(position, example, length) of every substring of `table` in the folded text."""
    rolling = folded.char_hashes()
    hits = []
    for position, k in candidates(table.keys, rolling.windows(table.prefix)):
        length = int(table.lengths[k])
        if position + length <= folded.chars.size:
            full = rolling.spans(np.array([position]), np.array([position + length]))[0]
            if full == table.full[k]:
                hits.append((position, int(table.owners[k]), length))
    return hits


def _line_ranges(text: str, folded: Folded) -> tuple[np.ndarray, np.ndarray]:
    """Word ranges [start, end) of the whole text and of each of its lines."""
    n = folded.n_words
    if not n:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    breaks = np.flatnonzero(code_points(text) == ord("\n"))
    line_of = np.searchsorted(breaks, folded.origin[folded.words[:-1]])
    bounds = np.flatnonzero(np.diff(line_of)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [n]))
    return np.concatenate(([0], starts)), np.concatenate(([n], ends))


def find_matches(text: str, index: BenchIndex, detectors: Iterable[str]) -> list[Match]:
    """Every benchmark example the detectors find in `text`, with its spans."""
    folded = fold(text)
    matches: list[Match] = []
    if "ngram" in detectors and index.ngram_keys.size:
        starts, ends = folded.ngram_spans(*index.ngram)
        hashes = folded.word_hashes().spans(starts, ends)
        hits = [
            (int(starts[i]), e, int(ends[i] - starts[i]))
            for i, e in lookup(index.ngram_keys, index.ngram_owners, hashes)
        ]
        matches += _merged("ngram", hits, lambda i: folded.word_span(i, 1))
    if "substring" in detectors and index.substrings:
        hits = substring_hits(folded, index.substrings)
        matches += _merged("substring", hits, lambda i: folded.char_span(i, i))
    if "exact" in detectors and index.exact_keys.size:
        starts, ends = _line_ranges(text, folded)
        keep = ends > starts
        starts, ends = starts[keep], ends[keep]
        hashes = folded.word_hashes().spans(starts, ends)
        seen = set()
        for unit, example in lookup(index.exact_keys, index.exact_owners, hashes):
            a, b = int(starts[unit]), int(ends[unit])
            if example not in seen:
                seen.add(example)
                matches.append(Match("exact", example, *folded.word_span(a, b - a)))
    return matches


# ---------------------------------------------------------------------------------------------
# A record: what is checked, the evidence, the action


def checked_texts(record: Record, check: Iterable[str]) -> list[tuple[str, str, str]]:
    """(label, field, text) for each part of the record the stage checks: the text under the
    record's kind, each synthesized pair (instruction, a line break, response) under `pairs`."""
    parts = []
    if "text" in check:
        parts.append((record.kind, "text", record.text))
    if "pairs" in check:
        for i, pair in enumerate(record.pairs):
            rendered = f"{pair.get('instruction', '')}\n{pair.get('response', '')}"
            parts.append((PAIRS, f"pairs[{i}]", rendered))
    return parts


def _printable(text: str) -> str:
    # Evidence is written as UTF-8 JSON: lone surrogates (undecodable input bytes) show as U+FFFD.
    return _SURROGATE.sub("\ufffd", text)


def evidence(
    match: Match, text: str, label: str, field: str, index: BenchIndex, stage: str, around: int
) -> dict[str, Any]:
    """A match as stored in `meta.contamination`: enough to show it without the index."""
    return {
        "stage": stage,
        "checked": label,
        "field": field,
        "benchmark": index.names[match.example],
        "example": index.ids[match.example],
        "detector": match.detector,
        "start": match.start,
        "end": match.end,
        "before": _printable(text[max(0, match.start - around) : match.start]),
        "match": _printable(text[match.start : match.end]),
        "after": _printable(text[match.end : match.end + around]),
    }


def mask_spans(text: str, spans: Iterable[tuple[int, int]], replacement: str) -> str:
    """`text` with each span replaced by `replacement`; overlapping or touching spans are
    merged first, so they become one replacement."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    pieces, cursor = [], 0
    for start, end in merged:
        pieces += [text[cursor:start], replacement]
        cursor = end
    return "".join(pieces) + text[cursor:]


def _masked_pair(pair: dict[str, str], spans: list[tuple[int, int]], replacement: str):
    """A pair with the spans of its rendering (instruction, line break, response) masked."""
    cut = len(pair.get("instruction", ""))
    ins = [(s, min(e, cut)) for s, e in spans if s < cut]
    resp = [(max(s - cut - 1, 0), e - cut - 1) for s, e in spans if e > cut + 1]
    return {
        **pair,
        "instruction": mask_spans(pair.get("instruction", ""), ins, replacement),
        "response": mask_spans(pair.get("response", ""), resp, replacement),
    }


def decide(record: Record, index: BenchIndex, cfg: DecontaminateConfig, stage: str):
    """The stage's decision for one record: unchanged, flagged, masked or a Drop."""
    found: list[dict[str, Any]] = []
    for label, field, text in checked_texts(record, cfg.check):
        for match in find_matches(text, index, cfg.detectors):
            found.append(evidence(match, text, label, field, index, stage, cfg.context_chars))
    if not found:
        return record
    found.sort(key=lambda f: (f["field"], f["start"], f["benchmark"], f["example"], f["detector"]))
    meta = {**record.meta, META_KEY: [*record.meta.get(META_KEY, []), *found]}
    flagged = replace(record, meta=meta)
    first = found[0]
    detail = (
        f"{len(found)} match(es); first: {first['benchmark']} example {first['example']} "
        f"({first['detector']}, {first['field']}): {first['match'][:80]!r}"
    )
    if cfg.action == "report":
        return flagged
    if cfg.action == "drop":
        return Drop(REASON, detail, flagged)
    spans: dict[str, list[tuple[int, int]]] = {}
    for f in found:
        spans.setdefault(f["field"], []).append((f["start"], f["end"]))
    text = mask_spans(record.text, spans.get("text", []), cfg.mask_with)
    pairs = [
        _masked_pair(p, spans[f"pairs[{i}]"], cfg.mask_with) if f"pairs[{i}]" in spans else p
        for i, p in enumerate(record.pairs)
    ]
    masked = replace(flagged, text=text, pairs=pairs)
    if not fold(text).chars.size:
        return Drop(REASON, f"nothing left after masking (no letter or digit); {detail}", masked)
    return masked


# ---------------------------------------------------------------------------------------------
# The stage summary (RUN/contamination/stages/STAGE.json): a combine with a bounded accumulator


def summary_event(record: Record | dict[str, Any], stage: str, check: list[str]):
    """What one record adds to the summary: labels checked, and this stage's matches."""
    row = record if isinstance(record, dict) else record.to_dict()
    labels = []
    if "text" in check:
        labels.append(row["kind"])
    if "pairs" in check and row.get("pairs"):
        labels.append(PAIRS)
    found = [f for f in (row.get("meta") or {}).get(META_KEY, []) if f.get("stage") == stage]
    return {"id": row["id"], "source": row["source"], "labels": labels, "found": found}


def _evidence_key(item: dict[str, Any]) -> tuple:
    return (
        item["benchmark"], item["example"], item["record"], item["field"], item["start"],
        item["end"], item["detector"],
    )  # fmt: skip


class SummaryFn(beam.CombineFn):
    """Records checked and flagged per label, contaminated example ids per (benchmark, label,
    detector), and the first matches per benchmark; independent of order and bundles."""

    def create_accumulator(self) -> dict[str, Any]:
        return {"records": {}, "contaminated": {}, "evidence": {}}

    def add_input(self, acc: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        flagged = {f["checked"] for f in event["found"]}
        for label in event["labels"]:
            counts = acc["records"].setdefault(label, {"checked": 0, "flagged": 0})
            counts["checked"] += 1
            counts["flagged"] += label in flagged
        for f in event["found"]:
            ids = (
                acc["contaminated"]
                .setdefault(f["benchmark"], {})
                .setdefault(f["checked"], {})
                .setdefault(f["detector"], set())
            )
            ids.add(f["example"])
            item = {**f, "record": _printable(event["id"]), "source": _printable(event["source"])}
            item.pop("stage", None)
            self._keep(acc["evidence"].setdefault(f["benchmark"], []), [item])
        return acc

    @staticmethod
    def _keep(kept: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
        kept += new
        kept.sort(key=_evidence_key)
        del kept[EVIDENCE_PER_BENCHMARK:]

    def merge_accumulators(self, accumulators: Iterable[dict[str, Any]]) -> dict[str, Any]:
        merged = self.create_accumulator()
        for acc in accumulators:
            for label, counts in acc["records"].items():
                into = merged["records"].setdefault(label, {"checked": 0, "flagged": 0})
                into["checked"] += counts["checked"]
                into["flagged"] += counts["flagged"]
            for bench, labels in acc["contaminated"].items():
                for label, detectors in labels.items():
                    for detector, ids in detectors.items():
                        merged["contaminated"].setdefault(bench, {}).setdefault(
                            label, {}
                        ).setdefault(detector, set()).update(ids)
            for bench, items in acc["evidence"].items():
                self._keep(merged["evidence"].setdefault(bench, []), items)
        return merged

    def extract_output(self, acc: dict[str, Any]) -> dict[str, Any]:
        return acc


def stage_summary(
    acc: dict[str, Any], index: BenchIndex, cfg: DecontaminateConfig, stage: str
) -> dict[str, Any]:
    """The stage's summary file, from the combined accumulator and the index."""
    number = {(n, i): k for k, (n, i) in enumerate(zip(index.names, index.ids, strict=True))}
    evidence_rows = []
    for bench in sorted(acc["evidence"]):
        for item in acc["evidence"][bench]:
            question = index.questions[number[(item["benchmark"], item["example"])]]
            evidence_rows.append({**item, "question": question})
    return {
        "stage": stage,
        "action": cfg.action,
        "detectors": list(cfg.detectors),
        "params": {
            "ngram": cfg.ngram,
            "ngram_spaceless": cfg.ngram_spaceless,
            "substring_chars": cfg.substring_chars,
            "substrings": cfg.substrings,
            "fields": list(cfg.fields),
            "check": list(cfg.check),
        },
        "benchmarks": {
            set_name(b): {
                "examples": index.totals.get(set_name(b), 0),
                "source": b.lm_eval_task and f"lm-eval:{b.lm_eval_task}" or b.path,
            }
            for b in cfg.benchmarks
        },
        "records": {k: acc["records"][k] for k in sorted(acc["records"])},
        "contaminated": {
            bench: {
                label: {d: sorted(ids) for d, ids in sorted(detectors.items())}
                for label, detectors in sorted(labels.items())
            }
            for bench, labels in sorted(acc["contaminated"].items())
        },
        "evidence": evidence_rows,
    }


# ---------------------------------------------------------------------------------------------
# Beam


class Decontaminate(
    RecordStage,
    stage="decontaminate",
    config=DecontaminateConfig,
    summary="benchmark contamination (13-gram, 50-char substring, exact question): report, drop "
    "or mask; RUN/contamination/",
):
    """The index built once into a file and loaded once per process, the per-record decision, and the summary written
    to RUN/contamination/stages/STAGE.json (combined into RUN/contamination/report.*)."""

    def __init__(
        self, config: DecontaminateConfig | None = None, context: StageContext | None = None
    ):
        super().__init__(config, context)
        self._index: BenchIndex | None = None
        self._shared = Shared()  # one index per worker process, whatever the DoFn copies
        self._counters: dict[str, Any] = {}

    def files(self) -> dict[str, str]:
        return {"contamination": self.context.run.contamination_summary(self.name)}

    def index_path(self) -> str:
        """Where the index file goes: RUN/STAGE/bench-index.bin, named by a hash of what it
        is built from; outside a run (a library call), the system's temporary folder."""
        what = json.dumps([self.config.model_dump(mode="json"), self.seed], sort_keys=True)
        name = f"bench-index-{digest(what).hex()}.bin"
        if self.context.run.root:
            return self.context.file(name)
        return os.path.join(tempfile.gettempdir(), f"iptkit-{self.name}-{name}")

    def build_side_inputs(self, records: Any) -> dict[str, Any]:
        """The index is built once, by one worker, into a file; the side input is only its
        path (a pickled index would be decoded per worker thread and bundle)."""
        cfg, seed, path = self.config, self.seed, self.index_path()
        return {
            "index_path": beam.pvalue.AsSingleton(
                records.pipeline
                | "Index seed" >> beam.Create([path])
                | "Build index" >> beam.Map(write_index, cfg, seed)
            )
        }

    def bind(self, index_path: str) -> None:  # type: ignore[override]
        if self._index is None:
            self._index = self._shared.acquire(lambda: read_index(index_path), tag=index_path)

    def apply(self, record: Record) -> Record | Drop:
        result = decide(record, self._index, self.config, self.name)
        changed = result.record if isinstance(result, Drop) else result
        if changed is not None and changed is not record:
            for bench in {
                f["benchmark"] for f in changed.meta[META_KEY] if f["stage"] == self.name
            }:
                if bench not in self._counters:
                    self._counters[bench] = Metrics.counter(
                        metrics_namespace(self.name), f"contaminated.{bench}"
                    )
                self._counters[bench].inc()
        return result

    def run(self, records):
        cfg, name = self.config, self.name
        side = self.build_side_inputs(records)
        result = super().run(records, **side)
        check = list(cfg.check)
        # Each side folded per bundle before the Flatten (`FoldBundles`): the in-memory runner
        # holds a Flatten's input whole, one event per record.
        events = (
            result[KEPT]
            | "Kept events" >> beam.Map(summary_event, name, check)
            | "Fold kept" >> FoldBundles(SummaryFn()),
            result[REJECTS]
            | "Reject events" >> beam.Map(lambda r: summary_event(r.record, name, check))
            | "Fold rejects" >> FoldBundles(SummaryFn()),
        ) | "Events" >> beam.Flatten()
        path = self.files()["contamination"]

        def write(acc: dict[str, Any], index_path: str) -> None:
            summary = stage_summary(acc, read_index(index_path), cfg, name)
            text = json.dumps(summary, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
            atomic_write(path, text.encode("utf-8"))

        (
            events
            | "Summary" >> beam.CombineGlobally(Merged(SummaryFn()))
            | "Write summary" >> beam.Map(write, side["index_path"])
        )
        return result
