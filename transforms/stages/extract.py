"""extract: instructions from chat logs, moderation filtering, and PLLuM's per-resource cap.

A `conversations` source gives one record per conversation, its text the first user turn and
`meta["conversation"]` every turn as `{role, content}` (LMSYS and ShareGPT alike; see
`iptkit.transforms.reading.sources`). This stage turns it into instruction records:

- `turns: first` (Ma et al.: "the first user utterance is selected as the instruction") keeps
  one record per conversation; `turns: all` gives one per user turn, each with the turns before
  it in `meta["history"]` (a system prompt included), counted as `added` in the ledger. The
  first turn keeps the conversation's id; turn k gets `ID#k`.
- `keep_responses` puts the assistant turn that follows into `pairs`
  (`{"instruction", "response"}`); Ma et al. drop them and generate new ones (respond stage).
- A conversation with a moderation flag on any message is dropped (`moderation_flagged`), read
  from the `openai_moderation` field the LMSYS schema has (kept in meta by the source's default
  `meta_fields: all`): the entry's own `flagged`, or only `flag_categories`, and optionally any
  category score at or above `max_score`. `flag_fields` names per-conversation booleans
  (WildChat's `toxic`). A conversation with no moderation data passes unless
  `require_moderation` is set.
- Redaction markers (`NAME_1`, ...) are left as they are: they are part of the data the paper
  released, and the translate stage's checks make sure a translation keeps them.
- Converted records (by default; `cap_origins`) are capped at `max_per_resource` per resource
  (PLLuM: 1,000), the resource being the source or a meta field. The records kept are those
  with the smallest BLAKE2b hash of `seed:id`, so the choice depends on the seed and the ids
  only; the others are rejects with reason `over_cap`. The cap needs a count per resource, so
  it is a GroupByKey over the capped records; the rest do not take part.

Records without a conversation pass through (a converted JSONL resource still gets its cap and
its origin). Every record leaving the stage has an `origin` (`iptkit.transforms.typology`).
Exact and near duplicates among the instructions are removed by the dedup stages placed after
this one, as Ma et al. did after extraction. Put `normalize` after this stage as well, or before
it: it normalises conversation turns, pairs and text alike.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import apache_beam as beam
from pydantic import Field

from iptkit.hashing import seeded_int
from iptkit.transforms.record import ORIGINS, Record
from iptkit.transforms.stage import (
    ADDED,
    KEPT,
    RECORD_TOO_LARGE,
    REJECTS,
    ByGroup,
    Drop,
    Expand,
    RecordStage,
    merge,
)
from iptkit.transforms.stage_config import StageConfig
from iptkit.transforms.typology import with_origin

OVER_CAP = "over_cap"
ADDED_TURN = "user_turn"
# Meta fields that the extracted records no longer need: their content is now in text, pairs
# and history, and a per-message moderation list no longer lines up with one turn.
CONSUMED_META = ("conversation",)


class ExtractConfig(StageConfig):
    """Options of the extract stage."""

    kinds: list[str] | None = Field(
        ["instruction", "tuning"],
        description="apply only to records of these kinds (conversations are instruction "
        "records, converted task data often tuning; null: every kind)",
    )
    turns: Literal["first", "all"] = Field(
        "first",
        description="first: the first user turn of each conversation (Ma et al.); all: every "
        'user turn, with the turns before it in meta["history"]',
    )
    keep_responses: bool = Field(
        True,
        description="put the assistant turn that follows each user turn into pairs "
        "(off: instructions only, to be answered by the respond stage)",
    )
    drop_flagged: bool = Field(
        True, description="drop conversations with a moderation flag on any message"
    )
    moderation_field: str = Field(
        "openai_moderation",
        description="meta field holding the moderation results, one per message (LMSYS schema)",
    )
    flag_categories: list[str] | None = Field(
        None,
        min_length=1,
        description="categories that count as a flag (e.g. [harassment, violence]); null: the "
        "entry's own `flagged`",
    )
    max_score: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="also flag a message when a (selected) category score is at or above this",
    )
    flag_fields: list[str] = Field(
        default_factory=list,
        description="meta fields whose value true flags the whole conversation (WildChat: toxic)",
    )
    require_moderation: bool = Field(
        False,
        description="reject conversations without moderation data (no_moderation) instead of "
        "passing them",
    )
    max_per_resource: int | None = Field(
        1000,
        ge=1,
        description="most records kept per resource among cap_origins (PLLuM: 1,000 converted "
        "records per resource); null: no cap",
    )
    cap_origins: list[Literal[ORIGINS]] = Field(  # type: ignore[valid-type]
        ["converted"], description="origins the cap applies to"
    )
    resource_field: str | None = Field(
        None,
        description="meta field naming a record's resource for the cap; default: its source",
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def flagged_categories(entry: Any, cfg: ExtractConfig) -> list[str] | str:
    """What flags one message's moderation entry (empty when nothing does), or, for a
    malformed entry, the problem as a string."""
    if not isinstance(entry, dict):
        return f"entry is {type(entry).__name__}, expected an object"
    categories = entry.get("categories", {})
    scores = entry.get("category_scores", {})
    if not isinstance(categories, dict) or not isinstance(scores, dict):
        return "categories and category_scores must be objects"
    if cfg.flag_categories is None:
        hits = [c for c, on in sorted(categories.items()) if on is True]
        if entry.get("flagged") is True and not hits:
            hits = ["flagged"]
        considered = sorted(scores)
    else:
        hits = [c for c in cfg.flag_categories if categories.get(c) is True]
        considered = cfg.flag_categories
    if cfg.max_score is not None:
        for category in considered:
            score = scores.get(category)
            if score is None:
                continue
            if not _is_number(score):
                return f"score of {category} is {type(score).__name__}, expected a number"
            if score >= cfg.max_score and category not in hits:
                hits.append(f"{category} {score:.3f}")
    return hits


def moderation_drop(meta: dict[str, Any], cfg: ExtractConfig) -> Drop | None:
    """Why a conversation fails moderation, or None when it passes."""
    for name in cfg.flag_fields:
        if meta.get(name) is True:
            return Drop("moderation_flagged", f"meta field {name!r} is true")
    entries = meta.get(cfg.moderation_field)
    if entries is None:
        if cfg.require_moderation:
            return Drop("no_moderation", f"no meta field {cfg.moderation_field!r}")
        return None
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list):
        return Drop(
            "bad_moderation",
            f"{cfg.moderation_field} is {type(entries).__name__}, expected a list of objects",
        )
    for i, entry in enumerate(entries):
        hits = flagged_categories(entry, cfg)
        if isinstance(hits, str):
            return Drop("bad_moderation", f"{cfg.moderation_field}[{i}]: {hits}")
        if hits:
            return Drop("moderation_flagged", f"message {i}: {', '.join(hits)}")
    return None


def turn_records(record: Record, cfg: ExtractConfig) -> list[Record]:
    """One record per selected user turn of the record's conversation (at least the first)."""
    turns = record.meta["conversation"]
    base_meta = {k: v for k, v in record.meta.items() if k not in CONSUMED_META}
    out = []
    number = 0
    for i, turn in enumerate(turns):
        if turn["role"] != "user":
            continue
        number += 1
        # The first user turn is the record's own text (which earlier stages may have changed);
        # a later empty user turn is no instruction and is skipped.
        text = record.text if number == 1 else turn["content"]
        if number > 1 and not text.strip():
            continue
        following = turns[i + 1] if i + 1 < len(turns) else None
        pairs = []
        if cfg.keep_responses and following and following["role"] == "assistant":
            if following["content"].strip():
                pairs = [{"instruction": text, "response": following["content"]}]
        meta = {**base_meta, "user_turn": number}
        if turns[:i]:
            meta["history"] = turns[:i]
        out.append(
            dataclasses.replace(
                record,
                id=record.id if number == 1 else f"{record.id}#{number}",
                text=text,
                pairs=pairs,
                meta=meta,
            )
        )
        if cfg.turns == "first":
            break
    return out


