"""Source parsing: every format, compression, and every kind of broken record, without Beam."""

import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from iptkit.transforms.reading.read import glob_base, source_files
from iptkit.transforms.reading.sources import SourceConfig, SourceFile, parse_file
from iptkit.transforms.record import Record, Reject


def parse(cfg: SourceConfig, data: bytes, rel: str = "f.jsonl") -> list:
    return list(parse_file(cfg, SourceFile(cfg.name, f"/d/{rel}", rel), io.BytesIO(data)))


def jsonl(*rows) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


def test_jsonl_records_ids_meta_and_every_broken_kind():
    cfg = SourceConfig(name="web", format="jsonl", path="x", lang="en")
    data = (
        jsonl(
            {"text": "one", "url": "u"},
            b"{broken",
            [1, 2],
            {"body": "x"},
            {"text": 3},
            {"text": "  "},
        )
        + b"\n"
        + jsonl({"text": "last"})
    )
    items = parse(cfg, data)
    assert [type(i).__name__ for i in items] == [
        "Record",
        "Reject",
        "Reject",
        "Reject",
        "Reject",
        "Reject",
        "Record",
    ]
    first, last = items[0], items[-1]
    assert first == Record(
        id="web:f.jsonl:1", source="web", text="one", lang="en", origin="organic", meta={"url": "u"}
    )
    assert last.id == "web:f.jsonl:8"  # the blank line 7 is no record but keeps numbering exact
    reasons = [(i.reason, i.id) for i in items if isinstance(i, Reject)]
    assert reasons == [
        ("bad_json", "web:f.jsonl:2"),
        ("not_an_object", "web:f.jsonl:3"),
        ("missing_field", "web:f.jsonl:4"),
        ("wrong_type", "web:f.jsonl:5"),
        ("empty_text", "web:f.jsonl:6"),
    ]
    missing = items[3]
    assert (
        missing.detail.startswith("/d/f.jsonl:4: no text field 'text'") and "body" in missing.detail
    )
    assert missing.stage == "read" and missing.record == {"body": "x"}
    assert items[1].record == "{broken"


def test_field_mapping_id_lang_category_and_meta_selection():
    cfg = SourceConfig(
        name="s",
        format="jsonl",
        path="x",
        text_field="body",
        id_field="doc",
        lang_field="lg",
        category_field="cat",
        meta_fields=["url"],
        kind="instruction",
        origin="converted",
    )
    (rec,) = parse(
        cfg, jsonl({"body": "b", "doc": 17, "lg": "ja", "cat": "math", "url": "u", "x": 1})
    )
    assert (rec.id, rec.text, rec.lang, rec.category, rec.kind, rec.origin, rec.meta) == (
        "17",
        "b",
        "ja",
        "math",
        "instruction",
        "converted",
        {"url": "u"},
    )
    (bad,) = parse(cfg, jsonl({"body": "b"}))
    assert bad.reason == "missing_field" and "id field 'doc'" in bad.detail
    none = SourceConfig(name="s", format="jsonl", path="x", meta_fields="none")
    assert parse(none, jsonl({"text": "t", "u": 1}))[0].meta == {}


@pytest.mark.parametrize("suffix", ["jsonl.gz", "jsonl.zst"])
def test_compressed_jsonl(suffix):
    cfg = SourceConfig(name="c", format="jsonl", path="x")
    raw = jsonl({"text": "a"}, {"text": "b"})
    data = gzip.compress(raw) if suffix.endswith("gz") else zstandard.ZstdCompressor().compress(raw)
    assert [r.text for r in parse(cfg, data, f"f.{suffix}")] == ["a", "b"]


