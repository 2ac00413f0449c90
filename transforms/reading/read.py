"""The read step: match each source's globs, then parse files on workers into records and rejects.

Files are matched once on the driver (so a path or glob that matches no file, or names a folder,
fails before the pipeline starts, naming the source and the path) and then spread over workers
with a Reshuffle. Paths go through Beam's FileSystems, so `gs://` and `s3://` globs work where
those extras are installed.

Parallel from the first byte: a file larger than `--read_range_bytes` (64 MiB by default) whose
format allows it is cut into spans (`spans.py`): an uncompressed JSON Lines file into byte
ranges, whose first line numbers come from a parallel pass counting each range's newlines and a
prefix sum per file; a Parquet file into runs of row groups. Every part (a span, or a whole file
where it cannot be cut: .gz, .zst, text paragraphs) is spread over workers and parsed on its
own, and the parsed records are spread again, so neither one huge file nor one worker's parse
decides how the next stage's work is shared. Ids and line numbers are those of a whole-file
read, whatever the range size.

Ids are unique when the read step ends. Ids from file positions (`SOURCE:FILE:N`) are unique by
construction (source names are unique and hold no `:`, and two files of one source may not give
the same FILE, which the spec check refuses). When a source takes ids from a field, every record
is keyed by its id (a GroupByKey, so it holds across workers): of the records sharing an id the
first is kept, first by the sources' order in the spec, then file path, then line or row, never
by arrival order, and each other is rejected as `duplicate_id`, naming where the kept one is. A
group is read twice (the first to find the record kept, the second to emit), so the memory it
takes is one record, however many share the id.
"""

from __future__ import annotations

import os
import pickle
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from iptkit.memory import fix_mmap_threshold
from iptkit.transforms.reading.sources import (
    READ_STAGE,
    SourceConfig,
    SourceFile,
    file_span_unit,
    parse_located,
)
from iptkit.transforms.reading.spans import (
    DEFAULT_RANGE_BYTES,
    WHOLE,
    Span,
    byte_ranges,
    count_newlines,
    number_ranges,
    row_group_spans,
)
from iptkit.transforms.record import Record, Reject, escaped_text
from iptkit.transforms.stage import KEPT, REJECTS, metrics_namespace

_GLOB_CHARS = re.compile(r"[*?\[]")
DUPLICATE_ID = "duplicate_id"
RANGES = "ranges"
PARTS = "parts"  # the counter of parts parsed: whole files and spans
# A part to parse: (source, path, rel, span).
Part = tuple[str, str, str, Span]


class ReadOptions(PipelineOptions):
    """The read step's Beam option: how large the parts of a big file are. It says how the work
    is shared, never what is read (ids and records are the same at any size), so, like every
    pipeline option, it is outside the spec hash."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--read_range_bytes",
            type=int,
            default=DEFAULT_RANGE_BYTES,
            help="a file larger than this many bytes (uncompressed JSON Lines, Parquet) is "
            "read in parts of about this size, by several workers (default 64 MiB)",
        )


def resolve_pattern(pattern: str, base_dir: str) -> str:
    """A source path as matched: relative local paths are taken from the spec's folder."""
    if "://" in pattern or os.path.isabs(pattern):
        return pattern
    return os.path.normpath(os.path.join(base_dir, pattern))


def glob_base(pattern: str) -> str:
    """The fixed folder prefix of a glob, from which short file names in ids are taken."""
    match = _GLOB_CHARS.search(pattern)
    fixed = pattern if match is None else pattern[: match.start()]
    return fixed.rsplit("/", 1)[0] + "/" if "/" in fixed else ""


def match_files(pattern: str) -> list[str]:
    """Paths matched by one glob, sorted so the file list never depends on listing order."""
    results = FileSystems.match([pattern])[0].metadata_list
    return sorted(m.path for m in results)


