"""Typology: declared origin wins, defaults by kind, synthetic marking, derived origins."""

import pytest

from iptkit.transforms.reading.sources import SourceConfig, record_from_object
from iptkit.transforms.record import Record
from iptkit.transforms.typology import (
    derived_origin,
    mark_synthetic,
    resolve_origin,
    with_origin,
)


@pytest.mark.parametrize(
    "fmt, kind, declared, expected",
    [
        ("conversations", None, None, "organic"),
        ("conversations", None, "converted", "converted"),
        ("jsonl", None, None, "organic"),
        ("jsonl", "instruction", None, "organic"),
        ("jsonl", "tuning", None, "converted"),
        ("jsonl", "augmented", None, "synthetic"),
        ("jsonl", "instruction", "synthetic", "synthetic"),
    ],
)
def test_every_record_read_has_an_origin(fmt, kind, declared, expected):
    cfg = SourceConfig(name="s", format=fmt, path="x", kind=kind, origin=declared)
    obj = {"text": "hello", "conversation": [{"role": "user", "content": "hello"}]}
    if fmt != "conversations":
        del obj["conversation"]
    assert record_from_object(cfg, obj, "s:x:1", "x:1").origin == expected


def test_resolve_and_fill():
    rec = Record(id="1", source="s", text="t", kind="tuning")
    assert resolve_origin(rec) == "converted" and rec.origin is None
    assert with_origin(rec).origin == "converted"
    declared = Record(id="1", source="s", text="t", kind="tuning", origin="organic")
    assert with_origin(declared) is declared
    with pytest.raises(ValueError, match="origin 'human'"):
        resolve_origin(Record(id="1", source="s", text="t", origin="human"))


def test_mark_synthetic_keeps_what_it_was():
    rec = Record(id="1", source="s", text="t", kind="instruction", origin="organic")
    out = mark_synthetic(rec)
    assert out.origin == "synthetic" and out.meta == {"origin_before": "organic"}
    assert rec.origin == "organic" and rec.meta == {}  # the input is not changed
    assert mark_synthetic(out) is out


def test_derived_origin():
    assert derived_origin(["organic", "organic"]) == "converted"
    assert derived_origin(["organic", "synthetic"]) == "synthetic"
    assert derived_origin(["converted"]) == "converted"
