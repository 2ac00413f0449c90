"""`iptkit export`: the xcit example run (DirectRunner, tiny chat model) as messages, ShareGPT
and Alpaca, JSONL and Parquet (read back with pyarrow), with its dataset card; and what is
never overwritten."""

import gzip
import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import run_cli

from iptkit.pipelines.export import ExportError, conversation, export


def _output(run: Path) -> list[dict]:
    rows = []
    for part in sorted((run / "output").glob("*.jsonl.gz")):
        rows += [json.loads(line) for line in gzip.decompress(part.read_bytes()).splitlines()]
    return rows


def test_messages_parquet_has_the_released_schema_and_every_record(xcit_example_run, tmp_path):
    out = tmp_path / "messages"
    code = run_cli("export", xcit_example_run, "--format", "messages", "--out", out, "--parquet")
    assert code == 0
    table = pq.read_table(out / "data.parquet")
    # lmsys-chat-1m-synth / LMSYS-Chat-1M: conversation_id, conversation [{role, content}].
    assert table.schema.field("conversation").type.value_type.names == ["role", "content"]
    rows = table.to_pylist()
    records = {r["id"]: r for r in _output(xcit_example_run)}
    exported = [r for r in records.values() if r["kind"] == "instruction" and r["pairs"]]
    assert len(rows) == len(exported) >= 10
    for row in rows:
        record = records[row["conversation_id"]]
        assert row["conversation"] == conversation(record)
        history = record["meta"].get("history") or []
        turns = row["conversation"][len(history) :]  # a ShareGPT system prompt comes first
        assert [t["role"] for t in turns][:2] == ["user", "assistant"]
        assert turns[0]["content"] == record["pairs"][0]["instruction"]
        assert turns[1]["content"] == record["pairs"][0]["response"]
        assert (row["language"], row["origin"], row["category"]) == (
            record["lang"], record["origin"], record["category"],
        )  # fmt: skip
    # The card counts what was exported, by typology and language, and names the spec hash.
    card = (out / "README.md").read_text(encoding="utf-8")
    stats = json.loads((xcit_example_run / "stats.json").read_text())
    assert stats["spec_hash"] in card
    assert f"records exported: {len(rows)}" in card
    for origin, n in Counter(r["origin"] for r in exported).items():
        assert f"| {origin} | {n} |" in card
    for lang, n in Counter(r["lang"] for r in exported).items():
        assert f"| {lang} | {n} |" in card
    skipped = len(records) - len(rows)
    assert ("- none" in card) == (skipped == 0)


def test_sharegpt_and_alpaca_jsonl(xcit_example_run, tmp_path):
    share, _, tally = export(str(xcit_example_run), "sharegpt", str(tmp_path / "s"))
    rows = [json.loads(line) for line in share.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == tally.exported and rows
    roles = Counter(tuple(t["from"] for t in r["conversations"]) for r in rows)
    assert set(roles) <= {("human", "gpt"), ("system", "human", "gpt")}
    assert roles[("system", "human", "gpt")] >= 1  # the ShareGPT log's system prompt
    alpaca, _, atally = export(str(xcit_example_run), "alpaca", str(tmp_path / "a"), parquet=True)
    table = pq.read_table(alpaca).to_pylist()
    assert table and set(table[0]) == {"instruction", "input", "output"}
    # Alpaca holds one exchange: the same records, less any with several pairs or a history.
    assert atally.exported + atally.skipped.get("multi_turn", 0) == tally.exported
    # Same run, same bytes.
    again, _, _ = export(str(xcit_example_run), "sharegpt", str(tmp_path / "s2"))
    assert again.read_bytes() == share.read_bytes()


def test_nothing_is_overwritten_without_the_flag(xcit_example_run, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "README.md").write_text("my own notes\n")
    (out / "keep.txt").write_text("untouched\n")
    assert run_cli("export", xcit_example_run, "--out", out) == 2
    assert "README.md exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "README.md").read_text() == "my own notes\n" and not (out / "data.jsonl").exists()
    assert run_cli("export", xcit_example_run, "--out", out, "--overwrite") == 0
    assert (out / "README.md").read_text().startswith("---\n")
    assert (out / "keep.txt").read_text() == "untouched\n"


def test_a_folder_that_is_no_run_is_a_clear_error(tmp_path):
    with pytest.raises(ExportError, match="no stats.json"):
        export(str(tmp_path), "messages")
