"""The JSONL sinks: how many files a folder gets (bytes, not a fixed count), and that a small
target splits the rows over several files whose union is the input, byte-identical across
DirectRunner worker counts."""

import gzip
import json
import random

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from iptkit.pipelines.sinks import (
    WriteJsonlShards,
    encoded,
    shard_content,
    shard_count,
    shard_of,
    sort_key,
)
from iptkit.transforms.record import Record


def test_shard_count_follows_the_bytes_with_a_floor():
    assert shard_count(0, 100, 1) == 1  # an empty folder still gets its one file
    assert shard_count(100, 100, 1) == 1
    assert shard_count(101, 100, 1) == 2
    assert shard_count(10_000, 100, 1) == 100
    assert shard_count(150, 100, 4) == 4  # output_shards is the fewest files
    assert shard_count(10**12, 128 * 2**20, 1) == 7451  # 1 TB of lines in 128 MiB files
    with pytest.raises(ValueError, match="must be >= 1"):
        shard_count(10, 0, 1)


def test_a_row_goes_to_the_same_shard_by_id_or_by_its_sort_bytes():
    for rid in ["a", "doc-17", "日本語", "bad\udcff"]:
        assert shard_of(rid, 7) == shard_of(sort_key(rid), 7)


def test_shard_content_sorts_by_id_and_gzips_without_a_timestamp():
    rows = [(b"b", b"2\n"), (b"a", b"1\n"), (b"c", b"3\n")]
    assert b"".join(shard_content(list(rows), compress=False)) == b"1\n2\n3\n"
    packed = b"".join(shard_content(list(rows), compress=True))
    assert packed == gzip.compress(b"1\n2\n3\n", 6, mtime=0)


def test_a_shard_streamed_in_pieces_is_the_bytes_of_one_gzip_call():
    """Several deflate pieces (lines of ~0.3 MiB over the 1 MiB piece size, incompressible
    and repetitive) give exactly what one `gzip.compress` of the whole content gives."""
    rng = random.Random(7)
    rows = [
        (b"%05d" % i, (rng.randbytes(300_000) if i % 2 else b"abc" * 100_000) + b"\n")
        for i in range(12)
    ]
    pieces = list(shard_content(list(rows), compress=True))
    assert len(pieces) > 4
    content = b"".join(line for _, line in sorted(rows))
    assert b"".join(pieces) == gzip.compress(content, 6, mtime=0)
    assert b"".join(shard_content([], compress=True)) == gzip.compress(b"", 6, mtime=0)


RECORDS = [Record(id=f"r{i:04d}", source="s", text="x" * (i % 37 + 5)) for i in range(600)]


def _write(folder, *flags):
    with beam.Pipeline(options=PipelineOptions(list(flags))) as p:
        p | beam.Create(RECORDS) | WriteJsonlShards(str(folder), 1, True, target_bytes=4096)
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir())}


def test_a_small_target_writes_several_files_whose_union_is_the_input(tmp_path):
    total = sum(len(encoded(r)[1]) for r in RECORDS)
    n = shard_count(total, 4096, 1)
    assert n > 5
    one = _write(tmp_path / "one", "--direct_num_workers=1")
    assert sorted(one) == [f"part-{i:05d}-of-{n:05d}.jsonl.gz" for i in range(n)]
    rows = [json.loads(x) for data in one.values() for x in gzip.decompress(data).splitlines()]
    assert sorted(r["id"] for r in rows) == [r.id for r in RECORDS]
    for name, data in one.items():
        ids = [json.loads(x)["id"] for x in gzip.decompress(data).splitlines()]
        assert ids == sorted(ids)
        assert all(shard_of(i, n) == int(name[5:10]) for i in ids)
        assert len(gzip.decompress(data)) < 3 * 4096  # no file far past the target
    two = _write(
        tmp_path / "two", "--direct_num_workers=2", "--direct_running_mode=multi_threading"
    )
    assert two == one


def test_every_shard_is_written_even_where_no_line_went(tmp_path):
    rows = RECORDS[:2]
    with beam.Pipeline() as p:
        p | beam.Create(rows) | WriteJsonlShards(str(tmp_path), 5, True)
    files = {f.name: gzip.decompress(f.read_bytes()) for f in sorted(tmp_path.iterdir())}
    assert sorted(files) == [f"part-{i:05d}-of-00005.jsonl.gz" for i in range(5)]
    assert sum(1 for data in files.values() if not data) == 5 - len(
        {shard_of(r.id, 5) for r in rows}
    )
    assert b"".join(files.values()).count(b"\n") == 2
