"""The one record type that flows between stages, and the reject that leaves the flow.

A record is JSON-serialisable and carries the fields DESIGN.md's contract names. Records are
encoded as canonical JSON (sorted keys) by `RecordCoder`, so Beam moves them between workers and
runners (Direct, Portable, Flink, Dataflow) with the same bytes and no pickling of our classes.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import apache_beam as beam

KINDS = ("raw", "augmented", "instruction", "tuning")
ORIGINS = ("organic", "converted", "synthetic")

# Invalid UTF-8 bytes are decoded with `surrogateescape` at read time so that no byte is lost
# before the normalize stage decides what to do with them. Nothing iptkit writes holds them:
# `encode_line` writes every file as valid UTF-8 JSON, each value that JSON or UTF-8 cannot
# hold in one of the explicit forms below (docs/pipeline.md, "Records").
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
INVALID_UTF8 = "$invalid_utf8"
"""Key of a string holding bytes that are not UTF-8: `{"$invalid_utf8": BASE64 of the
original bytes, "replaced": the string with U+FFFD for each bad byte}`."""
BASE64 = "$base64"
"""Key of a binary value (a Parquet binary cell): `{"$base64": BASE64 of its bytes}`."""
FLOAT = "$float"
"""Key of a float JSON has no number for: `{"$float": "NaN" | "Infinity" | "-Infinity"}`."""


# Built once: `json.dumps` with any option builds a new encoder on every call, a tenth of the
# cost of encoding a record. An encoder keeps no state between calls.
_CANONICAL = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))
_STRICT = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
)


def dumps(obj: Any) -> str:
    """Canonical JSON: sorted keys, no ASCII escaping, so equal objects give equal bytes."""
    return _CANONICAL.encode(obj)


def original_bytes(text: str) -> bytes:
    """The bytes a string read with `surrogateescape` came from: each lone surrogate
    U+DC80..U+DCFF is the byte 0x80..0xFF it stands for; any other lone surrogate (written as a
    `\\ud800` escape in JSON input) is its three-byte generalized UTF-8 form."""
    out = bytearray()
    pos = 0
    for match in _LONE_SURROGATE.finditer(text):
        out += text[pos : match.start()].encode("utf-8")
        code = ord(match.group())
        if 0xDC80 <= code <= 0xDCFF:
            out.append(code - 0xDC00)
        else:
            out += match.group().encode("utf-8", "surrogatepass")
        pos = match.end()
    out += text[pos:].encode("utf-8")
    return bytes(out)


def escaped_text(text: str) -> str:
    """A string with each invalid byte as the four characters `\\xNN` (another lone surrogate as
    `\\uXXXX`): for names that must stay strings (object keys, file names in ids)."""

    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"

    return _LONE_SURROGATE.sub(escape, text)


def plain_json(value: Any) -> Any:
    """A Python value (a parsed row, a Parquet cell) as a JSON value: dates, times and
    timestamps as ISO 8601 strings, decimals and durations as strings, bytes as
    `{"$base64": ...}`, tuples as lists, anything else as its `str`. Strings are kept as they
    are (invalid bytes included: `json_safe` decides how they are written)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {BASE64: base64.b64encode(bytes(value)).decode("ascii")}
    return str(value)


