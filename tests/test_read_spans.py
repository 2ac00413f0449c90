"""Large files read in parts (transforms/reading/spans.py): every line or row read exactly once,
with the number a whole-file read gives it, whatever the part size; and the read step on the
DirectRunner gives the same records and rejects with parts as whole."""

import io
import json
import random
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.metrics.metric import MetricsFilter

from iptkit.transforms.reading.read import PARTS, ReadOptions, ReadSources
from iptkit.transforms.reading.sources import SourceConfig, SourceFile, parse_located
from iptkit.transforms.reading.spans import (
    WHOLE,
    Span,
    byte_ranges,
    count_newlines,
    number_ranges,
    range_lines,
    row_group_spans,
    span_unit,
)
from iptkit.transforms.stage import KEPT, REJECTS


def spans_of(data: bytes, range_bytes: int) -> list[Span]:
    counted = [
        (b, e, count_newlines(io.BytesIO(data), b, e))
        for b, e in byte_ranges(len(data), range_bytes)
    ]
    random.Random(range_bytes).shuffle(counted)  # the numbering never depends on arrival order
    return number_ranges(counted)


def lines_by_ranges(data: bytes, range_bytes: int) -> list[tuple[int, bytes]]:
    return [item for s in spans_of(data, range_bytes) for item in range_lines(io.BytesIO(data), s)]


AWKWARD = [
    b"",  # empty file
    b"one line, no newline",
    b"\n\n\n",  # blank lines only
    b'\xef\xbb\xbf{"a": 1}\r\n{"b": 2}\r\n\r\n{"c": 3}',  # BOM, CRLF, a blank line
    b"short\n" + b"x" * 50 + b"\nlast\n",  # a line longer than several ranges
    b"\n".join(f"line {i}".encode() * (i % 5) for i in range(40)) + b"\n",
    b"\xff\xfe bytes that are not UTF-8\n\xe3\x81\x82\n",
]


@pytest.mark.parametrize("data", AWKWARD)
@pytest.mark.parametrize("range_bytes", [1, 2, 3, 7, 10, 64, 10_000])
def test_byte_ranges_read_every_line_once_with_its_whole_file_number(data, range_bytes):
    assert lines_by_ranges(data, range_bytes) == list(enumerate(io.BytesIO(data), 1))


def test_a_range_starting_on_a_line_start_owns_that_line():
    data = b"aaaa\nbbbb\ncccc\n"  # ranges of 5 bytes start exactly on each line
    assert [list(range_lines(io.BytesIO(data), s)) for s in spans_of(data, 5)] == [
        [(1, b"aaaa\n")],
        [(2, b"bbbb\n")],
        [(3, b"cccc\n")],
    ]


def test_row_group_runs_hold_about_the_range_and_number_rows_from_the_footer():
    groups = [(40, 3), (40, 2), (100, 5), (10, 1), (10, 1)]
    assert row_group_spans(groups, 70) == [Span(0, 2, 1), Span(2, 3, 6), Span(3, 5, 11)]
    assert row_group_spans(groups, 1) == [
        Span(0, 1, 1), Span(1, 2, 4), Span(2, 3, 6), Span(3, 4, 11), Span(4, 5, 12)
    ]  # fmt: skip
    assert row_group_spans(groups, 10_000) == [Span(0, 5, 1)]


def test_which_files_are_cut():
    assert span_unit(False, False, "a.jsonl") == "bytes"
    assert span_unit(True, False, "a.parquet") == "row_groups"
    for path in ("a.jsonl.gz", "a.jsonl.zst", "a.jsonl.zstd"):
        assert span_unit(False, False, path) is None
    assert span_unit(False, True, "a.txt") is None


def test_parquet_row_group_spans_give_the_rows_and_ids_of_a_whole_read(tmp_path):
    path = tmp_path / "t.parquet"
    table = pa.table({"text": [f"row {i}" if i % 7 else "" for i in range(50)]})
    pq.write_table(table, path, row_group_size=6)
    cfg = SourceConfig(name="p", format="parquet", path=str(path))
    file = SourceFile("p", str(path), "t.parquet")
    groups = [(1, 6)] * 8 + [(1, 2)]
    parts = [
        item
        for span in row_group_spans(groups, 3)
        for item in parse_located(cfg, file, open(path, "rb"), span)
    ]
    whole = list(parse_located(cfg, file, open(path, "rb"), WHOLE))
    assert [p[:3] for p in parts] == [w[:3] for w in whole] and len(whole) == 50
    assert [type(p[3]).__name__ for p in parts] == [type(w[3]).__name__ for w in whole]


