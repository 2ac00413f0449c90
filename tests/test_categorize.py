"""categorize: the rule classifier's accuracy on labelled English, Japanese and Polish
instructions, the trained linear classifier and `iptkit categorize train`, the LLM method through
the inference layer (a tiny model served over real HTTP), and the stage's handling of declared
categories, names and responses.

Two sets, both written for this repository: categorize_labelled.jsonl (196 instructions, 49 per
category: 68 English, 68 Japanese, 60 Polish) was written before the rules and then used while
writing them (and is what the classifier trains on), so its rules figure is optimistic;
categorize_heldout.jsonl (100 instructions, 25 per category: 20 English, 20 Japanese, 60 Polish)
was never used to change the rules or to choose the classifier's settings. Its English and
Japanese items were written after the EN/JA rules were frozen; 40 of its Polish items were
written before the Polish rules (by the same hand, so not blind), 20 after them.
"""

import gzip
import json
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from llm_helpers import tiny_models
from openai_server import ServerProcess
from pydantic import ValidationError

from iptkit.pipelines.categorize_train import read_labelled
from iptkit.transforms.inference.chat_prompt import chat_prompt
from iptkit.transforms.inference.core import Generation
from iptkit.transforms.record import Record
from iptkit.transforms.stage import Drop
from iptkit.transforms.stages.categorize import (
    CATEGORIES,
    DEFAULT_PROMPT,
    UNPARSED,
    CategorizeConfig,
    classify,
    classify_record,
    from_answer,
    parse_label,
)
from iptkit.transforms.text.linear_classifier import LinearClassifier, train

DATA = Path(__file__).parent / "data"


def load(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines()]


def accuracy(rows: list[dict]) -> tuple[float, dict[str, float]]:
    right, seen = Counter(), Counter()
    for row in rows:
        seen[row["lang"]] += 1
        right[row["lang"]] += classify(row["text"])[0] == row["category"]
    return sum(right.values()) / len(rows), {k: right[k] / seen[k] for k in seen}


def test_labelled_sets_are_balanced_and_disjoint():
    rows = load("categorize_labelled.jsonl")
    assert Counter(r["category"] for r in rows) == dict.fromkeys(CATEGORIES, 49)
    assert Counter(r["lang"] for r in rows) == {"en": 68, "ja": 68, "pl": 60}
    assert len({r["text"] for r in rows}) == len(rows)
    held = load("categorize_heldout.jsonl")
    assert Counter(r["category"] for r in held) == dict.fromkeys(CATEGORIES, 25)
    assert Counter(r["lang"] for r in held) == {"en": 20, "ja": 20, "pl": 60}
    assert not {r["text"] for r in rows} & {r["text"] for r in held}


def test_accuracy_on_the_labelled_set():
    # Measured: 0.974 overall (en 0.971, ja 0.985, pl 0.967).
    overall, by_lang = accuracy(load("categorize_labelled.jsonl"))
    assert overall >= 0.95, overall
    assert min(by_lang.values()) >= 0.93, by_lang


def test_accuracy_on_the_held_out_set():
    # Measured: 0.81 overall (en 0.60, ja 0.90, pl 0.85); chance is 0.25, all-general 0.25.
    overall, by_lang = accuracy(load("categorize_heldout.jsonl"))
    assert overall >= 0.78, overall
    assert by_lang["pl"] >= 0.8 and min(by_lang.values()) >= 0.55, by_lang


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
        ("Jak w Pythonie odwrócić listę?", "coding"),
        ("Oblicz pole trójkąta o podstawie 6 cm i wysokości 4 cm.", "math"),
        ("Zagadka: co ma zęby, ale nie gryzie?", "reasoning"),
        ("Napisz życzenia urodzinowe dla mamy.", "general"),
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


def test_options_are_checked(tmp_path):
    with pytest.raises(ValidationError, match="names"):
        CategorizeConfig(names={"cooking": "food"})
    with pytest.raises(ValidationError, match="method"):
        CategorizeConfig(method="bayes")
    with pytest.raises(ValidationError, match="needs a model"):
        CategorizeConfig(method="llm")
    with pytest.raises(ValidationError, match="needs model"):
        CategorizeConfig(method="classifier")
    with pytest.raises(ValidationError, match="takes no model"):
        CategorizeConfig(model=str(tmp_path))
    with pytest.raises(ValidationError, match="is for method llm"):
        CategorizeConfig(backend="transformers", model=str(tmp_path))
    assert CategorizeConfig(method="llm", base_url="http://h:1/v1", model="m").backend == "openai"


