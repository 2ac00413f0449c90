"""Property-based fuzzing of the readers (issue 18, "Prove it"): random bytes, invalid UTF-8
anywhere (ids, meta keys and values, text), wrong types, nulls, deeply nested records, zero-width
and bidi characters, every Parquet logical type. For every input: no exception, every item of a
file is a record or a reject with a known reason, every line is accounted for, and every record
and reject encodes as strict UTF-8 JSON. A few whole runs on the DirectRunner check the ledger
and every file written.

Bounded for CI: example counts are fixed, and `derandomize` makes every run draw the same
examples, so a failure reproduces. The whole module takes well under a minute.
"""

import datetime as dt
import gzip
import io
import json
import math
import tempfile
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from conftest import files_under, run_cli
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from iptkit.transforms.reading.read import DUPLICATE_ID
from iptkit.transforms.reading.sources import SourceConfig, SourceFile, parse_located
from iptkit.transforms.record import Record, Reject, encode_line

READ_REASONS = {
    "bad_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "empty_text",
    "bad_conversation",
    "unreadable_file",
    "unreadable_row_group",
    "bad_id",
    "too_deep",
    DUPLICATE_ID,
}
FAST = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# A placeholder character that the line renderer swaps for bytes that are not UTF-8, so invalid
# bytes land inside JSON strings: ids, keys, meta values, text.
HOLE = "\ue000"
BAD_BYTES = [b"\xff", b"\x80", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe9t\xe9"]
ODD_CHARS = "\u200b\u200c\u200d\u2060\ufeff\u202e\u202d\u2066\u2069\u00ad\x00\x1f\u2028\U0001f600"
texts = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(ODD_CHARS + HOLE * 3))
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | texts
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def rows(draw) -> dict:
    row = draw(st.dictionaries(texts, json_values, max_size=3))
    if draw(st.booleans()):
        row["text"] = draw(texts | json_values)
    if draw(st.booleans()):
        row["id"] = draw(st.sampled_from(["42", "x", ""]) | st.integers(-3, 3) | texts | scalars)
    if draw(st.integers(0, 5)) == 0:
        depth = draw(st.integers(50, 3000))
        row["deep"] = json.loads("[" * depth + "]" * depth) if depth < 900 else "[" * depth
    if draw(st.integers(0, 5)) == 0:
        row["conversation"] = draw(
            st.lists(st.fixed_dictionaries({"role": texts | scalars, "content": texts}), max_size=3)
        )
    return row


