"""categorize: the rule classifier's accuracy on labelled English and Japanese instructions, and
the stage's handling of declared categories, names and responses.

Two sets, both written for this repository: categorize_labelled.jsonl (136 instructions, 34 per
category, half Japanese) was written before the rules and then used while writing them, so its
figure is optimistic; categorize_heldout.jsonl (40 instructions, 10 per category, half
Japanese) was written after the rules were frozen and never used to change them.
"""

import json
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from iptkit.transforms.record import Record
from iptkit.transforms.stages.categorize import (
    CATEGORIES,
    CategorizeConfig,
    classify,
    classify_record,
)

DATA = Path(__file__).parent / "data"


def load(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines()]


def accuracy(rows: list[dict]) -> tuple[float, dict[str, float]]:
    right, seen = Counter(), Counter()
    for row in rows:
        seen[row["lang"]] += 1
        right[row["lang"]] += classify(row["text"])[0] == row["category"]
    return sum(right.values()) / len(rows), {k: right[k] / seen[k] for k in seen}


def test_labelled_set_is_balanced():
    rows = load("categorize_labelled.jsonl")
    assert len(rows) >= 120
    assert Counter(r["category"] for r in rows) == dict.fromkeys(CATEGORIES, 34)
    assert Counter(r["lang"] for r in rows) == {"en": 68, "ja": 68}
    assert len({r["text"] for r in rows}) == len(rows)


def test_accuracy_on_the_labelled_set():
    # Measured: 0.978 overall (en 0.971, ja 0.985).
    overall, by_lang = accuracy(load("categorize_labelled.jsonl"))
    assert overall >= 0.95, overall
    assert min(by_lang.values()) >= 0.93, by_lang


def test_accuracy_on_the_held_out_set():
    # Measured: 0.75 overall (en 0.60, ja 0.90); chance is 0.25, all-general 0.25.
    rows = load("categorize_heldout.jsonl")
    assert Counter(r["category"] for r in rows) == dict.fromkeys(CATEGORIES, 10)
    overall, by_lang = accuracy(rows)
    assert overall >= 0.70, overall
    assert min(by_lang.values()) >= 0.55, by_lang


@pytest.mark.parametrize(
    "text, category",
    [
        ("```js\nconst x = 1;\n```\nWhy is this a syntax error?", "coding"),
        ("Pythonで辞書をソートしたい", "coding"),
        ("Solve 2x + 3 = 11", "math"),
        ("半径3cmの円の面積を求めて", "math"),
        ("Knights always tell the truth. Is A a knight?", "reasoning"),
        ("AはBより背が高い。誰が一番低い？", "reasoning"),
        ("Write an email to my landlord about the heating.", "general"),
        ("What is the weather like in spring?", "general"),
    ],
)
def test_examples(text, category):
    assert classify(text)[0] == category


def test_declared_category_wins_unless_distrusted():
    rec = Record(id="1", source="s", text="Solve 2x + 3 = 11", kind="instruction", category="qa")
    assert classify_record(rec, CategorizeConfig()).category == "qa"
    out = classify_record(rec, CategorizeConfig(trust_declared=False))
    assert out.category == "math" and out.meta["categorize"]["by"] == "rules"
    assert out.meta["categorize"]["scores"]["math"] > 0


def test_names_and_responses():
    rec = Record(
        id="1",
        source="s",
        text="How do I do this?",
        kind="instruction",
        pairs=[{"instruction": "How do I do this?", "response": "```python\nprint(1)\n```"}],
    )
    assert classify_record(rec, CategorizeConfig()).category == "coding"
    assert classify_record(rec, CategorizeConfig(names={"coding": "code"})).category == "code"
    assert classify_record(rec, CategorizeConfig(use_response=False)).category == "general"


def test_options_are_checked():
    with pytest.raises(ValidationError, match="names"):
        CategorizeConfig(names={"cooking": "food"})
    with pytest.raises(ValidationError, match="method"):
        CategorizeConfig(method="llm")