# --- the trained classifier ------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The classifier `iptkit categorize train` writes from the labelled set."""
    out = tmp_path_factory.mktemp("classifier") / "categories.npz"
    data = Path(__file__).parent / "data"
    assert run_cli("categorize", "train", data / "categorize_labelled.jsonl", "--out", out) == 0
    return out


def test_classifier_beats_chance_per_language_on_the_held_out_set(trained):
    # Measured: 0.78 overall (en 0.75, ja 0.80, pl 0.783); the rules: 0.81 (en 0.60).
    model = LinearClassifier.from_bytes(trained.read_bytes())
    rows = load("categorize_heldout.jsonl")
    got = [label for label, _ in model.predict([r["text"] for r in rows])]
    right, seen = Counter(), Counter()
    for row, label in zip(rows, got, strict=True):
        seen[row["lang"]] += 1
        right[row["lang"]] += label == row["category"]
    assert sum(right.values()) / len(rows) >= 0.75
    assert all(right[lang] / seen[lang] >= 0.7 for lang in seen), (right, seen)


def test_classifier_training_is_deterministic_and_the_file_round_trips(trained):
    rows = load("categorize_labelled.jsonl")
    again = train([r["text"] for r in rows], [r["category"] for r in rows])
    assert again.to_bytes() == trained.read_bytes()
    loaded = LinearClassifier.from_bytes(trained.read_bytes())
    assert loaded.labels == tuple(sorted(CATEGORIES))
    texts = ["Napisz funkcję w Pythonie.", "半径3cmの円の面積は？"]
    assert np.array_equal(loaded.probabilities(texts), again.probabilities(texts))


def test_a_model_file_is_never_unpickled(tmp_path):
    import io

    buffer = io.BytesIO()
    np.savez(buffer, header=np.array([{"format": "x"}], dtype=object))  # needs pickle to load
    with pytest.raises(ValueError, match="not an iptkit classifier"):
        LinearClassifier.from_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="not an iptkit classifier"):
        LinearClassifier.from_bytes(b"garbage")


def test_cli_reports_both_methods_and_names_a_bad_line(tmp_path, trained, capsys):
    data = Path(__file__).parent / "data"
    out = tmp_path / "m.npz"
    args = ("categorize", "train", data / "categorize_labelled.jsonl", "--out", out)
    assert run_cli(*args, "--heldout", data / "categorize_heldout.jsonl", "--epochs", "300") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["heldout"]["rules"]["overall"] == 0.81
    assert report["heldout"]["classifier"]["overall"] >= 0.75
    assert out.read_bytes() == trained.read_bytes()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "category": "math"}\n\n{"text": "b", "category": "cooking"}\n')
    assert run_cli("categorize", "train", bad, "--out", tmp_path / "x.npz") == 1
    err = capsys.readouterr().err
    assert f"{bad}:3: field category is 'cooking'; use one of coding" in err
    assert not (tmp_path / "x.npz").exists()
    one = tmp_path / "one.jsonl"
    one.write_text('{"text": "a", "category": "math"}\n')
    with pytest.raises(ValueError, match="at least two categories"):
        read_labelled(one, CATEGORIES)


def test_classifier_labels_must_be_categories(tmp_path):
    other = tmp_path / "other.npz"
    other.write_bytes(train(["a b", "c d"], ["cats", "dogs"]).to_bytes())
    with pytest.raises(ValidationError, match="labels that are no category"):
        CategorizeConfig(method="classifier", model=str(other))


INSTRUCTIONS = [
    {"text": "Napisz funkcję w Pythonie, która sortuje listę.", "category": "x"},
    {"text": "半径5cmの円の面積を求めてください。"},
    {"text": "Write a short poem about the sea."},
    {"text": "Knights always tell the truth and knaves always lie. Who is who?"},
]


