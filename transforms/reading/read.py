"""The read step: match each source's globs, then parse files on workers into records and rejects.

Files are matched once on the driver (so a glob that matches nothing fails before the pipeline
starts, naming the source) and then spread over workers with a Reshuffle; a worker parses a
whole file, which keeps line numbers exact. Paths go through Beam's FileSystems, so `gs://` and
`s3://` globs work where those extras are installed.
"""

from __future__ import annotations

import os
import re
import time

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from iptkit.transforms.reading.sources import READ_STAGE, SourceConfig, SourceFile, parse_file
from iptkit.transforms.record import Reject
from iptkit.transforms.stage import KEPT, REJECTS, metrics_namespace

_GLOB_CHARS = re.compile(r"[*?\[]")


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


def source_files(cfg: SourceConfig, patterns: list[str]) -> list[SourceFile]:
    """The files of one source; a file matched by two of its globs is read once."""
    seen: dict[str, SourceFile] = {}
    for pattern in patterns:
        base = glob_base(pattern)
        for path in match_files(pattern):
            rel = path[len(base) :] if base and path.startswith(base) else os.path.basename(path)
            seen.setdefault(path, SourceFile(cfg.name, path, rel))
    return sorted(seen.values(), key=lambda f: f.path)


class _ReadFileFn(beam.DoFn):
    def __init__(self, sources: dict[str, SourceConfig]):
        self._sources = sources
        ns = metrics_namespace(READ_STAGE)
        self._out = Metrics.counter(ns, "out")
        self._in = Metrics.counter(ns, "in")
        self._us = Metrics.counter(ns, "process_us")
        self._ns = ns

    def process(self, element: tuple[str, str, str]):
        source, path, rel = element
        cfg = self._sources[source]
        compression = CompressionTypes.UNCOMPRESSED  # decompression is ours: see open_decompressed
        start = time.perf_counter()
        with FileSystems.open(path, compression_type=compression) as raw:
            for item in parse_file(cfg, SourceFile(source, path, rel), raw):
                self._us.inc(int((time.perf_counter() - start) * 1e6))
                self._in.inc()
                if isinstance(item, Reject):
                    Metrics.counter(self._ns, f"dropped.{item.reason}").inc()
                    yield beam.pvalue.TaggedOutput(REJECTS, item)
                else:
                    self._out.inc()
                    yield item
                start = time.perf_counter()


class ReadSources(beam.PTransform):
    """Reads matched files of every source; returns `{"kept": records, "rejects": rejects}`."""

    def __init__(self, sources: list[SourceConfig], files: list[SourceFile]):
        super().__init__()
        self._sources = {s.name: s for s in sources}
        self._files = [(f.source, f.path, f.rel) for f in files]

    def expand(self, pbegin):
        outputs = (
            pbegin
            | "Files" >> beam.Create(self._files)
            | "Spread" >> beam.Reshuffle()
            | "Parse" >> beam.ParDo(_ReadFileFn(self._sources)).with_outputs(REJECTS, main=KEPT)
        )
        return {KEPT: outputs[KEPT], REJECTS: outputs[REJECTS]}