@st.composite
def lines(draw) -> bytes:
    """One line of a JSONL file: a rendered row with invalid bytes swapped in, raw bytes, a deep
    nesting that only parses as far as Python lets it, or a blank line."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=40)).replace(b"\n", b" ")
    if kind == 1:
        depth = draw(st.integers(100, 50_000))
        return b'{"text": "t", "m": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == 2:
        return draw(st.sampled_from([b"", b"  ", b"\r", b"{", b"[]", b"null", b'"s"']))
    row = draw(rows())
    text = json.dumps(row, ensure_ascii=draw(st.booleans()))
    data = text.encode("utf-8", "surrogatepass")
    while HOLE.encode() in data:
        data = data.replace(HOLE.encode(), draw(st.sampled_from(BAD_BYTES)), 1)
    return data.replace(b"\n", b"\\n")


def check_item(item) -> None:
    """A record or a reject with a known reason, and strict UTF-8 JSON when written."""
    assert isinstance(item, (Record, Reject)), item
    if isinstance(item, Reject):
        assert item.reason in READ_REASONS and item.stage == "read", item.reason
    else:
        assert isinstance(item.text, str) and item.text.strip()
        item.id.encode("utf-8")  # an id is always Unicode text
    line = encode_line(item.to_dict())
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    json.loads(line.decode("utf-8"), parse_constant=lambda name: math.nan / 0)


def parse_all(cfg: SourceConfig, data: bytes, name: str) -> list:
    file = SourceFile(cfg.name, f"/fuzz/{name}", name)
    located = list(parse_located(cfg, file, io.BytesIO(data)))
    for _, default_id, _, item in located:
        check_item(item)
        default_id.encode("utf-8")
    return located


@FAST
@given(body=st.lists(lines(), max_size=12), id_field=st.sampled_from([None, "id"]))
def test_jsonl_every_line_is_a_record_or_a_reject(body, id_field):
    data = b"\n".join(body)
    cfg = SourceConfig(name="f", format="jsonl", path="x", id_field=id_field)
    located = parse_all(cfg, data, "f.jsonl")
    assert len(located) == len([x for x in data.split(b"\n") if x.strip()])
    assert [n for n, *_ in located] == sorted({n for n, *_ in located})
    # The same lines gzip-compressed give the same items.
    again = parse_all(cfg, gzip.compress(data, mtime=0), "f.jsonl.gz")

    def summary(items):
        return [(getattr(i, "reason", None), getattr(i, "text", None)) for *_, i in items]

    assert summary(again) == summary(located)


@FAST
@given(body=st.lists(lines(), max_size=6), dialect=st.sampled_from(["auto", "lmsys", "sharegpt"]))
def test_conversations_every_line_is_a_record_or_a_reject(body, dialect):
    data = b"\n".join(body)
    cfg = SourceConfig(name="c", format="conversations", path="x", dialect=dialect)
    assert len(parse_all(cfg, data, "c.jsonl")) == len([x for x in data.split(b"\n") if x.strip()])


@FAST
@given(
    data=st.binary(max_size=300) | lines(),
    name=st.sampled_from(["r.jsonl", "r.jsonl.gz", "r.jsonl.zst", "r.txt", "r.parquet"]),
)
def test_random_bytes_never_raise(data, name):
    fmt = {"txt": "text", "parquet": "parquet"}.get(name.split(".")[1], "jsonl")
    for split in ["file", "paragraph"] if fmt == "text" else [None]:
        cfg = SourceConfig(name="r", format=fmt, path="x", split=split)
        parse_all(cfg, data, name)


ARROW_COLUMNS = {
    "int64": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "float64": (pa.float64(), st.floats(allow_nan=True, allow_infinity=True)),
    "string": (pa.string(), texts.map(lambda t: t.replace(HOLE, "\ufffd"))),
    "binary": (pa.binary(), st.binary(max_size=8)),
    "bool": (pa.bool_(), st.booleans()),
    "timestamp": (pa.timestamp("us"), st.datetimes(dt.datetime(1, 1, 1), dt.datetime(9999, 1, 1))),
    "timestamp_tz": (
        pa.timestamp("ms", tz="UTC"),
        st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(2200, 1, 1), timezones=st.just(dt.UTC)),
    ),
    "date": (pa.date32(), st.dates()),
    "time": (pa.time64("us"), st.times()),
    "decimal": (pa.decimal128(12, 3), st.decimals(-(10**8), 10**8, places=3, allow_nan=False)),
    "duration": (pa.duration("s"), st.timedeltas(dt.timedelta(days=-999), dt.timedelta(days=999))),
    "list": (pa.list_(pa.int32()), st.lists(st.integers(-(2**31), 2**31 - 1), max_size=3)),
    "struct": (
        pa.struct([("a", pa.string()), ("b", pa.float32())]),
        st.fixed_dictionaries({"a": st.text(max_size=4), "b": st.floats(width=32)}),
    ),
    "map": (
        pa.map_(pa.string(), pa.int8()),
        st.dictionaries(st.text(max_size=3), st.integers(-128, 127), max_size=2).map(
            lambda d: list(d.items())
        ),
    ),
}


@st.composite
def parquet_files(draw) -> tuple[bytes, int, bool]:
    """A Parquet file of random columns and row groups, its row count, and whether four of its
    bytes were then overwritten (anywhere: pages, footer, row counts)."""
    n = draw(st.integers(0, 12))
    names = draw(st.lists(st.sampled_from(sorted(ARROW_COLUMNS)), max_size=6, unique=True))
    columns = {}
    for name in names:
        arrow_type, values = ARROW_COLUMNS[name]
        columns[name] = pa.array(
            draw(st.lists(st.none() | values, min_size=n, max_size=n)), arrow_type
        )
    text_type = draw(st.sampled_from(["string", "int64", "binary", None]))
    if text_type:
        arrow_type, values = ARROW_COLUMNS[text_type]
        columns["text"] = pa.array(
            draw(st.lists(st.none() | values, min_size=n, max_size=n)), arrow_type
        )
    table = pa.table(columns) if columns else pa.table({"empty": pa.array([None] * n, pa.null())})
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=draw(st.integers(1, 5)))
    data = bytearray(buf.getvalue())
    scribbled = draw(st.booleans()) and len(data) > 12
    if scribbled:
        start = draw(st.integers(4, len(data) - 9))
        data[start : start + 4] = draw(st.binary(min_size=4, max_size=4))
    return bytes(data), n, scribbled


@FAST
@given(parquet_files(), st.sampled_from([None, "int64", "string"]))
def test_parquet_every_logical_type_and_corruption(file, id_field):
    data, n, scribbled = file
    cfg = SourceConfig(name="p", format="parquet", path="x", id_field=id_field)
    located = parse_all(cfg, data, "p.parquet")
    if not scribbled:
        assert len(located) == n  # an intact file: one item per row, whatever its values


# ---------------------------------------------------------------------------------------------
# Whole runs: the ledger holds and every file written is strict UTF-8 JSON Lines.


def strict_jsonl(path: Path) -> int:
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8")
    rows = text.split("\n")  # not splitlines(): U+2028 and U+0085 are plain characters in JSON
    assert rows[-1] == "", f"{path}: the last line has no newline"
    for line in rows[:-1]:
        row = json.loads(line, parse_constant=lambda name: math.nan / 0)
        json.dumps(row, ensure_ascii=False).encode("utf-8")  # no lone surrogate in any string
    return len(rows) - 1


# No shrinking: a whole run takes seconds, and the failing example is printed as drawn.
@settings(max_examples=4, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))  # fmt: skip
@given(
    jsonl=st.lists(lines(), min_size=1, max_size=25),
    parquet=parquet_files(),
    ids=st.booleans(),
)
def test_whole_runs_balance_and_write_strict_utf8_json_lines(jsonl, parquet, ids):
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "a.jsonl").write_bytes(b"\n".join(jsonl))
        (base / "b.parquet").write_bytes(parquet[0])
        id_field = ", id_field: id" if ids else ""
        spec = base / "spec.yaml"
        spec.write_text(
            textwrap.dedent(f"""\
            seed: 5
            output: {base / "run"}
            output_shards: 2
            sources:
              - {{name: a, format: jsonl, path: a.jsonl{id_field}}}
              - {{name: b, format: parquet, path: b.parquet}}
            stages:
              - normalize: {{invalid_utf8: replace, save: true}}
              - filters: {{min_words: 1, min_chars: 1}}
              - dedup_exact: {{}}
            """)
        )
        assert run_cli("run", spec) == 0
        run = base / "run"
        stats = json.loads((run / "stats.json").read_text())
        assert stats["violations"] == []
        expected_a = len([x for x in b"\n".join(jsonl).split(b"\n") if x.strip()])
        assert stats["stages"]["read"]["in"] >= expected_a
        rows = {"output": 0, "rejects": 0}
        for name in files_under(run):
            if name.startswith(("output/", "rejects/", "data/")):
                count = strict_jsonl(run / name)
                top = name.split("/")[0]
                if top in rows:
                    rows[top] += count
        # Every record read ends in the output or in exactly one reject file.
        assert rows["output"] + rows["rejects"] == stats["stages"]["read"]["in"]
        assert rows["output"] == stats["output_records"]
