"""xcit: translation tasks both ways, think-native/answer-target chats, difficulty, and a
DirectRunner run from Japanese chat logs with English parallels through extract and xcit."""

import dataclasses
import gzip
import json
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from conftest import run_cli
from pydantic import ValidationError

from iptkit.transforms.reading.sources import SourceConfig, SourceFile, parse_file
from iptkit.transforms.record import Record
from iptkit.transforms.stage import Drop, Expand
from iptkit.transforms.stages.extract import ExtractConfig, extract
from iptkit.transforms.stages.xcit import XcitConfig, xcit
from iptkit.transforms.text.difficulty import length_structure

CHATS = Path(__file__).parent / "data" / "parallel_chats_ja.jsonl"


@pytest.fixture(scope="module")
def chats() -> dict[str, Record]:
    cfg = SourceConfig(
        name="ja", format="conversations", path=str(CHATS), id_field="conversation_id", lang="ja"
    )
    with CHATS.open("rb") as f:
        items = list(parse_file(cfg, SourceFile("ja", str(CHATS), CHATS.name), f))
    return {r.id: extract(r, ExtractConfig()) for r in items}


def test_translation_both_ways_and_think(chats):
    result = xcit(chats["p1"], XcitConfig())
    assert isinstance(result, Expand) and result.reason == "xcit"
    by_id = {r.id: r for r in result.records}
    assert list(by_id) == [
        "p1",
        "p1#xcit-tr0-en-ja",
        "p1#xcit-tr0-ja-en",
        "p1#xcit-tr1-en-ja",
        "p1#xcit-tr1-ja-en",
        "p1#xcit-think",
    ]
    to_ja = by_id["p1#xcit-tr0-en-ja"]
    assert to_ja.text == (
        "Translate the following English text into Japanese.\n\n"
        "List three differences between cats and dogs."
    )
    assert to_ja.pairs[0]["response"] == "猫と犬の違いを三つ挙げてください。"
    assert to_ja.lang == "ja" and to_ja.category is None
    to_en = by_id["p1#xcit-tr0-ja-en"]
    assert to_en.text.startswith("次の日本語の文章を英語に翻訳してください。\n\n猫と犬")
    assert to_en.pairs[0]["response"] == "List three differences between cats and dogs."
    assert by_id["p1#xcit-tr1-en-ja"].pairs[0]["response"].startswith("1. 猫は単独で")
    think = by_id["p1#xcit-think"]
    assert think.text == "猫と犬の違いを三つ挙げてください。" and think.lang == "ja"
    response = think.pairs[0]["response"]
    assert response.index("List three") < response.index("1. Cats") < response.index("1. 猫")
    assert think.meta["xcit"] == {
        "task": "think",
        "native_lang": "en",
        "target_lang": "ja",
        "segment": "pairs[0]",
        "from": "p1",
    }
    assert [r.meta["xcit"]["segment"] for r in result.records[1:5]] == [
        "text", "text", "pairs[0].response", "pairs[0].response",
    ]  # fmt: skip
    # Organic on both sides: template-built records are converted; the input stays organic.
    assert think.origin == "converted" and by_id["p1"].origin == "organic"
    assert all(isinstance(r.meta["difficulty"], float) for r in result.records)


def test_machine_translated_side_makes_built_records_synthetic(chats):
    result = xcit(chats["p2"], XcitConfig())
    assert {r.origin for r in result.records[1:]} == {"synthetic"}


def test_options_select_tasks_and_directions(chats):
    only = xcit(chats["p1"], XcitConfig(tasks=["think"], keep_input=False))
    assert isinstance(only, Record) and only.id == "p1#xcit-think"
    one_way = xcit(chats["p1"], XcitConfig(tasks=["translation"], directions="to_target"))
    assert [r.id for r in one_way.records] == ["p1", "p1#xcit-tr0-en-ja", "p1#xcit-tr1-en-ja"]
    texts_only = xcit(chats["p1"], XcitConfig(tasks=["translation"], translate_responses=False))
    assert len(texts_only.records) == 3


