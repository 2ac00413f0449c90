"""PLLuM's instruction typology: every record is organic, converted or synthetic.

- organic: written by people (chat users' turns, annotators' instructions, web pages);
- converted: made from existing resources by rules or templates (task datasets turned into
  instruction pairs, parallel corpora turned into translation tasks);
- synthetic: written by a model (translations, synthesized pairs, generated responses), or
  by a program from unannotated text (the AdaptLLM rule miner's reading-comprehension tasks).

Why the rule miner's pairs are synthetic, not converted: PLLuM's converted instructions come
from annotated corpora and structured knowledge sources, where people wrote the answers and
a template only rephrases them; its synthetic ones are generated, by knowledge distillation or
by NLP task conversion. The miner annotates nothing that people annotated: it invents the
tasks and their answers from raw text, so its output is generated data (and the augmented
text it joins mixes that with the raw text, as the model backend's does).

The rules, in order: a source's declared `origin` wins (it is set on the record at read time);
otherwise the record's kind decides (`DEFAULT_BY_KIND`: chat turns and web text are organic,
context-based tuning data is converted, synthesizer output is synthetic). A stage that writes
text with a model, or synthesizes pairs by rules, calls `mark_synthetic` (translate, respond,
synthesize); a stage that builds records from others by templates
calls `derived_origin`, so a template over machine-translated text stays synthetic.

The mix report counts by `origin`, and extract's per-resource cap applies to converted records
(PLLuM caps converted data at 1,000 records per resource).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from iptkit.transforms.record import ORIGINS, Record

ORGANIC, CONVERTED, SYNTHETIC = ORIGINS
# What a record of each kind is when its source did not say.
DEFAULT_BY_KIND = {
    "raw": ORGANIC,
    "instruction": ORGANIC,
    "tuning": CONVERTED,
    "augmented": SYNTHETIC,
}


def resolve_origin(record: Record) -> str:
    """The record's origin: the declared one, else the default for its kind."""
    if record.origin is not None:
        if record.origin not in ORIGINS:
            raise ValueError(f"origin {record.origin!r} is not one of {', '.join(ORIGINS)}")
        return record.origin
    return DEFAULT_BY_KIND.get(record.kind, ORGANIC)


def with_origin(record: Record) -> Record:
    """The record with its origin filled in by the rules above (unchanged if already set)."""
    origin = resolve_origin(record)
    return record if origin == record.origin else dataclasses.replace(record, origin=origin)


def mark_synthetic(record: Record) -> Record:
    """The record as written by a model: translate, synthesize and respond call this on what
    they output. The previous origin is kept in meta["origin_before"], so an organic
    instruction with a synthetic response can still be told from a wholly synthetic one."""
    before = resolve_origin(record)
    if before == SYNTHETIC:
        return (
            record if record.origin == SYNTHETIC else dataclasses.replace(record, origin=SYNTHETIC)
        )
    meta = {**record.meta, "origin_before": before}
    return dataclasses.replace(record, origin=SYNTHETIC, meta=meta)


def derived_origin(origins: Iterable[str]) -> str:
    """The origin of a record built by templates from records of these origins: synthetic if
    any of them is (model text stays model text), else converted."""
    return SYNTHETIC if SYNTHETIC in set(origins) else CONVERTED