def match_pattern(pattern: str) -> list[str] | str:
    """The files one path or glob of a source matches, or why it cannot be read: a local
    folder (a glob names its files) or nothing matched."""
    if "://" not in pattern and os.path.isdir(pattern):
        glob = f"{pattern.rstrip('/')}/*.jsonl"
        return f"{pattern} is a folder, not a file: name its files with a glob, e.g. {glob}"
    try:
        found = match_files(pattern)
    except (OSError, ValueError) as exc:  # BeamIOError (no credentials, no bucket), no scheme
        return f"cannot list {pattern}: {type(exc).__name__}: {exc}"
    found = [p for p in found if "://" in p or not os.path.isdir(p)]
    return found or f"no file matches {pattern}"


def match_source(
    cfg: SourceConfig, patterns: list[str]
) -> tuple[list[SourceFile], list[tuple[int, str]]]:
    """The files of one source (a file matched by two of its globs is read once), and the
    problems: `(index of the path, message)` for a path that matches no file or is a folder,
    `(-1, message)` for two files that would give the same name in ids."""
    seen: dict[str, SourceFile] = {}
    problems: list[tuple[int, str]] = []
    for index, pattern in enumerate(patterns):
        found = match_pattern(pattern)
        if isinstance(found, str):
            problems.append((index, found))
            continue
        base = glob_base(pattern)
        for path in found:
            rel = path[len(base) :] if base and path.startswith(base) else os.path.basename(path)
            seen.setdefault(path, SourceFile(cfg.name, path, escaped_text(rel)))
    files = sorted(seen.values(), key=lambda f: f.path)
    by_rel: dict[str, str] = {}
    for f in files:
        if f.rel in by_rel:
            problems.append(
                (
                    -1,
                    f"{by_rel[f.rel]} and {f.path} would both be '{f.rel}' in record ids "
                    f"({cfg.name}:{f.rel}:N); give them distinct names, or match both with one "
                    "glob from their common folder",
                )
            )
        else:
            by_rel[f.rel] = f.path
    return files, problems


def source_files(cfg: SourceConfig, patterns: list[str]) -> list[SourceFile]:
    """The files of one source; a file matched by two of its globs is read once."""
    return match_source(cfg, patterns)[0]


def _open(path: str):
    # Decompression is ours (sources.open_decompressed), so Beam is told the bytes are plain.
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


class _PlanFn(beam.DoFn):
    """Cuts one file into the parts it is read in: a whole-file part for a small file or one
    that cannot be cut; row-group runs of a large Parquet file (main output); the byte ranges of
    a large JSON Lines file (output `ranges`, keyed by path, to be counted and numbered). A file
    that cannot be opened or whose footer cannot be read is one whole part, so the parse step
    reports it as it reports any unreadable file."""

    def __init__(self, sources: dict[str, SourceConfig], range_bytes: int):
        self._sources = sources
        self._range_bytes = range_bytes
        self._us = Metrics.counter(metrics_namespace(READ_STAGE), "process_us")

    def process(self, element: tuple[str, str, str]) -> Iterator[Any]:
        source, path, rel = element
        start = time.perf_counter()
        unit = file_span_unit(self._sources[source], path)
        spans: list[Span] = []
        ranges: list[tuple[int, int]] = []
        try:
            with _open(path) as raw:
                if unit == "row_groups":
                    spans = self._row_groups(raw)
                elif unit == "bytes":
                    size = raw.seek(0, os.SEEK_END)
                    if size > self._range_bytes:
                        ranges = byte_ranges(size, self._range_bytes)
        except Exception:  # noqa: BLE001 (read it whole: the parse step says what is wrong)
            spans, ranges = [], []
        self._us.inc(int((time.perf_counter() - start) * 1e6))
        for begin, end in ranges:
            yield beam.pvalue.TaggedOutput(RANGES, (path, (source, rel, begin, end)))
        if ranges:
            return
        for span in spans if len(spans) > 1 else [WHOLE]:
            yield source, path, rel, span

    def _row_groups(self, raw: Any) -> list[Span]:
        """Runs of row groups of about `range_bytes` (none for a file smaller than that)."""
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(raw).metadata
        groups = [
            (meta.row_group(g).total_byte_size, meta.row_group(g).num_rows)
            for g in range(meta.num_row_groups)
        ]
        if sum(size for size, _ in groups) <= self._range_bytes:
            return []
        return row_group_spans(groups, self._range_bytes)


