"""The one record type that flows between stages, and the reject that leaves the flow.

A record is JSON-serialisable and carries the fields DESIGN.md's contract names. Records are
encoded as canonical JSON (sorted keys) by `RecordCoder`, so Beam moves them between workers and
runners (Direct, Portable, Flink, Dataflow) with the same bytes and no pickling of our classes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

import apache_beam as beam

KINDS = ("raw", "augmented", "instruction", "tuning")
ORIGINS = ("organic", "converted", "synthetic")

# Invalid UTF-8 bytes are decoded with `surrogateescape` at read time so that no byte is lost
# before the normalize stage decides what to do with them; output lines use the same handler.
_ENCODING_ERRORS = "surrogateescape"


def dumps(obj: Any) -> str:
    """Canonical JSON: sorted keys, no ASCII escaping, so equal objects give equal bytes."""
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def encode_line(obj: Any) -> bytes:
    """One JSONL line, keeping undecodable input bytes as they were read.

    A lone surrogate that did not come from an input byte (a JSON `\\ud800` escape) cannot be
    written as UTF-8 at all; that line falls back to ASCII escapes, which JSON readers accept.
    """
    try:
        return dumps(obj).encode("utf-8", _ENCODING_ERRORS) + b"\n"
    except UnicodeEncodeError:
        return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("ascii") + b"\n"


def shallow_dict(obj: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict, without copying them: `dataclasses.asdict` deep-copies
    `meta` recursively, which cost a tenth of a run; records are never mutated, so sharing is
    safe."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


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


class _JsonCoder(beam.coders.Coder):
    """Canonical-JSON coder for our dataclasses: deterministic, runner-independent bytes.

    ASCII escapes make every string round-trip, lone surrogates from invalid input included
    (Beam's default coder encodes strings as strict UTF-8 and would fail on them).
    """

    type_: type

    def encode(self, value: Any) -> bytes:
        return json.dumps(value.to_dict(), sort_keys=True, separators=(",", ":")).encode("ascii")

    def decode(self, encoded: bytes) -> Any:
        return self.type_(**json.loads(encoded))

    def is_deterministic(self) -> bool:
        return True


class RecordCoder(_JsonCoder):
    type_ = Record


class RejectCoder(_JsonCoder):
    type_ = Reject


beam.coders.registry.register_coder(Record, RecordCoder)
beam.coders.registry.register_coder(Reject, RejectCoder)