def json_safe(value: Any) -> Any:
    """`plain_json`, then the forms strict JSON and UTF-8 readers accept: a string with invalid
    bytes as `{"$invalid_utf8": ..., "replaced": ...}`, a key with invalid bytes escaped as
    `\\xNN`, NaN and infinities as `{"$float": ...}`."""
    if isinstance(value, str):
        if _LONE_SURROGATE.search(value) is None:
            return value
        return {
            INVALID_UTF8: base64.b64encode(original_bytes(value)).decode("ascii"),
            "replaced": _LONE_SURROGATE.sub("\ufffd", value),
        }
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {FLOAT: "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")}
    if value is None or isinstance(value, (int, bool)):
        return value
    if isinstance(value, dict):
        return {escaped_text(str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return json_safe(plain_json(value))


def encode_line(obj: Any) -> bytes:
    """One JSONL line, always valid UTF-8 and strict JSON (RFC 8259, no NaN, no lone
    surrogates): a line whose values JSON or UTF-8 cannot hold as they are is written through
    `json_safe`, which keeps every original byte in an explicit form."""
    try:
        return _STRICT.encode(obj).encode("utf-8") + b"\n"
    except (UnicodeEncodeError, ValueError, TypeError):
        return _STRICT.encode(json_safe(obj)).encode("utf-8") + b"\n"


def record_chars(record: Record, limit: int) -> int:
    """The characters a record carries (text, pairs, and the strings, keys and numbers of its
    meta), counted until they pass `limit`: a size check costs no more than `limit` allows,
    whatever the record's size, and touches no record that is small."""
    total = len(record.text)
    stack: list[Any] = [record.pairs, record.meta]
    while stack and total <= limit:
        value = stack.pop()
        if isinstance(value, str):
            total += len(value)
        elif isinstance(value, dict):
            total += sum(len(k) if isinstance(k, str) else 1 for k in value)
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            total += 1
            stack.extend(value)
        elif isinstance(value, (bytes, bytearray)):
            total += len(value)
        else:
            total += 1
    return total


@functools.cache
def _field_getter(cls: type) -> tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]:
    names = tuple(f.name for f in fields(cls))
    return names, operator.attrgetter(*names)


def shallow_dict(obj: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict, without copying them: `dataclasses.asdict` deep-copies
    `meta` recursively, which cost a tenth of a run; records are never mutated, so sharing is
    safe. The field names are looked up once per class (`fields` per call was a twentieth of
    a run that only reads and writes)."""
    names, values = _field_getter(type(obj))
    return dict(zip(names, values(obj), strict=True))


@dataclass
class Record:
    """A document, instruction or augmented text on its way through the pipeline.

    `id` is the source's `id_field` value when the source names one, else derived from source
    name, file and position (see `iptkit.transforms.reading.sources`), so it is stable across runs and
    runners and can order anything that must be deterministic.
    """

    id: str
    source: str
    text: str
    kind: str = "raw"
    lang: str | None = None
    lang_score: float | None = None
    pairs: list[dict[str, str]] = field(default_factory=list)
    category: str | None = None
    origin: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return shallow_dict(self)

    def rejected_view(self) -> dict[str, Any]:
        """What a reject keeps of a record: all of it, so nothing is lost."""
        return self.to_dict()


@dataclass(frozen=True)
class Reject:
    """A record that left the flow, with the stage and the reason; written to RUN/rejects/STAGE/.

    `record` holds the rejected record (or, at read, the raw line as far as it could be decoded),
    so nothing is lost: a user can inspect or recover every reject.
    """

    id: str
    source: str
    stage: str
    reason: str
    detail: str = ""
    record: Any = None

    def to_dict(self) -> dict[str, Any]:
        return shallow_dict(self)


def coder_bytes(obj: Any) -> bytes:
    """`obj` as canonical JSON in UTF-8, the bytes iptkit's coders move between workers.

    UTF-8, not ASCII escapes: a Japanese character is 3 bytes instead of a 6-byte `\\uXXXX`,
    which made a record of the benchmark corpus (en/ja/pl) 1.39 times larger in every
    collection a runner holds or shuffles. `surrogatepass` keeps a lone surrogate from invalid
    input (Beam's own string coder, strict UTF-8, would fail on it); `coder_value` reads it back.
    """
    return _CANONICAL.encode(obj).encode("utf-8", "surrogatepass")


def coder_value(encoded: bytes) -> Any:
    """What `coder_bytes` encoded, lone surrogates included."""
    return json.loads(encoded.decode("utf-8", "surrogatepass"))


class _JsonCoder(beam.coders.Coder):
    """Canonical-JSON coder for our dataclasses: deterministic, runner-independent bytes
    (`coder_bytes`)."""

    type_: type

    def encode(self, value: Any) -> bytes:
        return coder_bytes(value.to_dict())

    def decode(self, encoded: bytes) -> Any:
        return self.type_(**coder_value(encoded))

    def is_deterministic(self) -> bool:
        return True


class RecordCoder(_JsonCoder):
    type_ = Record


class RejectCoder(_JsonCoder):
    type_ = Reject


beam.coders.registry.register_coder(Record, RecordCoder)
beam.coders.registry.register_coder(Reject, RejectCoder)