def run_categorize(tmp_path: Path, options: str) -> tuple[dict, list[dict], list[dict]]:
    """The categorize stage over INSTRUCTIONS (the first one declares a category) in a run."""
    data = tmp_path / "instructions.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in INSTRUCTIONS))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        seed: 5
        output: {tmp_path / "run"}
        sources:
          - {{name: asks, format: jsonl, path: {data}, kind: instruction, category_field: category}}
        stages:
          - categorize: {options}
        """)
    )
    assert run_cli("run", spec) == 0
    run = tmp_path / "run"
    stats = json.loads((run / "stats.json").read_text())
    assert stats["violations"] == []
    output = [
        json.loads(line)
        for path in sorted((run / "output").glob("*.jsonl.gz"))
        for line in gzip.decompress(path.read_bytes()).splitlines()
    ]
    rejects = [
        json.loads(line)
        for path in sorted((run / "rejects" / "categorize").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    return stats["stages"]["categorize"], output, rejects


def test_classifier_method_in_a_run(tmp_path, trained):
    ledger, output, _ = run_categorize(
        tmp_path, f"{{method: classifier, model: {trained}, trust_declared: false}}"
    )
    assert (ledger["in"], ledger["out"]) == (4, 4)
    by_text = {r["text"]: r for r in output}
    assert [by_text[r["text"]]["category"] for r in INSTRUCTIONS] == [
        "coding", "math", "general", "reasoning"
    ]  # fmt: skip
    for record in output:
        evidence = record["meta"]["categorize"]
        assert evidence["by"] == "classifier"
        assert evidence["scores"][record["category"]] == max(evidence["scores"].values())


# --- the LLM method ---------------------------------------------------------------------------


def test_parse_label():
    assert parse_label("math") == "math"
    assert parse_label("**Category:** Reasoning.") == "reasoning"
    assert parse_label("ｍａｔｈ") == "math"  # full-width (NFKC)
    assert parse_label("coding or math") is None
    assert parse_label("mathematics") is None and parse_label("はい") is None


def test_an_unparsed_answer_falls_back_or_is_rejected():
    record = Record(id="1", source="s", text="Solve 2x + 3 = 11", kind="instruction")
    answer = Generation(text="I think it is a sort of question.")
    out = from_answer(record, answer, CategorizeConfig(method="llm", model="/tmp"))
    assert out.category == "math" and out.meta["categorize"]["fallback"] == UNPARSED
    assert out.meta["categorize"]["by"] == "rules"
    cfg = CategorizeConfig(method="llm", model="/tmp", unparsed="reject")
    drop = from_answer(record, answer, cfg)
    assert isinstance(drop, Drop) and drop.reason == UNPARSED and "sort of question" in drop.detail
    failed = from_answer(record, Generation(error="prompt_too_long", detail="9 > 8"), cfg)
    assert failed == Drop("prompt_too_long", "9 > 8")


@pytest.fixture(scope="module")
def llm_models(tmp_path_factory) -> dict[str, Path]:
    """Two tiny chat models: `math` tuned (a few seconds) to answer every categorize prompt
    with "math", and `random` (untrained: its answers name no category)."""
    tools = tiny_models()
    tools.CONSTANT_ANSWER = "math"  # this copy of the script's module only
    texts = [r["text"] for r in INSTRUCTIONS]
    tokenizer = tools.build_tokenizer([*texts, DEFAULT_PROMPT, "math"], vocab_size=400)
    out = {}
    for name in ("math", "random"):
        model = tools.tiny_llama(tokenizer, seed=0)
        if name == "math":
            prompts = [chat_prompt(tokenizer, DEFAULT_PROMPT.replace("{text}", t)) for t in texts]
            tools.train_constant(model, tokenizer, prompts, steps=120, seed=0)
        out[name] = tmp_path_factory.mktemp(name)
        model.save_pretrained(out[name])
        tokenizer.save_pretrained(out[name])
    return out


def test_llm_method_through_an_openai_endpoint(tmp_path, llm_models):
    server = ServerProcess(llm_models["math"], tmp_path / "server", name="tiny-math")
    try:
        ledger, output, rejects = run_categorize(
            tmp_path,
            f"{{method: llm, base_url: '{server.base_url}', model: tiny-math, "
            f"tokenizer: {llm_models['math']}, max_model_len: 1024, max_new_tokens: 4}}",
        )
        asked = len(server.bodies())
    finally:
        server.stop()
    assert (ledger["in"], ledger["out"], rejects) == (4, 4, [])
    assert asked == 3  # the declared category is kept without asking
    by_text = {r["text"]: r for r in output}
    declared = by_text[INSTRUCTIONS[0]["text"]]
    assert declared["category"] == "x" and "categorize" not in declared["meta"]
    for row in INSTRUCTIONS[1:]:
        record = by_text[row["text"]]
        assert record["category"] == "math"
        assert record["meta"]["categorize"] == {"by": "llm", "model": "tiny-math", "answer": "math"}


def test_llm_answers_naming_no_category_are_rejected_with_the_reason(tmp_path, llm_models):
    ledger, output, rejects = run_categorize(
        tmp_path,
        f"{{method: llm, model: {llm_models['random']}, max_model_len: 1024, max_new_tokens: 8, "
        "unparsed: reject, trust_declared: false}",
    )
    assert (ledger["in"], ledger["out"], ledger["dropped"]) == (4, 0, {UNPARSED: 4})
    assert output == [] and {r["reason"] for r in rejects} == {UNPARSED}
    assert all("names no single category" in r["detail"] for r in rejects)
