"""Issue 18, items 1, 2, 4 and 5, on whole runs (real Beam pipelines, real Parquet files): a
hostile corpus neither crashes a run nor loses a record, every file written is strict UTF-8 JSON
Lines, and duplicate ids are found the same way on one worker and on several."""

import base64
import datetime as dt
import decimal
import gzip
import io
import json
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import files_under, run_cli


def strict_lines(path: Path) -> list[dict]:
    """A JSONL file's rows, read as strict readers do: UTF-8 with no error handler, RFC 8259 JSON
    (no NaN), no lone surrogates."""

    def no_constants(name: str):
        raise ValueError(f"{path}: {name} is not JSON")

    data = path.read_bytes()
    text = (gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8")
    assert text == "" or text.endswith("\n")
    lines = text.split("\n")[:-1]  # not splitlines(): U+2028 is a plain character in JSON
    rows = [json.loads(line, parse_constant=no_constants) for line in lines]
    for row in rows:
        no_lone_surrogates(row)
    return rows


def no_lone_surrogates(value) -> None:
    """Every string of a parsed row is Unicode text (a `\\udcff` escape would parse)."""
    if isinstance(value, str):
        value.encode("utf-8")
    elif isinstance(value, dict):
        for k, v in value.items():
            no_lone_surrogates(k)
            no_lone_surrogates(v)
    elif isinstance(value, list):
        for v in value:
            no_lone_surrogates(v)


def assert_strict_jsonl(run: Path) -> None:
    import pandas as pd

    written = [
        run / name
        for name in files_under(run)
        if name.startswith(("output/", "rejects/", "data/")) and ".jsonl" in name
    ]
    assert written
    for path in written:
        strict_lines(path)
        if path.stat().st_size:
            pd.read_json(path, lines=True, compression="infer", dtype=False)


def hostile_parquet(path: Path) -> None:
    """Three row groups of 4 rows: dates, decimals and binary in every row, a row without text,
    and row group 1 made unreadable (its pages overwritten)."""
    n = 12
    table = pa.table(
        {
            "doc": pa.array([40 + i for i in range(n)], pa.int64()),
            "text": [None if i == 1 else f"Parquet row {i} has a fine text." for i in range(n)],
            "when": pa.array([dt.datetime(2024, 1, 1 + i) for i in range(n)], pa.timestamp("ms")),
            "day": pa.array([dt.date(2024, 2, 1 + i) for i in range(n)]),
            "price": pa.array([decimal.Decimal(f"{i}.25") for i in range(n)], pa.decimal128(5, 2)),
            "blob": pa.array([bytes([i, 255]) for i in range(n)], pa.binary()),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=4, compression="snappy")
    data = bytearray(buf.getvalue())
    group = pq.ParquetFile(io.BytesIO(bytes(data))).metadata.row_group(1)
    for c in range(group.num_columns):
        col = group.column(c)
        start = col.dictionary_page_offset or col.data_page_offset
        data[start : start + col.total_compressed_size] = b"\xab" * col.total_compressed_size
    path.write_bytes(bytes(data))


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    hostile_parquet(data / "rows.parquet")
    lines = [
        b'{"id": "42", "text": "The string id 42 clashes with the integer 42 of rows.parquet."}',
        b'{"id": "x", "text": "Two records share the id x; this one comes first."}',
        b'{"id": "a\xffb", "text": "An id with a byte that is not UTF-8."}',
        b'{"id": "x", "text": "Two records share the id x; this one comes second."}',
        b'{"id": "m", "text": "Meta with invalid bytes.", "note": "caf\xe9", "k\xe9y": 1}',
        b'{"id": "nan", "text": "A NaN in meta.", "score": NaN}',
        b'{"id": "t", "text": "Text with a bad \xfe byte."}',
    ]
    (data / "lines.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        seed: 1
        output: {tmp_path / "run"}
        output_shards: 2
        sources:
          - {{name: rows, format: parquet, path: data/rows.parquet, id_field: doc}}
          - {{name: lines, format: jsonl, path: data/lines.jsonl, id_field: id}}
        stages:
          - normalize: {{save: true}}
        """)
    )
    return spec


def rows_of(run: Path, folder: str) -> list[dict]:
    return [row for path in sorted((run / folder).glob("*.jsonl*")) for row in strict_lines(path)]


def test_hostile_corpus_runs_loses_nothing_and_writes_strict_utf8_json(hostile):
    run = hostile.parent / "run"
    assert run_cli("run", hostile) == 0
    stats = json.loads((run / "stats.json").read_text())
    assert stats["violations"] == []
    assert stats["stages"]["read"] == {
        "in": 12 - 4 + 1 + 7,  # 8 readable rows, 1 reject for the lost row group, 7 lines
        "out": 11,
        "dropped": {
            "missing_field": 1,
            "unreadable_row_group": 1,
            "bad_id": 1,
            "duplicate_id": 2,
        },
    }
    assert_strict_jsonl(run)

    read = {(r["reason"], r["id"]): r for r in rows_of(run, "rejects/read")}
    # Item 1: the rejected Parquet row keeps its raw row, in explicit JSON forms.
    assert read["missing_field", "rows:rows.parquet:2"]["record"] == {
        "doc": 41,
        "text": None,
        "when": "2024-01-02T00:00:00",
        "day": "2024-02-02",
        "price": "1.25",
        "blob": {"$base64": base64.b64encode(b"\x01\xff").decode()},
    }
    # Item 5: the corrupt row group is one reject naming file and group; groups 0 and 2 are read.
    lost = read["unreadable_row_group", "rows:rows.parquet:row-group-1"]
    assert lost["detail"].startswith(
        f"{hostile.parent / 'data/rows.parquet'} row group 1 (rows 5-8) cannot be read"
    )
    kept = {r["id"]: r for r in rows_of(run, "output")}
    assert sorted(k for k in kept if k.isdigit()) == ["40", "42", "43", "48", "49", "50", "51"]
    assert kept["42"]["source"] == "rows" and kept["48"]["meta"]["day"] == "2024-02-09"
    # Item 4: duplicates are rejected, the first by source order, file and line is kept, and the
    # string "42" is not merged into the integer 42.
    dupes = {r["id"]: r for (reason, _), r in read.items() if reason == "duplicate_id"}
    assert sorted(dupes) == ["lines:lines.jsonl:1", "lines:lines.jsonl:4"]
    assert dupes["lines:lines.jsonl:1"]["record"]["text"].startswith("The string id 42")
    assert (
        "is also the id of " + str(hostile.parent / "data/rows.parquet") + " row 3"
        in (dupes["lines:lines.jsonl:1"]["detail"])
    )
    assert kept["x"]["text"].endswith("this one comes first.")
    # Item 2: an id that is not UTF-8 is a reject, not a crash; the raw line keeps its bytes.
    bad_id = read["bad_id", "lines:lines.jsonl:3"]
    assert base64.b64decode(bad_id["record"]["id"]["$invalid_utf8"]) == b"a\xffb"
    # Invalid bytes in meta reach the output only in the explicit form; NaN likewise.
    assert kept["m"]["meta"] == {
        "note": {"$invalid_utf8": base64.b64encode(b"caf\xe9").decode(), "replaced": "caf\ufffd"},
        "k\\xe9y": 1,
    }
    assert kept["nan"]["meta"] == {"score": {"$float": "NaN"}}
    # normalize rejects the text with a bad byte, keeping the original bytes.
    (text,) = rows_of(run, "rejects/normalize")
    assert base64.b64decode(text["record"]["text"]["$invalid_utf8"]).endswith(b"\xfe byte.")


def test_duplicate_ids_are_decided_the_same_on_several_workers(hostile):
    base = hostile.parent
    assert run_cli("run", hostile, "--out", base / "one") == 0
    args = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
    assert run_cli("run", hostile, "--out", base / "two", *args) == 0

    def outputs(run: Path) -> dict[str, bytes]:
        return {
            k: v
            for k, v in files_under(run).items()
            if k.startswith(("output/", "rejects/", "data/"))
        }

    assert outputs(base / "one") == outputs(base / "two")


def test_duplicate_ids_are_rejected_and_exact_duplicates_no_longer_both_survive(tmp_path):
    """Item 4 on its own (valid UTF-8 only): two records with one id both reached the output,
    and the integer 42 and the string "42" were silently the same id."""
    rows_a = [
        {"id": 42, "text": "An integer id in the first source, kept as the first 42."},
        {"id": "dup", "text": "The same text twice under one id."},
    ]
    rows_b = [
        {"id": "dup", "text": "The same text twice under one id."},
        {"id": "42", "text": "A string id 42 in the second source."},
        {"id": "solo", "text": "A record whose id nobody else has."},
    ]
    for name, rows in (("a", rows_a), ("b", rows_b)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        output: {tmp_path / "run"}
        sources:
          - {{name: b_first, format: jsonl, path: b.jsonl, id_field: id}}
          - {{name: a_second, format: jsonl, path: a.jsonl, id_field: id}}
        stages:
          - dedup_exact: {{}}
        """)
    )
    assert run_cli("run", spec) == 0
    run = tmp_path / "run"
    out = rows_of(run, "output")
    assert sorted((r["id"], r["source"]) for r in out) == [
        ("42", "b_first"),  # the first source in the spec wins, whatever the file names
        ("dup", "b_first"),
        ("solo", "b_first"),
    ]
    dupes = sorted((r["id"], r["reason"]) for r in rows_of(run, "rejects/read"))
    assert dupes == [("a_second:a.jsonl:1", "duplicate_id"), ("a_second:a.jsonl:2", "duplicate_id")]
    stats = json.loads((run / "stats.json").read_text())
    assert stats["stages"]["read"] == {"in": 5, "out": 3, "dropped": {"duplicate_id": 2}}