def expanded_chars(turns: list[Any]) -> int:
    """What `turns: all` writes for a conversation, in characters: each user turn carries every
    turn before it as history, so the sum grows with the square of the turns (each turn counts
    at least one, for the empty ones). Counted before any record is built."""
    total = before = 0
    for turn in turns:
        size = len(turn["content"]) + 1
        if turn["role"] == "user":
            total += before + size
        before += size
    return total


def extract(record: Record, cfg: ExtractConfig) -> Record | Drop | Expand:
    """The stage's per-record decision: moderation, then the turns, each with its origin."""
    if cfg.drop_flagged:
        drop = moderation_drop(record.meta, cfg)
        if drop is not None:
            return drop
    if not isinstance(record.meta.get("conversation"), list):
        return with_origin(record)
    if cfg.turns == "all":
        size = expanded_chars(record.meta["conversation"])
        if size > cfg.max_record_chars:
            return Drop(
                RECORD_TOO_LARGE,
                f"turns: all would write {size:,} characters of turns and history, more than "
                f"max_record_chars ({cfg.max_record_chars:,})",
            )
    records = [with_origin(r) for r in turn_records(record, cfg)]
    if len(records) == 1:
        return records[0]
    return Expand(records, ADDED_TURN)


def resource_of(record: Record, cfg: ExtractConfig) -> str:
    """The resource a record counts against for the cap."""
    if cfg.resource_field is None:
        return record.source
    value = record.meta.get(cfg.resource_field)
    return f"{record.source}:{value}" if value is not None else record.source


def split_over_cap(
    resource: str, records: Iterable[Record], cap: int, seed: int
) -> Iterator[Record | tuple[Record, Drop]]:
    """The `cap` records of one resource with the smallest rank, and `(record, Drop)` for the
    others.

    `records` is read twice (Beam's grouped values are re-iterable): once to choose, holding
    only `cap` ids, once to emit.
    """
    chosen = heapq.nsmallest(cap, ((seeded_int(seed, r.id, size=16), r.id) for r in records))
    keep = {rid for _, rid in chosen}
    total = sum(1 for _ in records)
    for record in records:
        if record.id in keep:
            yield record
        else:
            detail = f"resource {resource}: {total} records, cap {cap} (kept by hash of seed:id)"
            yield record, Drop(OVER_CAP, detail)


class Extract(
    RecordStage,
    stage="extract",
    config=ExtractConfig,
    summary="chat logs -> instructions: first or every user turn, moderation flags, per-resource cap",
):
    """Turns and moderation per record, then at most `max_per_resource` records of
    `cap_origins` per resource (a keyed shuffle)."""

    def apply(self, record: Record) -> Record | Drop | Expand:
        return extract(record, self.config)

    def run(self, records):
        cfg = self.config
        turns = super().run(records)
        if cfg.max_per_resource is None:
            return turns
        capped, free = turns[KEPT] | "Capped?" >> beam.Partition(
            lambda r, _: 0 if r.origin in cfg.cap_origins else 1, 2
        )
        cap, seed = cfg.max_per_resource, self.seed
        over = capped | "Cap" >> ByGroup(
            self,
            lambda r: resource_of(r, cfg),
            lambda resource, group: split_over_cap(resource, group, cap, seed),
        )
        return merge([{REJECTS: turns[REJECTS], ADDED: turns[ADDED]}, over], "Extract", passed=free)