def _lines(n: int) -> bytes:
    rows = []
    for i in range(n):
        if i % 11 == 5:
            rows.append("{broken")
        elif i % 13 == 7:
            rows.append("")
        else:
            rows.append(
                json.dumps({"text": f"document {i} " + "word " * (i % 17), "k": f"id{i % 40}"})
            )
    return ("\n".join(rows) + "\n").encode()


def _read(out: Path, sources: list[SourceConfig], files: list[SourceFile], *flags: str):
    """Records and rejects of the read step on the DirectRunner, as sorted JSON lines, and the
    number of parts parsed."""
    p = beam.Pipeline(options=ReadOptions(list(flags)))
    read = p | ReadSources(sources, files)
    (
        (read[KEPT], read[REJECTS])
        | beam.Flatten()
        | beam.Map(lambda r: json.dumps(r.to_dict(), sort_keys=True))
        | beam.io.WriteToText(str(out), num_shards=1, shard_name_template="")
    )
    result = p.run()
    result.wait_until_finish()
    (parts,) = result.metrics().query(MetricsFilter().with_name(PARTS))["counters"]
    return sorted(out.read_text().splitlines()), parts.committed


@pytest.mark.parametrize("id_field", [None, "k"])
def test_read_step_gives_the_same_records_in_ranges_as_whole(tmp_path, id_field):
    big, small = tmp_path / "big.jsonl", tmp_path / "small.jsonl"
    big.write_bytes(_lines(300))
    small.write_bytes(_lines(4))
    cfg = SourceConfig(name="s", format="jsonl", path=str(tmp_path / "*.jsonl"), id_field=id_field)
    files = [SourceFile("s", str(big), "big.jsonl"), SourceFile("s", str(small), "small.jsonl")]
    whole, files_read = _read(tmp_path / "whole", [cfg], files)
    lines = [line for f in (big, small) for line in f.read_bytes().splitlines() if line.strip()]
    assert len(whole) == len(lines) and any('"s:big.jsonl:300"' in row for row in whole)
    assert files_read == 2
    parts, parts_read = _read(tmp_path / "parts", [cfg], files, "--read_range_bytes=997")
    assert parts == whole
    assert parts_read == 1 + -(-big.stat().st_size // 997)  # the small file whole, big in ranges


def test_range_size_must_be_positive(tmp_path):
    cfg = SourceConfig(name="s", format="jsonl", path="x.jsonl")
    with pytest.raises(ValueError, match="--read_range_bytes is 0"):
        _read(tmp_path / "out", [cfg], [], "--read_range_bytes=0")


class _GoneAfter(io.BytesIO):
    """A stream that fails once reading passes `limit` bytes, as a file removed mid-run does."""

    def __init__(self, data: bytes, limit: int):
        super().__init__(data)
        self._limit = limit

    def readline(self, *args):
        if self.tell() >= self._limit:
            raise OSError("gone")
        return super().readline(*args)


def test_a_range_that_breaks_off_is_one_reject_naming_the_range():
    data = b"".join(json.dumps({"text": f"t{i}"}).encode() + b"\n" for i in range(10))
    cfg = SourceConfig(name="s", format="jsonl", path="f.jsonl")
    file = SourceFile("s", "/data/f.jsonl", "f.jsonl")
    (span,) = [s for s in spans_of(data, 40) if s.begin == 40]
    # 15-byte lines: the range owns lines 4 to 6 (starting at bytes 45, 60, 75); 75 is gone.
    items = list(parse_located(cfg, file, _GoneAfter(data, 70), span))
    kept, (_, rid, where, reject) = items[:-1], items[-1]
    assert [item[1] for item in kept] == ["s:f.jsonl:4", "s:f.jsonl:5"]
    assert rid == reject.id == "s:f.jsonl:bytes-40-80" and reject.reason == "unreadable_file"
    assert (
        where == "/data/f.jsonl (bytes 40-80)" and "OSError: gone (after 2 items)" in reject.detail
    )
