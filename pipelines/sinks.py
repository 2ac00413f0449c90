"""Deterministic JSONL sinks for records and rejects.

Beam's own text sink numbers shards by bundle, so the same data can land in different files on
different runners. Here a row's shard is a hash of its id, rows are sorted by id inside a shard,
and gzip is written without a timestamp: the same records give the same bytes on every runner
and worker count. Every shard file is written, empty ones included, so the file set is fixed by
the spec alone.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable

import apache_beam as beam

from iptkit.files import atomic_write
from iptkit.hashing import hash_int
from iptkit.transforms.record import Record, Reject, encode_line


def shard_of(record_id: str, num_shards: int) -> int:
    """The shard a row goes to: stable across processes (unlike Python's `hash`)."""
    return hash_int(record_id) % num_shards


def shard_name(index: int, num_shards: int, compress: bool) -> str:
    return f"part-{index:05d}-of-{num_shards:05d}.jsonl" + (".gz" if compress else "")


def shard_bytes(lines: list[tuple[bytes, bytes]], compress: bool) -> bytes:
    """The file content of one shard from `(id, JSONL line)` pairs: sorted by id, then bytes."""
    data = b"".join(line for _, line in sorted(lines))
    return gzip.compress(data, compresslevel=6, mtime=0) if compress else data


def sort_key(record_id: str) -> bytes:
    """An id as the bytes rows are sorted by: its UTF-8 form, which sorts as the code points do.
    An id holding a lone surrogate (an undecodable input byte) sorts the same way instead of
    failing the shuffle, whose string coder accepts only valid UTF-8."""
    return record_id.encode("utf-8", "surrogatepass")


def keyed_line(element: Record | Reject, num_shards: int) -> tuple[int, tuple[bytes, bytes]]:
    """A record or reject as `(shard, (id, line))`; encoded here so the shuffle moves bytes."""
    line = encode_line(element.to_dict())
    return shard_of(element.id, num_shards), (sort_key(element.id), line)


class WriteJsonlShards(beam.PTransform):
    """Writes records or reject rows to `directory/part-NNNNN-of-MMMMM.jsonl[.gz]`."""

    def __init__(self, directory: str, num_shards: int, compress: bool):
        super().__init__()
        self._directory = directory
        self._num_shards = num_shards
        self._compress = compress

    def expand(self, pcoll):
        n, directory, compress = self._num_shards, self._directory, self._compress

        def write(item: tuple[int, Iterable[tuple[bytes, bytes] | None]]) -> str:
            index, lines = item
            path = f"{directory}/{shard_name(index, n, compress)}"
            atomic_write(path, shard_bytes([x for x in lines if x is not None], compress))
            return path

        keyed = pcoll | "Key" >> beam.Map(keyed_line, n)
        every_shard = pcoll.pipeline | "Shards" >> beam.Create([(i, None) for i in range(n)])
        return (
            (keyed, every_shard)
            | "All" >> beam.Flatten()
            | "Group" >> beam.GroupByKey()
            | "Write" >> beam.Map(write)
        )
