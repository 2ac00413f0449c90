"""Typology: declared origin wins, defaults by kind, synthetic marking, derived origins."""

import gzip
import json
import textwrap
from pathlib import Path

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


# ---------------------------------------------------------------------------------------------
# Every stage, walked: what it writes has the origin PLLuM's typology gives it.

# Stages that never write a record's text or pairs: what leaves them has its input's origin
# (preference's pair is the chosen candidate's record, so it has that candidate's origin).
KEEPERS = {
    "normalize", "langid", "filters", "dedup_exact", "dedup_near", "categorize",
    "decontaminate", "judge", "preference", "mix", "pack",
}  # fmt: skip
# Stages that write records, and what they write: a model (or the rule miner) -> synthetic;
# templates over others -> converted, or synthetic over machine-written text; extract fills
# the origin in by the rules (chat turns: organic).
WRITERS = {"extract", "synthesize", "xcit", "translate", "respond"}
CHATS = Path(__file__).parent / "data" / "parallel_chats_ja.jsonl"
WEB = Path(__file__).parents[1] / "pipelines" / "examples" / "data" / "web_en.jsonl.gz"


def test_every_registered_stage_is_classified():
    """A new stage must say whether it writes records (and get a check below) or not."""
    from iptkit.transforms.stage import stage_types

    assert set(stage_types()) == KEEPERS | WRITERS and not KEEPERS & WRITERS


def _saved(run: Path, stage: str) -> dict[str, dict]:
    rows = {}
    for path in sorted((run / "data" / stage).glob("*.jsonl.gz")):
        for line in gzip.decompress(path.read_bytes()).splitlines():
            row = json.loads(line)
            rows[row["id"]] = row
    return rows


@pytest.fixture(scope="module")
def walked(tmp_path_factory) -> Path:
    """The record stages of a run over organic web pages and organic chats with parallels,
    each stage's kept records saved."""
    from conftest import run_cli

    tmp = tmp_path_factory.mktemp("walk")
    stages = [
        "normalize: {save: true}",
        "langid: {save: true, kinds: [raw]}",
        "filters: {save: true}",
        "dedup_exact: {save: true}",
        "dedup_near: {save: true}",
        "extract: {save: true}",
        "categorize: {save: true}",
        "synthesize: {backend: rules, rounds: 2, save: true, kinds: [raw]}",
        "xcit: {native: en, save: true}",
    ]
    spec = tmp / "spec.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        seed: 3
        output: {tmp / "run"}
        sources:
          - {{name: web, format: jsonl, path: "{WEB}", kind: raw}}
          - {{name: ja, format: conversations, path: "{CHATS}", id_field: conversation_id,
              lang: ja}}
        stages:
        """)
        + "".join(f"  - {s}\n" for s in stages)
    )
    assert run_cli("run", spec) == 0
    return tmp / "run"


def test_record_stages_keep_or_assign_origins_in_a_run(walked):
    before = {}
    for stage in ("normalize", "langid", "filters", "dedup_exact", "dedup_near", "extract",
                  "categorize", "synthesize", "xcit"):  # fmt: skip
        rows = _saved(walked, stage)
        assert rows, stage
        for rid, row in rows.items():
            assert row["origin"] in ("organic", "converted", "synthetic"), (stage, rid)
            if stage in KEEPERS or rid in before and row["kind"] == before[rid]["kind"]:
                # Passed through (or, for a writer, not written): the origin it came with.
                if rid in before:
                    assert row["origin"] == before[rid]["origin"], (stage, rid)
                else:
                    assert row["origin"] == "organic", (stage, rid)  # web pages, chats
        before = rows
    # The rule miner's augmented texts are generated data (typology.py says why).
    augmented = [r for r in _saved(walked, "synthesize").values() if r["kind"] == "augmented"]
    assert augmented and {r["origin"] for r in augmented} == {"synthetic"}
    assert {r["meta"]["origin_before"] for r in augmented} == {"organic"}
    # X-CIT records: templates over organic parallels are converted, over a machine
    # translation synthetic (p2's English side is declared synthetic).
    built = {r["id"]: r for r in _saved(walked, "xcit").values() if "xcit" in r["meta"]}
    assert {r["origin"] for i, r in built.items() if i.startswith("p1#")} == {"converted"}
    assert {r["origin"] for i, r in built.items() if i.startswith("p2#")} == {"synthetic"}


def test_model_stages_mark_what_the_model_wrote_synthetic():
    """translate and respond write text with a model: synthetic, the input's origin kept in
    meta; judge only scores: the origin stays. (The same decisions run on real tiny models in
    test_llm_stages.py; here each stage's deciding function, on an organic instruction.)"""
    from iptkit.transforms.inference.core import Generation
    from iptkit.transforms.stages.judge import JudgeConfig, scored
    from iptkit.transforms.stages.respond import RespondConfig, responded
    from iptkit.transforms.stages.translate import TranslateConfig, translated

    rec = Record(
        id="c1", source="chats", text="How tall is Mount Fuji?", kind="instruction", lang="en",
        origin="organic", pairs=[{"instruction": "How tall is Mount Fuji?", "response": "3,776 m."}],
    )  # fmt: skip
    tcfg = TranslateConfig(model="/tmp")
    texts = {"text": "富士山の高さは？", "pairs[0].response": "3,776 m です。"}
    out = translated(rec, texts, "ja", "/tmp", 0, tcfg.model_spec(), 5, tcfg)
    assert out.origin == "synthetic" and out.meta["origin_before"] == "organic"
    cfg = RespondConfig(model="/tmp")
    answered = responded(rec, "3,776 m です。", cfg, cfg.model_spec(), 1, Generation("x"))
    assert answered.origin == "synthetic" and answered.meta["origin_before"] == "organic"
    judged = scored(rec, Generation("評価：[[8]]"), JudgeConfig(model="/tmp"))
    assert judged.origin == "organic"
