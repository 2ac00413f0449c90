"""Spans: the parts one large input file is read in, by several workers at once.

A file whose format allows it is cut into spans so that one huge file is many workers' work:

- uncompressed JSON Lines (`jsonl`, and `conversations`/`preference` rows in JSONL) by byte
  ranges, with the splittable-text rule of Hadoop's and Beam's text sources: a range owns the
  lines that *start* inside it, so it begins at the first line start at or after its first byte
  and reads through the line that crosses its end. Every line is read exactly once.
- Parquet by runs of whole row groups (the footer gives each group's size and rows).

Compressed files (.gz, .zst) cannot be entered mid-stream, and `text` paragraphs are split on
blank lines that a byte boundary cannot see, so both are read whole, as before.

Ids and line numbers are what a whole-file read gives (`SOURCE:FILE:N`): a range's first line
number comes from counting the newlines of every range before it (a cheap parallel pass over
bytes, then a prefix sum), a row group's first row from the footer's row counts.

Pure functions over seekable binary streams, so the rule is tested without Beam;
`iptkit.transforms.reading.read` runs them on workers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Literal

# A file larger than this is read in parts of about this size; `--read_range_bytes` sets it.
DEFAULT_RANGE_BYTES = 64 * 1024 * 1024
_CHUNK = 1024 * 1024
_COMPRESSED = (".gz", ".zst", ".zstd")

SpanUnit = Literal["bytes", "row_groups"]


@dataclass(frozen=True)
class Span:
    """A part of one file, read on its own: bytes [begin, end) of an uncompressed JSON Lines
    file, `first` being the number of the line that holds byte `begin`; or row groups
    [begin, end) of a Parquet file, `first` being the number of its first row. `end` None reads
    to the end of the file; `Span()` is the whole file."""

    begin: int = 0
    end: int | None = None
    first: int = 1

    @property
    def whole(self) -> bool:
        return self.begin == 0 and self.end is None


WHOLE = Span()


def span_unit(is_parquet: bool, is_text: bool, path: str) -> SpanUnit | None:
    """How a file can be cut: Parquet by row groups, uncompressed JSON Lines by bytes; None for a
    file read whole (compressed, or paragraphs of a text file)."""
    if is_parquet:
        return "row_groups"
    if is_text or path.endswith(_COMPRESSED):
        return None
    return "bytes"


def byte_ranges(size: int, range_bytes: int) -> list[tuple[int, int]]:
    """[begin, end) ranges of `range_bytes` covering `size` bytes (the last one shorter)."""
    return [(begin, min(begin + range_bytes, size)) for begin in range(0, size, range_bytes)]


def count_newlines(raw: BinaryIO, begin: int, end: int) -> int:
    """The newline bytes in [begin, end) of a seekable stream, read in 1 MiB chunks."""
    raw.seek(begin)
    count, left = 0, end - begin
    while left > 0:
        chunk = raw.read(min(_CHUNK, left))
        if not chunk:
            break
        count += chunk.count(b"\n")
        left -= len(chunk)
    return count


def number_ranges(counted: Sequence[tuple[int, int, int]]) -> list[Span]:
    """Spans from `(begin, end, newlines in the range)` of one file's ranges (any order): the line
    holding a range's first byte is 1 plus the newlines of every range before it."""
    spans, newlines = [], 0
    for begin, end, count in sorted(counted):
        spans.append(Span(begin, end, 1 + newlines))
        newlines += count
    return spans


def range_lines(raw: BinaryIO, span: Span) -> Iterator[tuple[int, bytes]]:
    """`(line number, line)` for the lines that start in `span` (a byte range): from the first
    line start at or after `begin` through the line that crosses `end`, so that adjacent ranges
    read every line of the file exactly once."""
    number, pos = span.first, span.begin
    raw.seek(max(span.begin - 1, 0))
    if span.begin > 0 and raw.read(1) != b"\n":
        pos += len(raw.readline())  # the rest of a line that started in the range before
        number += 1
    end = span.end if span.end is not None else float("inf")
    while pos < end:
        line = raw.readline()
        if not line:
            return
        yield number, line
        pos += len(line)
        number += 1


def row_group_spans(groups: Sequence[tuple[int, int]], range_bytes: int) -> list[Span]:
    """Spans of consecutive row groups from `(bytes, rows)` of each group in file order: a span
    takes groups until it holds `range_bytes` (at least one group), and its first row is the
    rows of the groups before it plus one."""
    spans: list[Span] = []
    begin, size, row, first = 0, 0, 0, 1
    for index, (group_bytes, rows) in enumerate(groups):
        size += group_bytes
        row += rows
        if size >= range_bytes or index == len(groups) - 1:
            spans.append(Span(begin, index + 1, first))
            begin, size, first = index + 1, 0, row + 1
    return spans
