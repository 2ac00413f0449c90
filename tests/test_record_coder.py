"""The coders that move records, rejects and chains between workers: exact round trips (lone
surrogates from undecodable input included), deterministic bytes, UTF-8 not ASCII escapes."""

from __future__ import annotations

import json

import apache_beam as beam

from iptkit.transforms.record import Record, Reject
from iptkit.transforms.stages.synthesize import Chain, MemberResult

BAD = b"bad \xff byte".decode("utf-8", "surrogateescape")  # how read keeps an undecodable byte
RECORD = Record(
    id=f"doc-{BAD}",
    source="web",
    text="日本語の文章です。" * 20 + BAD,
    lang="ja",
    lang_score=0.98,
    pairs=[{"instruction": "質問?", "response": "答え。"}],
    meta={"b": [1, 2.5, None], "a": {"ż": "ółć"}},
)


def coder(cls):
    return beam.coders.registry.get_coder(cls)


def test_a_record_and_a_reject_round_trip_exactly_with_deterministic_bytes():
    reject = Reject(RECORD.id, "web", "filters", "too_short", "detail", RECORD.to_dict())
    for cls, value in ((Record, RECORD), (Reject, reject)):
        c = coder(cls)
        assert c.is_deterministic()
        encoded = c.encode(value)
        assert c.decode(encoded) == value
        assert c.encode(c.decode(encoded)) == encoded


def test_non_ascii_text_travels_as_utf8_not_as_escapes():
    encoded = coder(Record).encode(RECORD)
    escaped = json.dumps(RECORD.to_dict(), sort_keys=True, separators=(",", ":")).encode()
    assert "日本語".encode() in encoded
    assert len(encoded) < 0.7 * len(escaped)


def test_a_chain_round_trips_with_its_members_and_results():
    chain = Chain("web|ja|0|3", [RECORD, RECORD], [MemberResult(pairs=RECORD.pairs, inherit=True)])
    c = coder(Chain)
    assert c.decode(c.encode(chain)) == chain
