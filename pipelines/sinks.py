"""Deterministic JSONL sinks for records and rejects, in files of a bounded size.

Beam's own text sink numbers shards by bundle, so the same data can land in different files on
different runners. Here a row's shard is a hash of its id, rows are sorted by id inside a shard,
and gzip is written without a timestamp: the same records give the same bytes on every runner
and worker count.

How many files: one worker holds, and sorts, one shard's rows, so a fixed count would let a
shard grow with the corpus. The sink first sums the encoded lines' bytes (a combine: one number
reaches one worker), and writes `shard_count(total, target_bytes, min_shards)` files: at least
`min_shards`, and enough that a shard holds about `target_bytes` of uncompressed lines. The
total is a sum over the records, so it, the count and the file set are the same on every runner
and worker count. Every shard file is written, empty ones included, so the file set follows
from the spec and the records alone.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Iterable, Iterator

import apache_beam as beam
from apache_beam.transforms.combiners import ToSetCombineFn

from iptkit.files import atomic_write
from iptkit.hashing import hash_int
from iptkit.memory import fix_mmap_threshold
from iptkit.transforms.record import Record, Reject, encode_line

# Uncompressed bytes of JSONL a shard holds (the spec's `output_shard_bytes` by default): a
# worker sorts one shard in memory, and 128 MiB of lines is a few times that in Python objects.
DEFAULT_SHARD_BYTES = 128 * 2**20

# Shards are gzip at level 6 with no timestamp, so the same rows give the same bytes.
GZIP_LEVEL = 6
GZIP_HEADER = gzip.compress(b"", GZIP_LEVEL, mtime=0)[:10]
PIECE_BYTES = 1 << 20

# A record as the sink moves it: its id as sort bytes (see `sort_key`) and its JSONL line.
Line = tuple[bytes, bytes]


def shard_count(total_bytes: int, target_bytes: int, min_shards: int) -> int:
    """Files for `total_bytes` of lines: at least `min_shards`, each about `target_bytes`."""
    if target_bytes < 1 or min_shards < 1:
        raise ValueError(f"target_bytes {target_bytes} and min_shards {min_shards} must be >= 1")
    return max(min_shards, -(-total_bytes // target_bytes))


def shard_of(record_id: str | bytes, num_shards: int) -> int:
    """The shard a row goes to: stable across processes (unlike Python's `hash`); an id and its
    `sort_key` bytes go to the same shard."""
    return hash_int(record_id) % num_shards


def shard_name(index: int, num_shards: int, compress: bool) -> str:
    return f"part-{index:05d}-of-{num_shards:05d}.jsonl" + (".gz" if compress else "")


def joined_pieces(lines: list[Line]) -> Iterator[bytes]:
    """The lines, in order, joined into pieces of about PIECE_BYTES (the last may be empty)."""
    piece = bytearray()
    for _, line in lines:
        piece += line
        if len(piece) >= PIECE_BYTES:
            yield bytes(piece)
            piece = bytearray()
    yield bytes(piece)


def shard_content(lines: list[Line], compress: bool) -> Iterator[bytes]:
    """The file content of one shard from `(id, JSONL line)` pairs, sorted by id, then bytes,
    in pieces: a shard's lines are never joined into one more copy of the shard (at 25,000
    documents that copy was the largest single block in the process). Compressed, the pieces
    are the bytes `gzip.compress(content, 6, mtime=0)` gives: its header, one deflate stream
    fed in ~1 MiB pieces (deflate's output does not depend on how its input is cut), the
    CRC-32 and size."""
    lines.sort()
    if not compress:
        yield from joined_pieces(lines)
        return
    deflate = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    crc = size = 0
    yield GZIP_HEADER
    for piece in joined_pieces(lines):
        crc, size = zlib.crc32(piece, crc), size + len(piece)
        yield deflate.compress(piece)
    yield deflate.flush() + struct.pack("<II", crc, size & 0xFFFFFFFF)


def sort_key(record_id: str) -> bytes:
    """An id as the bytes rows are sorted by: its UTF-8 form, which sorts as the code points do.
    An id holding a lone surrogate (an undecodable input byte) sorts the same way instead of
    failing the shuffle, whose string coder accepts only valid UTF-8."""
    return record_id.encode("utf-8", "surrogatepass")


def encoded(element: Record | Reject) -> Line:
    """A record or reject as `(id, line)`; encoded once here, so the sizes and the shuffle see
    the same bytes."""
    return sort_key(element.id), encode_line(element.to_dict())


class TotalBytes(beam.CombineFn):
    """The lines' bytes summed: one call per line, where a `Map` to sizes and a `sum` took two
    steps (and three more transforms to build per sink)."""

    def create_accumulator(self) -> int:
        return 0

    def add_input(self, total: int, line: Line) -> int:
        return total + len(line[1])

    def merge_accumulators(self, totals: Iterable[int]) -> int:
        return sum(totals)

    def extract_output(self, total: int) -> int:
        return total


def keyed_line(line: Line, num_shards: int) -> tuple[int, Line]:
    """`(shard, (id, line))`."""
    return shard_of(line[0], num_shards), line


def unused(num_shards: int, used: set[int]) -> list[int]:
    """The shards of `num_shards` that no line went to."""
    return [i for i in range(num_shards) if i not in used]


class WriteJsonlShards(beam.PTransform):
    """Writes records or reject rows to `directory/part-NNNNN-of-MMMMM.jsonl[.gz]`, MMMMM from
    the rows' size (`shard_count`)."""

    def __init__(
        self,
        directory: str,
        min_shards: int,
        compress: bool,
        target_bytes: int = DEFAULT_SHARD_BYTES,
    ):
        super().__init__()
        self._directory = directory
        self._min_shards = min_shards
        self._target_bytes = target_bytes
        self._compress = compress

    def expand(self, pcoll):
        directory, compress = self._directory, self._compress
        target, minimum = self._target_bytes, self._min_shards

        def write(item: tuple[int, Iterable[Line]], n: int) -> str:
            fix_mmap_threshold()  # a worker that only writes
            index, rows = item
            path = f"{directory}/{shard_name(index, n, compress)}"
            atomic_write(path, shard_content(list(rows), compress))
            return path

        lines = pcoll | "Encode" >> beam.Map(encoded)
        count = (
            lines
            | "Total" >> beam.CombineGlobally(TotalBytes())
            | "Count" >> beam.Map(shard_count, target, minimum)
        )
        n = beam.pvalue.AsSingleton(count)
        keyed = lines | "Key" >> beam.Map(keyed_line, n)
        written = keyed | "Group" >> beam.GroupByKey() | "Write" >> beam.Map(write, n)
        # The shards no line went to, written empty beside the others: a Flatten of the lines
        # with one marker per shard would be one more whole copy of the lines, which the
        # in-memory runner materializes (Beam 2.78 never fuses a multi-input Flatten).
        used = (
            keyed
            | "Shard" >> beam.Map(lambda kv: kv[0])
            | "Used" >> beam.CombineGlobally(ToSetCombineFn())
        )
        empty = count | "Empty" >> beam.FlatMap(unused, beam.pvalue.AsSingleton(used))
        return (written, empty | "Write empty" >> beam.Map(lambda i, n: write((i, []), n), n)) | (
            "Paths" >> beam.Flatten()
        )