class _CountFn(beam.DoFn):
    """The newlines in one byte range: the parallel first pass that numbers a range's lines.
    A range that cannot be read counts as None, which leaves its file to be read whole."""

    def __init__(self):
        self._us = Metrics.counter(metrics_namespace(READ_STAGE), "process_us")

    def process(self, element: tuple[str, tuple[str, str, int, int]]) -> Iterator[Any]:
        path, (source, rel, begin, end) = element
        start = time.perf_counter()
        try:
            with _open(path) as raw:
                count: int | None = count_newlines(raw, begin, end)
        except OSError:
            count = None
        self._us.inc(int((time.perf_counter() - start) * 1e6))
        yield path, (source, rel, begin, end, count)


def number_file(element: tuple[str, Iterable[tuple[str, str, int, int, Any]]]) -> Iterator[Any]:
    """One file's parts from its counted ranges: each range with the number of the line holding
    its first byte (a prefix sum of the newlines before it); the whole file when a range could
    not be counted, so the parse step reports why."""
    path, ranges = element
    ranges = list(ranges)
    source, rel = ranges[0][0], ranges[0][1]
    if any(r[4] is None for r in ranges):
        yield source, path, rel, WHOLE
        return
    for span in number_ranges([(r[2], r[3], r[4]) for r in ranges]):
        yield source, path, rel, span


class _ReadPartFn(beam.DoFn):
    """Parses one part: a whole file or a span of one. With `keyed`, records leave as `(id as
    UTF-8 bytes, payload)` for the duplicate check (see `_keyed_record`)."""

    def __init__(self, sources: dict[str, SourceConfig], keyed: bool):
        self._sources = sources
        self._order = {name: i for i, name in enumerate(sources)}
        self._keyed = keyed
        ns = metrics_namespace(READ_STAGE)
        self._out = Metrics.counter(ns, "out")
        self._in = Metrics.counter(ns, "in")
        self._us = Metrics.counter(ns, "process_us")
        self._parts = Metrics.counter(ns, PARTS)
        self._ns = ns

    def setup(self) -> None:
        fix_mmap_threshold()  # the first step of every job, on every worker that reads

    def _reject(self, item: Reject) -> Iterator[Any]:
        Metrics.counter(self._ns, f"dropped.{item.reason}").inc()
        return beam.pvalue.TaggedOutput(REJECTS, item)

    def process(self, element: Part):
        source, path, rel, span = element
        cfg = self._sources[source]
        self._parts.inc()
        start = time.perf_counter()
        try:
            raw = _open(path)
        except OSError as exc:  # gone or unreadable since the spec was checked
            self._in.inc()
            yield self._reject(
                Reject(
                    id=f"{source}:{rel}",
                    source=source,
                    stage=READ_STAGE,
                    reason="unreadable_file",
                    detail=escaped_text(f"{path}: cannot open: {type(exc).__name__}: {exc}"),
                )
            )
            return
        with raw:
            for number, default_id, where, item in parse_located(
                cfg, SourceFile(source, path, rel), raw, span
            ):
                self._us.inc(int((time.perf_counter() - start) * 1e6))
                self._in.inc()
                if isinstance(item, Reject):
                    yield self._reject(item)
                elif self._keyed:
                    yield _keyed_record(self._order[source], path, number, default_id, where, item)
                else:
                    self._out.inc()
                    yield item
                start = time.perf_counter()


# What the duplicate-id check moves per record: its rank (source order, file path, number in
# the file), default id, place, and fields.
Entry = tuple[list[Any], str, str, dict[str, Any]]


