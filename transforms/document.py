"""A record formatted and tokenized for training: what flows from format through mix to pack.

The record stages work on text; the tail of a run works on tokens, because mix ratios are
stated in tokens and packing cuts token sequences. A `TokenizedDoc` keeps the fields a mix may
group by (source, kind, lang, category, origin), the token ids with their loss mask, and the
difficulty score a curriculum orders by. It travels in a compact deterministic binary form
(`TokenizedDocCoder`): its token ids are most of its bytes, and a runner holds whole
PCollections of documents in memory where they cross a shuffle (a mix's groups).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam

from iptkit.transforms.record import shallow_dict

# The record fields a mix may group documents by.
GROUP_FIELDS = ("source", "kind", "lang", "category", "origin")


@dataclass
class TokenizedDoc:
    """One document's tokens. `mask[i] == 1` marks `ids[i]` as a loss target (SFT responses,
    synthesizer pairs); `mask` is None when every token is a target. `copy` numbers the
    repeats a mix made of the same document (0 for the first), so their ids stay distinct.
    A preference pair formatted for preference shards (pack's `preference: true`) carries
    its rejected conversation's tokens and mask as well; `ids` is then the chosen one."""

    id: str
    source: str
    kind: str
    ids: list[int]
    mask: list[int] | None = None
    lang: str | None = None
    category: str | None = None
    origin: str | None = None
    difficulty: float | None = None
    copy: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    rejected_ids: list[int] | None = None
    rejected_mask: list[int] | None = None

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    @property
    def key(self) -> str:
        """Unique per document copy: what ordering and hashing use."""
        return self.id if self.copy == 0 else f"{self.id}#{self.copy}"

    def group_value(self, name: str) -> str | None:
        """The value of one of GROUP_FIELDS."""
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        return shallow_dict(self)

    def rejected_view(self) -> dict[str, Any]:
        """What a reject keeps of a document: a summary, never the token ids (a mix may leave
        out most of a corpus)."""
        return {f: self.group_value(f) for f in GROUP_FIELDS} | {"tokens": self.n_tokens}


# The int lists of a TokenizedDoc: sent as packed integers after the JSON of the other fields.
INT_FIELDS = ("ids", "mask", "rejected_ids", "rejected_mask")
# struct formats from narrowest to widest (1, 2, 4, 8 bytes; little-endian, standard sizes).
_CODES = ("B", "H", "I", "q")
_COUNT = struct.Struct("<I")


def pack_ints(values: list[int] | None) -> bytes:
    """A list of ints as its format letter (b"-" for None), count (uint32) and little-endian
    items of the narrowest width that holds them all: a token id is 2 bytes with a vocabulary
    up to 65,536, where JSON spends 4-6 on its digits and comma, and a mask 1 byte. The width
    follows from the values alone, so the bytes are deterministic. (`struct` checks each
    value's range, and a narrower format fails at once on token ids; it packs a list into
    uint16 three times faster than `array("H")` does.)"""
    if values is None:
        return b"-"
    for code in _CODES:
        try:
            items = struct.pack(f"<{len(values)}{code}", *values)
            break
        except struct.error:
            continue
    else:
        raise OverflowError(f"int list with values outside int64: {min(values)}..{max(values)}")
    return code.encode("ascii") + _COUNT.pack(len(values)) + items


def unpack_ints(data: memoryview, at: int) -> tuple[list[int] | None, int]:
    """The list `pack_ints` wrote at offset `at`, and the offset after it."""
    code = chr(data[at])
    if code == "-":
        return None, at + 1
    (count,) = _COUNT.unpack_from(data, at + 1)
    items = struct.Struct(f"<{count}{code}")
    return list(items.unpack_from(data, at + 5)), at + 5 + items.size


class TokenizedDocCoder(beam.coders.Coder):
    """A TokenizedDoc as the length of a canonical-JSON header (uint32), the header (every
    field but the int lists, ASCII escapes as records' coder writes them, so lone surrogates
    round-trip), then the int lists packed by `pack_ints`: deterministic, runner-independent
    bytes, a third of the JSON form's for token ids."""

    def encode(self, value: TokenizedDoc) -> bytes:
        fields = shallow_dict(value)
        lists = [pack_ints(fields.pop(name)) for name in INT_FIELDS]
        head = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("ascii")
        return b"".join([_COUNT.pack(len(head)), head, *lists])

    def decode(self, encoded: bytes) -> TokenizedDoc:
        data = memoryview(encoded)
        (size,) = _COUNT.unpack_from(data, 0)
        fields = json.loads(bytes(data[4 : 4 + size]))
        at = 4 + size
        for name in INT_FIELDS:
            fields[name], at = unpack_ints(data, at)
        return TokenizedDoc(**fields)

    def is_deterministic(self) -> bool:
        return True


beam.coders.registry.register_coder(TokenizedDoc, TokenizedDocCoder)
