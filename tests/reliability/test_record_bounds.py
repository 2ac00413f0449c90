"""Every stage bounds each record's work (issue 18, item 9): one size check in the stage base,
`max_record_chars` (default 10 M characters), turns a record too large for a stage into a
`record_too_large` reject of that stage before its work, whatever the stage's shape (record,
group or its own graph), and leaves records outside the stage's selection alone."""

import json
import textwrap

from conftest import run_cli

from iptkit.transforms.record import Record, record_chars
from iptkit.transforms.stage import Drop, Expand, stage_types
from iptkit.transforms.stage_config import MAX_RECORD_CHARS
from iptkit.transforms.stages.extract import ExtractConfig, extract


def test_record_chars_counts_text_pairs_and_meta_and_stops_at_the_limit():
    record = Record(
        id="a",
        source="s",
        text="x" * 10,
        pairs=[{"question": "q" * 5, "answer": "a" * 5}],
        meta={"k": ["v" * 20, {"deep": "d" * 30}], "n": 1},
    )
    full = record_chars(record, 10**9)
    assert full >= 10 + 10 + 20 + 30
    assert record_chars(record, full) == full and record_chars(record, full - 1) > full - 1
    # Past the limit the walk stops: a million list items are not all visited.
    huge = Record(id="b", source="s", text="x" * 10, meta={"items": ["y"] * 1_000_000})
    assert 50 < record_chars(huge, 50) < 1_000


def test_every_record_stage_has_the_bound_with_the_default():
    for name, cls in stage_types().items():
        assert cls.config_class.model_fields["max_record_chars"].default == MAX_RECORD_CHARS, name


def test_a_record_too_large_for_a_stage_is_its_reject_and_the_ledger_holds(tmp_path):
    texts = {
        "small": "A small document about rivers and the sea. " * 3,
        "medium": "A medium document about mountains and valleys. " * 40,  # ~1,900 chars
        "large": "A large document about forests and deserts. " * 100,  # ~4,500 chars
    }
    rows = [{"id": k, "text": v} for k, v in texts.items()]
    rows.append({"id": "other-large", "text": texts["large"].replace("large", "other")})
    (tmp_path / "web.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    (tmp_path / "other.jsonl").write_text(json.dumps(rows[3]) + "\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(
            """\
            seed: 1
            output: run
            sources:
              - {name: web, format: jsonl, path: web.jsonl, id_field: id}
              - {name: other, format: jsonl, path: other.jsonl, id_field: id}
            stages:
              - normalize: {max_record_chars: 3000, sources: [web]}
              - dedup_exact: {max_record_chars: 1000}
              - dedup_near: {}
            """
        )
    )
    run = tmp_path / "run"
    assert run_cli("run", spec, "--out", run) == 0
    stats = json.loads((run / "stats.json").read_text())
    stages = stats["stages"]
    # normalize bounds its own selection only: the other source's large record passes it.
    assert (stages["normalize"]["in"], stages["normalize"]["dropped"]) == (
        4,
        {"record_too_large": 1},
    )
    assert stages["dedup_exact"]["dropped"] == {"record_too_large": 2}
    assert stages["dedup_near"] == {**stages["dedup_near"], "in": 1, "out": 1}
    assert stats["violations"] == []
    rejects = {}
    for stage in ("normalize", "dedup_exact"):
        for line in (
            (run / "rejects" / stage / "part-00000-of-00001.jsonl").read_text().splitlines()
        ):
            r = json.loads(line)
            rejects[r["id"]] = (r["stage"], r["reason"], r["record"]["text"])
            assert "max_record_chars" in r["detail"]
    assert rejects == {
        "large": ("normalize", "record_too_large", texts["large"]),
        "medium": ("dedup_exact", "record_too_large", texts["medium"].strip()),  # normalized
        "other-large": ("dedup_exact", "record_too_large", rows[3]["text"]),
    }


def test_every_turn_with_its_history_is_bounded_before_it_is_built():
    """`turns: all` copies each turn's history into its record: the output grows with the
    square of the turns, so a long conversation is judged by what it would write."""
    turns = [
        {"role": r, "content": c}
        for _ in range(1500)
        for r, c in (("user", "hi"), ("assistant", "ok"))
    ]
    record = Record(id="c", source="s", text="hi", kind="instruction", meta={"conversation": turns})
    drop = extract(record, ExtractConfig(turns="all", max_record_chars=100_000))
    assert isinstance(drop, Drop) and drop.reason == "record_too_large"
    short = Record(
        id="d", source="s", text="hi", kind="instruction", meta={"conversation": turns[:6]}
    )
    assert len(extract(short, ExtractConfig(turns="all", max_record_chars=100)).records) == 3
    assert isinstance(extract(short, ExtractConfig(turns="all", max_record_chars=100)), Expand)