def _keyed_record(
    order: int, path: str, number: int, default_id: str, where: str, record: Record
) -> tuple[bytes, bytes]:
    """`(id as UTF-8 bytes, payload)`: the payload is an `Entry` pickled, a tuple of plain
    values (never our classes), internal to this shuffle and never written: four times cheaper
    to encode and decode than the ASCII JSON it replaced (a tenth of a run that only reads and
    writes), lone surrogates included. No output byte depends on it."""
    entry: Entry = ([order, path, number], default_id, where, record.to_dict())
    key = record.id.encode("utf-8", "surrogatepass")
    return key, pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)


class _FirstOfIdFn(beam.DoFn):
    """Of the records sharing an id, keeps the first (source order, file path, line or row)
    and rejects the others as `duplicate_id`."""

    def __init__(self):
        ns = metrics_namespace(READ_STAGE)
        self._out = Metrics.counter(ns, "out")
        self._dropped = Metrics.counter(ns, f"dropped.{DUPLICATE_ID}")

    def process(self, element: tuple[bytes, Iterable[bytes]]) -> Iterator[Any]:
        _, payloads = element
        first: Entry | None = None
        size = 0
        for payload in payloads:
            entry: Entry = pickle.loads(payload)
            size += 1
            if first is None or entry[0] < first[0]:
                first = entry
        assert first is not None
        if size == 1:  # the common case: an id of its own, decoded once
            self._out.inc()
            yield Record(**first[3])
            return
        for payload in payloads:
            rank, default_id, where, fields = pickle.loads(payload)
            record = Record(**fields)
            if rank == first[0]:
                self._out.inc()
                yield record
                continue
            self._dropped.inc()
            detail = (
                f"{where}: id {record.id!r} is also the id of {first[2]} "
                f"(source {first[3]['source']}), which is kept: the first by source order "
                "in the spec, file path, then line or row. Ids are compared as text: the integer "
                '42 and the string "42" are one id'
            )
            yield beam.pvalue.TaggedOutput(
                REJECTS,
                Reject(
                    id=default_id,
                    source=record.source,
                    stage=READ_STAGE,
                    reason=DUPLICATE_ID,
                    detail=escaped_text(detail),
                    record=fields,
                ),
            )


class ReadSources(beam.PTransform):
    """Reads matched files of every source; returns `{"kept": records, "rejects": rejects}`."""

    def __init__(self, sources: list[SourceConfig], files: list[SourceFile]):
        super().__init__()
        self._sources = {s.name: s for s in sources}
        self._files = [(f.source, f.path, f.rel) for f in files]

    def expand(self, pbegin):
        range_bytes = pbegin.pipeline.options.view_as(ReadOptions).read_range_bytes
        if range_bytes < 1:
            raise ValueError(f"--read_range_bytes is {range_bytes}: it must be at least 1")
        keyed = any(s.id_field for s in self._sources.values())
        planned = (
            pbegin
            | "Files" >> beam.Create(self._files)
            | "Spread" >> beam.Reshuffle()
            | "Plan"
            >> beam.ParDo(_PlanFn(self._sources, range_bytes)).with_outputs(RANGES, main="parts")
        )
        numbered = (
            planned[RANGES]
            | "Spread ranges" >> beam.Reshuffle()
            | "Count lines" >> beam.ParDo(_CountFn())
            | "Group ranges" >> beam.GroupByKey()
            | "Number lines" >> beam.FlatMap(number_file)
        )
        outputs = (
            (planned["parts"], numbered)
            | "Parts" >> beam.Flatten()
            | "Spread parts" >> beam.Reshuffle()
            | "Parse"
            >> beam.ParDo(_ReadPartFn(self._sources, keyed)).with_outputs(REJECTS, main=KEPT)
        )
        if not keyed:
            spread = outputs[KEPT] | "Spread records" >> beam.Reshuffle()
            return {KEPT: spread, REJECTS: outputs[REJECTS]}
        checked = (
            outputs[KEPT]
            | "Group ids" >> beam.GroupByKey()
            | "First of id" >> beam.ParDo(_FirstOfIdFn()).with_outputs(REJECTS, main=KEPT)
        )
        rejects = (outputs[REJECTS], checked[REJECTS]) | "All rejects" >> beam.Flatten()
        return {KEPT: checked[KEPT], REJECTS: rejects}
