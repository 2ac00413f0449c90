"""Preference records: a prompt with a chosen and a rejected response, as one `Record`.

Read from files (`format: preference`, transforms/reading/preference.py) or built by the
`preference` stage from judged candidate responses, a preference record is an `instruction`
record whose `pairs` end with the chosen response (earlier pairs are the conversation before
it) and whose `meta["preference"]` holds the rejected response:

    meta["preference"] = {"rejected": TEXT, "chosen_score": 8.0, "rejected_score": 3.0,
                          "reason": "...", ...}   # only "rejected" is required

So every stage and the formatter read it as the chosen conversation (SFT on the chosen
response, if packed as usual); the pack stage with `preference: true` renders the rejected
conversation too (`rejected_view`) and writes both as a pair (iptkit/shards.py, layout pairs).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from iptkit.transforms.record import Record

PREFERENCE = "preference"
"""The meta key of a preference record."""


def preference_of(record: Record) -> dict[str, Any] | None:
    """The record's preference, when it is a well-formed preference record, else None."""
    info = record.meta.get(PREFERENCE) if isinstance(record.meta, dict) else None
    if not isinstance(info, dict) or not isinstance(info.get("rejected"), str):
        return None
    if not record.pairs or not isinstance(record.pairs[-1].get("response"), str):
        return None
    return info


def preference_record(
    record: Record,
    pairs: list[dict[str, str]],
    rejected: str,
    **facts: Any,
) -> Record:
    """`record` as a preference record: `pairs` ending with the chosen response, the rejected
    response and the facts given (scores, the judge's reason, ...) in meta["preference"]."""
    info = {"rejected": rejected, **{k: v for k, v in facts.items() if v is not None}}
    return dataclasses.replace(
        record, kind="instruction", pairs=pairs, meta={**record.meta, PREFERENCE: info}
    )


def rejected_view(record: Record) -> Record:
    """The record as its rejected conversation: the last pair's response replaced."""
    info = preference_of(record)
    if info is None:
        raise ValueError(f"{record.id} is not a preference record")
    last = {**record.pairs[-1], "response": info["rejected"]}
    return dataclasses.replace(record, pairs=[*record.pairs[:-1], last])