def test_pairs_that_are_not_translations_of_each_other_are_never_paired(chats):
    """respond replaced the Japanese side's response (pairs_aligned: false): that answer
    translates nothing, so only the texts, which are translations, make tasks."""
    link = {**chats["p1"].meta["parallel"], "pairs_aligned": False}
    fresh = dataclasses.replace(chats["p1"], meta={**chats["p1"].meta, "parallel": link})
    result = xcit(fresh, XcitConfig())
    assert [r.id for r in result.records] == ["p1", "p1#xcit-tr0-en-ja", "p1#xcit-tr0-ja-en"]
    # Pairs of different lengths cannot be matched one to one either.
    more = {**chats["p1"].meta["parallel"]}
    more["pairs"] = more["pairs"] * 2
    uneven = dataclasses.replace(chats["p1"], meta={**chats["p1"].meta, "parallel": more})
    assert len(xcit(uneven, XcitConfig()).records) == 3


def test_text_only_parallel_gives_translation_tasks_only(chats):
    result = xcit(chats["p3"], XcitConfig())
    assert [r.id for r in result.records] == ["p3", "p3#xcit-tr0-en-ja", "p3#xcit-tr0-ja-en"]


def test_bad_links_are_rejects_and_plain_records_pass(chats):
    assert xcit(chats["p4"], XcitConfig()).reason == "no_native_side"
    drop = xcit(chats["p5"], XcitConfig())
    assert isinstance(drop, Drop) and drop.reason == "bad_parallel"
    plain = xcit(chats["p6"], XcitConfig())
    assert isinstance(plain, Record) and plain.id == "p6" and "difficulty" in plain.meta
    # Polish native, but no Polish prompt: named in the reject.
    drop = xcit(chats["p4"], XcitConfig(native="pl"))
    assert drop == Drop("no_prompt", "no translation prompt in pl; add one under prompts")


def test_prompt_and_template_options_are_checked():
    with pytest.raises(ValidationError, match="needs {text}"):
        XcitConfig(prompts={"en": {"template": "Translate {source} to {target}", "names": {}}})
    with pytest.raises(ValidationError, match="think_template needs"):
        XcitConfig(think_template="{native_response}")


def test_difficulty_grows_with_length_and_structure():
    short = length_structure("How tall is Mount Fuji?")
    longer = length_structure("How tall is Mount Fuji, and how long does the climb take?")
    code = length_structure(
        "How tall is Mount Fuji, and how long does the climb take?\n```\nprint(3776)\n```"
    )
    listed = length_structure("Steps:\n1. a\n2. b\n3. c")
    assert short < longer < code and listed > length_structure("Steps: a b c")
    # An English sentence and its Japanese translation land close together.
    assert abs(length_structure("List three differences between cats and dogs.")
               - length_structure("猫と犬の違いを三つ挙げてください。")) < 1.0  # fmt: skip


def test_pipeline_extract_then_xcit(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        seed: 5
        output: {tmp_path / "run"}
        sources:
          - {{name: ja, format: conversations, path: "{CHATS}", id_field: conversation_id,
              lang: ja}}
        stages:
          - extract: {{}}
          - xcit: {{native: en}}
        """)
    )
    assert run_cli("run", spec) == 0
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert stats["violations"] == []
    row = stats["stages"]["xcit"]
    # p1, p2: 4 translations + think each; p3: 2 translations; p4, p5 rejected; p6 passes.
    assert row["in"] == 6
    assert row["added"] == {"xcit": 12}
    assert row["dropped"] == {"bad_parallel": 1, "no_native_side": 1}
    assert row["out"] == 6 + 12 - 2
    rows = []
    for path in sorted((tmp_path / "run" / "output").glob("*.jsonl.gz")):
        rows += [json.loads(x) for x in gzip.decompress(path.read_bytes()).splitlines()]
    assert len(rows) == 16 and all("difficulty" in r["meta"] for r in rows)
    tasks = Counter(r["meta"].get("xcit", {}).get("task") for r in rows)
    assert tasks == {"translation": 10, "think": 2, None: 4}
