"""A record formatted and tokenized for training: what flows from format through mix to pack.

The record stages work on text; the tail of a run works on tokens, because mix ratios are
stated in tokens and packing cuts token sequences. A `TokenizedDoc` keeps the fields a mix may
group by (source, kind, lang, category, origin), the token ids with their loss mask, and the
difficulty score a curriculum orders by. It travels as canonical JSON, like records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam

from iptkit.transforms.record import _JsonCoder, shallow_dict

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


class TokenizedDocCoder(_JsonCoder):
    type_ = TokenizedDoc


beam.coders.registry.register_coder(TokenizedDoc, TokenizedDocCoder)
