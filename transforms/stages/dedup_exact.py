"""dedup_exact: one record per normalised text, across sources or within each source.

Records are grouped by a strong hash (BLAKE2b, 128 bits) of their text after the normalisation
the spec switches on: Unicode case folding, punctuation removal (any script), digit removal
(any script) and whitespace collapsing. In each group the record with the lowest id is kept,
whatever order the records arrive in, so the same corpus keeps the same records on every runner
and worker count; the others are rejects with reason `exact_duplicate`, naming the kept id.

A group is read twice from the GroupByKey's values (first for the lowest id, then to emit), never
copied, so memory does not grow with the number of copies of a text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Literal

from pydantic import Field

from iptkit.hashing import digest
from iptkit.transforms.record import Record
from iptkit.transforms.stage import Drop, GroupStage
from iptkit.transforms.stage_config import StageConfig
from iptkit.transforms.text.shingles import strip_punctuation

REASON = "exact_duplicate"
_DIGITS = re.compile(r"\d")  # Unicode decimal digits (Nd): ٣, ３ and 3 alike

GroupKey = bytes  # 16 bytes of hash, then the source for scope `source` (UTF-8)


class DedupExactConfig(StageConfig):
    """Options of the dedup_exact stage."""

    lowercase: bool = Field(
        True, description="compare texts case-insensitively (Unicode case folding)"
    )
    collapse_whitespace: bool = Field(
        True, description="treat any run of whitespace, line breaks included, as one space"
    )
    remove_punctuation: bool = Field(
        False, description="ignore punctuation of any script (Unicode categories P*)"
    )
    remove_digits: bool = Field(False, description="ignore digits of any script")
    scope: Literal["global", "source"] = Field(
        "global",
        description="global: one copy across all sources; source: one copy within each source",
    )


def normalise(text: str, cfg: DedupExactConfig) -> str:
    """The text as the duplicate check compares it."""
    if cfg.lowercase:
        text = text.casefold()
    if cfg.remove_punctuation:
        text = strip_punctuation(text)
    if cfg.remove_digits:
        text = _DIGITS.sub("", text)
    if cfg.collapse_whitespace:
        text = " ".join(text.split())
    return text


def text_hash(text: str) -> str:
    """A 128-bit BLAKE2b hex digest; `surrogatepass` keeps undecodable input bytes distinct."""
    return digest(text, 16).hex()


def group_key(record: Record, cfg: DedupExactConfig) -> GroupKey:
    """Records with equal keys are duplicates: the hash (16 bytes), then the source for scope
    `source`. Bytes, not a tuple of strings: the key is encoded twice per record in the
    shuffle, and Beam's bytes coder is the cheapest deterministic one."""
    key = digest(normalise(record.text, cfg), 16)
    if cfg.scope == "source":
        key += record.source.encode("utf-8", "surrogatepass")
    return key


def split_group(records: Iterable[Record]) -> Iterator[Record | tuple[Record, Drop]]:
    """The lowest-id record of a group of duplicates, and `(record, Drop)` for the others.

    `records` is read twice (Beam's grouped values are re-iterable). Ids are unique by the
    record contract; were two equal, both would be kept rather than one chosen by order.
    """
    kept = min(r.id for r in records)
    for record in records:
        if record.id == kept:
            yield record
        else:
            yield record, Drop(REASON, f"same normalised text as {kept}")


class DedupExact(
    GroupStage,
    stage="dedup_exact",
    config=DedupExactConfig,
    summary="one record per normalised text (lowest id kept), across or within sources",
):
    """Drops exact duplicates: one group per normalised text."""

    def group_key(self, record: Record) -> GroupKey:
        return group_key(record, self.config)

    def decide_group(self, key: GroupKey, records: Iterable[Record]):
        return split_group(records)
