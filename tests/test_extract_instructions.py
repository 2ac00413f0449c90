"""extract: turns, responses, moderation, redaction markers, origins and the per-resource cap,
on LMSYS- and ShareGPT-schema fixtures read by the real source reader; then whole runs through
extract and categorize on the DirectRunner with the ledger balanced."""

import gzip
import json
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from conftest import run_cli

from iptkit.hashing import seeded_int
from iptkit.transforms.reading.sources import SourceConfig, SourceFile, parse_file
from iptkit.transforms.record import Record
from iptkit.transforms.stage import Drop, Expand
from iptkit.transforms.stages.extract import (
    ExtractConfig,
    extract,
    split_over_cap,
)

DATA = Path(__file__).parent / "data"
LMSYS = DATA / "chats_extract_lmsys.jsonl"
SHAREGPT = DATA / "chats_extract_sharegpt.jsonl"


def read(path: Path, **source) -> dict[str, Record]:
    cfg = SourceConfig(name=path.stem, format="conversations", path=str(path), **source)
    with path.open("rb") as f:
        items = list(parse_file(cfg, SourceFile(cfg.name, str(path), path.name), f))
    assert all(isinstance(r, Record) for r in items)
    return {r.id: r for r in items}


@pytest.fixture(scope="module")
def lmsys():
    return read(LMSYS, id_field="conversation_id")


@pytest.fixture(scope="module")
def sharegpt():
    return read(SHAREGPT, id_field="id")


def records_of(result) -> list[Record]:
    if isinstance(result, Expand):
        return result.records
    assert isinstance(result, Record), result
    return [result]


def test_first_turn_with_its_response(lmsys):
    (rec,) = records_of(extract(lmsys["x01"], ExtractConfig()))
    assert rec.id == "x01" and rec.text.startswith("What is the difference between a list")
    assert rec.pairs == [
        {"instruction": rec.text, "response": lmsys["x01"].meta["conversation"][1]["content"]}
    ]
    assert rec.origin == "organic" and rec.meta["user_turn"] == 1
    assert "conversation" not in rec.meta and "history" not in rec.meta
    assert rec.meta["model"] == "vicuna-13b"  # the source's other fields stay


def test_first_turn_mode_gives_one_record_per_multi_turn_conversation(lmsys):
    (rec,) = records_of(extract(lmsys["x02"], ExtractConfig()))
    assert rec.text.startswith("Plan a three-day trip")
    (plain,) = records_of(extract(lmsys["x02"], ExtractConfig(keep_responses=False)))
    assert plain.pairs == [] and plain.text == rec.text


def test_every_turn_with_history(lmsys):
    result = extract(lmsys["x02"], ExtractConfig(turns="all"))
    assert isinstance(result, Expand) and result.reason == "user_turn"
    first, second, third = result.records
    assert [r.id for r in result.records] == ["x02", "x02#2", "x02#3"]
    assert second.text == "Which of those places need tickets booked in advance?"
    assert [t["role"] for t in second.meta["history"]] == ["user", "assistant"]
    assert second.pairs[0]["response"].startswith("None of them strictly")
    # The last user turn has no answer: an instruction without a pair.
    assert third.text.startswith("Thanks!") and third.pairs == []
    assert len(third.meta["history"]) == 4


def test_empty_later_user_turn_is_skipped(lmsys):
    records = records_of(extract(lmsys["x09"], ExtractConfig(turns="all")))
    assert [r.id for r in records] == ["x09", "x09#3"]
    assert records[1].text == "Yes: make it case-insensitive in JavaScript."


def test_system_prompt_goes_to_history(sharegpt):
    (rec,) = records_of(extract(sharegpt["s01"], ExtractConfig()))
    assert rec.text.startswith("How long should I rest a steak")
    assert rec.meta["history"] == [
        {"role": "system", "content": "You are a friendly cooking assistant."}
    ]


def test_sharegpt_turns(sharegpt):
    records = records_of(extract(sharegpt["s04"], ExtractConfig(turns="all")))
    assert [(r.id, r.text, bool(r.pairs)) for r in records] == [
        ("s04", "Translate 'good morning' into French.", True),
        ("s04#2", "And into German?", False),
    ]


def test_redaction_markers_are_kept(lmsys):
    (rec,) = records_of(extract(lmsys["x06"], ExtractConfig()))
    assert "NAME_1" in rec.text and "NAME_3" in rec.pairs[0]["response"]
    assert rec.meta["redacted"] is True


def test_moderation_flags(lmsys, sharegpt):
    default = ExtractConfig()
    drop = extract(lmsys["x03"], default)
    assert drop == Drop("moderation_flagged", "message 1: harassment")
    # Flagged for a category not selected: passes.
    assert isinstance(extract(lmsys["x05"], default), Drop)
    assert isinstance(extract(lmsys["x05"], ExtractConfig(flag_categories=["harassment"])), Record)
    # Not flagged, but a high violence score: a score threshold catches it.
    assert isinstance(extract(lmsys["x04"], default), Record)
    drop = extract(lmsys["x04"], ExtractConfig(max_score=0.5))
    assert drop.reason == "moderation_flagged" and drop.detail == "message 1: violence 0.620"
    # Moderation off.
    assert isinstance(extract(lmsys["x03"], ExtractConfig(drop_flagged=False)), Record)
    # A per-conversation flag field (WildChat's `toxic`).
    assert isinstance(extract(sharegpt["s05"], default), Record)
    drop = extract(sharegpt["s05"], ExtractConfig(flag_fields=["toxic"]))
    assert drop.reason == "moderation_flagged"