def test_corrupt_archive_yields_what_it_had_then_one_reject():
    cfg = SourceConfig(name="c", format="jsonl", path="x")
    data = gzip.compress(jsonl(*({"text": f"line {i}"} for i in range(2000))))
    items = parse(cfg, data[: len(data) // 2], "f.jsonl.gz")
    assert all(isinstance(i, Record) for i in items[:-1]) and len(items) > 1
    assert items[-1].reason == "unreadable_file" and "after" in items[-1].detail


def test_byte_order_mark_on_first_line_is_ignored():
    cfg = SourceConfig(name="c", format="jsonl", path="x")
    assert [r.text for r in parse(cfg, b'\xef\xbb\xbf{"text": "a"}\n{"text": "b"}\n')] == ["a", "b"]


def test_invalid_utf8_survives_read_as_surrogates():
    cfg = SourceConfig(name="c", format="jsonl", path="x")
    (rec,) = parse(cfg, b'{"text": "ok \xff there"}\n')
    assert rec.text == "ok \udcff there"


def test_parquet_rows_nulls_and_types():
    table = pa.table(
        {
            "doc_id": ["a", "b", "c"],
            "content": ["x", None, "z"],
            "when": pa.array([1, 2, 3], pa.timestamp("s")),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    cfg = SourceConfig(
        name="p", format="parquet", path="x", text_field="content", id_field="doc_id"
    )
    items = parse(cfg, buf.getvalue(), "t.parquet")
    assert items[0].id == "a" and items[0].meta == {"when": "1970-01-01T00:00:01"}
    assert items[1].reason == "missing_field" and "/d/t.parquet row 2" in items[1].detail
    assert items[2].text == "z"


def test_text_paragraphs_and_whole_file():
    data = b"first para\nstill first\r\n\r\n  \n\nsecond\n\n\nthird\n"
    para = SourceConfig(name="t", format="text", path="x")
    items = parse(para, data, "doc.txt")
    assert [(r.id, r.text) for r in items] == [
        ("t:doc.txt:1", "first para\nstill first"),
        ("t:doc.txt:2", "second"),
        ("t:doc.txt:3", "third\n"),
    ]
    whole = SourceConfig(name="t", format="text", path="x", split="file")
    (rec,) = parse(whole, data, "doc.txt")
    assert rec.id == "t:doc.txt" and rec.text.startswith("first para\nstill first\n\n")
    (empty,) = parse(whole, b" \n", "e.txt")
    assert empty.reason == "empty_text"


def test_conversations_lmsys_and_sharegpt():
    cfg = SourceConfig(name="chat", format="conversations", path="x", id_field="conversation_id")
    lmsys = {
        "conversation_id": "c1",
        "model": "m",
        "language": "Japanese",
        "redacted": True,
        "openai_moderation": [{"flagged": True}],
        "conversation": [
            {"role": "user", "content": "こんにちは NAME_1"},
            {"role": "assistant", "content": "はい"},
        ],
    }
    share = {
        "id": "s1",
        "conversations": [
            {"from": "system", "value": "be brief"},
            {"from": "human", "value": "hi"},
            {"from": "gpt", "value": "hello"},
        ],
    }
    items = parse(
        cfg,
        jsonl(
            lmsys,
            {"conversation_id": "c2"},
            {"conversation_id": "c3", "conversation": [{"role": "user", "content": ""}]},
        ),
    )
    rec = items[0]
    assert (rec.id, rec.text, rec.kind) == ("c1", "こんにちは NAME_1", "instruction")
    assert rec.meta["conversation"][1] == {"role": "assistant", "content": "はい"}
    assert rec.meta["openai_moderation"] == [{"flagged": True}] and rec.meta["redacted"] is True
    assert rec.meta["language"] == "Japanese" and rec.meta["dialect"] == "lmsys"
    assert "conversation_id" not in rec.meta
    assert items[1].reason == "bad_conversation" and items[2].reason == "empty_text"
    sg = SourceConfig(name="sg", format="conversations", path="x", id_field="id")
    (rec,) = parse(sg, jsonl(share))
    assert rec.text == "hi" and [t["role"] for t in rec.meta["conversation"]] == [
        "system",
        "user",
        "assistant",
    ]
    (bad,) = parse(sg, jsonl({"id": "x", "conversations": [{"from": "alien", "value": "?"}]}))
    assert bad.reason == "bad_conversation" and "alien" in bad.detail


def test_source_options_checked_against_format():
    with pytest.raises(ValueError, match="'dialect' applies only"):
        SourceConfig(name="a", format="jsonl", path="x", dialect="lmsys")
    with pytest.raises(ValueError, match="'text_field' does not apply"):
        SourceConfig(name="a", format="text", path="x", text_field="t")
    with pytest.raises(ValueError):
        SourceConfig(name="bad name", format="jsonl", path="x")


def test_glob_matching_and_relative_names(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.jsonl", "a.jsonl", "sub/c.jsonl"):
        (tmp_path / name).write_text("{}\n")
    cfg = SourceConfig(name="s", format="jsonl", path="x")
    files = source_files(
        cfg, [f"{tmp_path}/*.jsonl", f"{tmp_path}/**.jsonl", f"{tmp_path}/a.jsonl"]
    )
    assert [f.rel for f in files] == ["a.jsonl", "b.jsonl", "sub/c.jsonl"]
    assert glob_base("gs://bucket/dir/*.jsonl") == "gs://bucket/dir/"
    assert glob_base("data/x.jsonl") == "data/"


# Issue 18: a hostile input never crashes the read, and every reject is JSON.


def parquet_bytes(table, **kwargs) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, **kwargs)
    return buf.getvalue()


def test_rejected_parquet_row_keeps_dates_decimals_and_binary_as_json():
    import datetime as dt
    import decimal

    table = pa.table(
        {
            "text": [None],
            "when": pa.array([dt.datetime(2024, 5, 1, 12, 30)], pa.timestamp("us")),
            "day": pa.array([dt.date(2024, 5, 1)]),
            "at": pa.array([dt.time(8, 15)]),
            "price": pa.array([decimal.Decimal("12.50")], pa.decimal128(6, 2)),
            "blob": pa.array([b"\x00\xff"], pa.binary()),
            "took": pa.array([dt.timedelta(seconds=90)], pa.duration("s")),
        }
    )
    cfg = SourceConfig(name="p", format="parquet", path="x")
    (bad,) = parse(cfg, parquet_bytes(table), "t.parquet")
    assert bad.reason == "missing_field"
    assert bad.record == {
        "text": None,
        "when": "2024-05-01T12:30:00",
        "day": "2024-05-01",
        "at": "08:15:00",
        "price": "12.50",
        "blob": {"$base64": "AP8="},
        "took": "0:01:30",
    }
    json.dumps(bad.to_dict(), allow_nan=False)  # plain JSON, nothing left to convert


def test_corrupt_parquet_row_group_is_one_reject_and_the_others_are_read():
    table = pa.table({"text": [f"row {i}" for i in range(30)]})
    data = bytearray(parquet_bytes(table, row_group_size=10, compression="snappy"))
    column = pq.ParquetFile(io.BytesIO(bytes(data))).metadata.row_group(1).column(0)
    start = column.dictionary_page_offset or column.data_page_offset
    data[start : start + column.total_compressed_size] = b"\xab" * column.total_compressed_size
    cfg = SourceConfig(name="p", format="parquet", path="x")
    items = parse(cfg, bytes(data), "c.parquet")
    kept = [i for i in items if isinstance(i, Record)]
    assert [r.text for r in kept] == [f"row {i}" for i in (*range(10), *range(20, 30))]
    assert kept[10].id == "p:c.parquet:21"  # rows keep their numbers after a lost group
    (bad,) = [i for i in items if isinstance(i, Reject)]
    assert (bad.id, bad.reason) == ("p:c.parquet:row-group-1", "unreadable_row_group")
    assert bad.detail.startswith("/d/c.parquet row group 1 (rows 11-20) cannot be read, its 10")


def test_ids_must_be_non_empty_utf8_strings_or_integers():
    cfg = SourceConfig(name="s", format="jsonl", path="x", id_field="id")
    items = parse(
        cfg,
        jsonl(
            b'{"text": "a", "id": "ok\xff"}',
            {"text": "b", "id": ""},
            {"text": "c", "id": 1.5},
            {"text": "d", "id": True},
            {"text": "e", "id": 42},
        ),
    )
    assert [(i.reason, i.id) for i in items[:4]] == [
        ("bad_id", "s:f.jsonl:1"),
        ("bad_id", "s:f.jsonl:2"),
        ("wrong_type", "s:f.jsonl:3"),
        ("wrong_type", "s:f.jsonl:4"),
    ]
    assert "not UTF-8 ('ok\\xff')" in items[0].detail and "drop id_field" in items[0].detail
    assert items[4].id == "42"


def test_deep_nesting_and_huge_numbers_are_rejects_not_crashes():
    cfg = SourceConfig(name="s", format="jsonl", path="x")
    deep = b'{"text": "t", "m": ' + b"[" * 150 + b"]" * 150 + b"}"
    deeper = b'{"text": "t", "m": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    huge = b'{"text": "t", "n": ' + b"9" * 5000 + b"}"
    items = parse(cfg, jsonl(deep, deeper, huge, {"text": "after"}))
    assert [getattr(i, "reason", None) for i in items] == ["too_deep", "too_deep", "bad_json", None]
    assert items[0].record == deep.decode() and items[-1].text == "after"
    shallow = b'{"text": "t", "m": ' + b"[" * 90 + b"]" * 90 + b"}"
    assert isinstance(parse(cfg, jsonl(shallow))[0], Record)


def test_encode_line_is_strict_utf8_json_with_explicit_forms():
    import base64
    import math

    from iptkit.transforms.record import encode_line, original_bytes

    row = {
        "text": "ok \udcff\udcfe there",
        "lone": "\ud800",
        "meta": {"k\udce9y": [math.nan, math.inf, -math.inf, 1.5], "b": b"\x01"},
    }
    line = encode_line(row)
    back = json.loads(line.decode("utf-8"))  # strict UTF-8
    assert back["text"] == {
        "$invalid_utf8": base64.b64encode(b"ok \xff\xfe there").decode(),
        "replaced": "ok \ufffd\ufffd there",
    }
    assert base64.b64decode(back["lone"]["$invalid_utf8"]) == b"\xed\xa0\x80"
    assert back["meta"]["k\\xe9y"] == [
        {"$float": "NaN"},
        {"$float": "Infinity"},
        {"$float": "-Infinity"},
        1.5,
    ]
    assert back["meta"]["b"] == {"$base64": "AQ=="}
    assert original_bytes("a\udc80b") == b"a\x80b"
    # A value JSON holds as it is is written as before: canonical, unescaped UTF-8.
    assert encode_line({"b": "é", "a": 1}) == '{"a":1,"b":"é"}\n'.encode()


def test_parquet_dates_beyond_python_range_do_not_crash_the_read():
    table = pa.table(
        {
            "text": ["a", "b"],
            "day": pa.array([3_000_000, 1], pa.date32()),  # year 10183, then 1970-01-02
            "days": pa.array([[3_000_000], []], pa.list_(pa.date32())),
        }
    )
    cfg = SourceConfig(name="p", format="parquet", path="x")
    first, second = parse(cfg, parquet_bytes(table), "d.parquet")
    assert first.meta == {
        "day": "10183-09-21",
        "days": {"$unconvertible": "list<element: date32[day]>"},
    }
    assert second.meta == {"day": "1970-01-02", "days": []}