def test_missing_or_broken_moderation(lmsys):
    drop = extract(lmsys["x08"], ExtractConfig())
    assert drop.reason == "bad_moderation" and "openai_moderation is str" in drop.detail
    assert isinstance(extract(lmsys["x10"], ExtractConfig()), Record)
    assert extract(lmsys["x10"], ExtractConfig(require_moderation=True)).reason == "no_moderation"


def test_moderation_needs_the_field_in_meta():
    # A source that keeps no meta fields leaves nothing to check: require_moderation says so.
    records = read(LMSYS, id_field="conversation_id", meta_fields="none")
    assert isinstance(extract(records["x03"], ExtractConfig()), Record)
    assert extract(records["x03"], ExtractConfig(require_moderation=True)).reason == "no_moderation"


def test_declared_origin_wins(tmp_path):
    records = read(LMSYS, id_field="conversation_id", origin="converted")
    (rec,) = records_of(extract(records["x01"], ExtractConfig()))
    assert rec.origin == "converted"


def test_cap_keeps_the_smallest_hashes_whatever_the_order():
    records = [Record(id=f"r{i}", source="qa", text=f"q{i}", origin="converted") for i in range(25)]
    expected = sorted(records, key=lambda r: seeded_int(7, r.id, size=16))[:10]

    def run(items):
        out = list(split_over_cap("qa", items, 10, 7))
        kept = [r.id for r in out if isinstance(r, Record)]
        rejects = [(r, drop) for r, drop in (o for o in out if isinstance(o, tuple))]
        return sorted(kept), rejects

    kept, rejects = run(records)
    assert kept == sorted(r.id for r in expected)
    assert run(list(reversed(records)))[0] == kept
    assert len(rejects) == 15 and {drop.reason for _, drop in rejects} == {"over_cap"}
    assert rejects[0][1].detail.startswith("resource qa: 25 records, cap 10")
    assert rejects[0][0].text.startswith("q")
    # Another seed, another choice.
    other = sorted(r.id for r in split_over_cap("qa", records, 10, 8) if isinstance(r, Record))
    assert other != kept


def _spec(tmp_path: Path, stages: str) -> Path:
    converted = tmp_path / "qa.jsonl"
    rows = [
        {"id": f"qa-{i}", "text": f"Question {i}: what is {i} plus {i}?", "dataset": f"d{i % 2}"}
        for i in range(30)
    ]
    converted.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        seed: 11
        output: {tmp_path / "run"}
        sources:
          - {{name: lmsys, format: conversations, path: "{LMSYS}", id_field: conversation_id}}
          - {{name: sharegpt, format: conversations, path: "{SHAREGPT}", id_field: id}}
          - {{name: qa, format: jsonl, path: qa.jsonl, id_field: id, kind: instruction,
              origin: converted}}
        stages:
        """)
        + textwrap.indent(textwrap.dedent(stages), "  ")
    )
    return spec


def _output(run: Path) -> list[dict]:
    rows = []
    for path in sorted((run / "output").glob("*.jsonl.gz")):
        rows += [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]
    return rows


def _rejects(run: Path, stage: str) -> list[dict]:
    rows = []
    for path in sorted((run / "rejects" / stage).glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines()]
    return rows


def test_pipeline_extract_and_categorize(tmp_path):
    spec = _spec(
        tmp_path,
        """\
        - extract: {turns: all, max_per_resource: 10, flag_fields: [toxic]}
        - categorize: {}
        """,
    )
    assert run_cli("run", spec) == 0
    run = tmp_path / "run"
    stats = json.loads((run / "stats.json").read_text())
    assert stats["violations"] == []
    ext = stats["stages"]["extract"]
    # 10 LMSYS + 5 ShareGPT + 30 converted in; x02 (+2), x07 (+1), x09 (+1), s02 (+1), s04 (+1)
    # add turns; x03 (flagged), x05 (flagged), x08 (bad moderation), s05 (toxic) are dropped,
    # and 20 of the 30 converted questions are over the cap.
    assert ext["in"] == 45
    assert ext["added"] == {"user_turn": 6}
    assert ext["dropped"] == {"bad_moderation": 1, "moderation_flagged": 3, "over_cap": 20}
    assert ext["out"] == 45 + 6 - 24
    assert stats["stages"]["categorize"] == {"in": 27, "out": 27, "dropped": {}}

    rows = _output(run)
    assert len(rows) == 27 and len({r["id"] for r in rows}) == 27
    assert Counter(r["origin"] for r in rows) == {"organic": 17, "converted": 10}
    by_id = {r["id"]: r for r in rows}
    assert by_id["x07#2"]["category"] == "math" and by_id["x07#2"]["lang"] is None
    assert by_id["x09"]["category"] == "coding"
    assert by_id["x06"]["text"].startswith("Write a birthday message for NAME_1")
    assert all(r["category"] in ("coding", "general", "math", "reasoning") for r in rows)
    over = _rejects(run, "extract")
    assert Counter(r["reason"] for r in over)["over_cap"] == 20
    assert {r["id"] for r in over if r["reason"] == "moderation_flagged"} == {"x03", "x05", "s05"}


def test_pipeline_is_deterministic_and_cap_per_resource_field(tmp_path):
    stages = """\
        - extract: {max_per_resource: 4, resource_field: dataset}
        """
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    for where in (first, second):
        assert run_cli("run", _spec(where, stages)) == 0
    a, b = _output(first / "run"), _output(second / "run")
    assert a == b
    qa = [r for r in a if r["source"] == "qa"]
    assert Counter(r["meta"]["dataset"] for r in qa) == {"d0": 4, "d1": 4}
