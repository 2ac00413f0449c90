"""The AdaptLLM domain suites (domain-biomed, domain-finance): their metrics by hand, their data
files (bundled, by environment, by override), and both suites through lm-eval on a tiny model."""

import json
from pathlib import Path

import pytest
from eval_helpers import write_tiny_model

from iptkit.eval import adaptllm
from iptkit.eval.harness import HarnessOptions, task_manager
from iptkit.eval.run import EvalRequest, evaluate
from iptkit.eval.suites import load_suite
from iptkit.eval.summary import load_summary

SUITES = {"domain-biomed": "biomedicine", "domain-finance": "finance"}


def test_choice_prediction_is_log_likelihood_per_character():
    doc = {"options": ["no", "maybe"], "gold_index": 1}
    # " no" scores -3/3 = -1.0 per character, " maybe" -4/6 = -0.67: maybe wins on the
    # normalised score although its total log-likelihood is lower.
    assert adaptllm.predicted_index(doc, [(-3.0, False), (-4.0, False)]) == 1
    assert adaptllm.acc_results(doc, [(-3.0, False), (-4.0, False)]) == {"acc": 1.0}
    assert adaptllm.acc_results(doc, [(-1.0, False), (-6.0, False)]) == {"acc": 0.0}


def test_f1_aggregations_by_hand():
    # gold 0,0,1,2 predicted 0,1,1,2: class 0 F1 2/3 (support 2), class 1 2/3 (1), class 2 1 (1)
    items = [(0, 0), (0, 1), (1, 1), (2, 2)]
    assert adaptllm.weighted_f1(items) == pytest.approx((2 * 2 / 3 + 2 / 3 + 1) / 4)
    assert adaptllm.micro_f1(items) == pytest.approx(3 / 4)
    # Headline: question 0 all right (F1 1), question 1 one of two wrong: gold 0,1 predicted 0,0
    # gives class 0 F1 2/3 (support 1) and class 1 F1 0 (support 1): weighted 1/3.
    headline = [(0, 1, 1), (0, 0, 0), (1, 0, 0), (1, 1, 0)]
    assert adaptllm.headline_f1(headline) == pytest.approx((1 + 1 / 3) / 2)


def test_ner_entities_and_entity_f1_by_hand():
    assert adaptllm.entities("Brown (PER) Gamma (ORG) Brown (PER)") == [
        ("Brown", "PER"),
        ("Gamma", "ORG"),
    ]
    gold = [("Brown", "PER"), ("Gamma", "ORG"), ("Berlin", "LOC")]
    # Brown PER: text and type of ("Brown", "PER"), 2 points; Gamma ORG: the text of
    # ("Gamma", "LOC"), 1 point; Berlin LOC: the type of ("Gamma", "LOC"), 1 point. 4 points
    # of 2 x 2 predicted (precision 1) and 2 x 3 gold (recall 2/3).
    predicted = [("Brown", "PER"), ("Gamma", "LOC")]
    precision, recall = 4 / 4, 4 / 6
    expected = 2 * precision * recall / (precision + recall)
    assert adaptllm.entity_f1(gold, predicted) == pytest.approx(expected)
    assert adaptllm.entity_f1(gold, []) == 0.0
    assert adaptllm.ner_results({"label": "Oslo (LOC)"}, ["Oslo (LOC)\n"]) == {"entity_f1": 1.0}


def test_convfinqa_numbers_by_hand():
    assert adaptllm.numbers("the change was 1,250.5 or 20%\nnot 7") == [1250.5, 0.2]
    assert adaptllm.convfinqa_match("20%", "it is 0.2")
    assert adaptllm.convfinqa_match("30", "about 30.004 million")
    assert not adaptllm.convfinqa_match("30", "31")
    assert not adaptllm.convfinqa_match("30", "no number\n30")  # only the first line counts
    assert adaptllm.convfinqa_results({"label": ["25%"]}, ["25%"]) == {"convfinqa_em": 1.0}


def test_data_file_bundled_by_environment_and_absolute(tmp_path, monkeypatch):
    monkeypatch.delenv(adaptllm.DATA_ENV, raising=False)
    assert adaptllm.data_file("fpb.jsonl", "finance-tasks/FPB/test.json").parent == (
        adaptllm.BUNDLED
    )
    real = tmp_path / "finance-tasks" / "FPB" / "test.json"
    real.parent.mkdir(parents=True)
    rows = [{"input": "Up.\nAnswer:", "options": ["down", "up"], "gold_index": 1}]
    real.write_text(json.dumps(rows))  # AdaptLLM's files are JSON arrays
    monkeypatch.setenv(adaptllm.DATA_ENV, str(tmp_path))
    assert adaptllm.data_file("fpb.jsonl", "finance-tasks/FPB/test.json") == real
    assert adaptllm.load("fpb.jsonl", "finance-tasks/FPB/test.json")["test"][0]["gold_index"] == 1
    assert adaptllm.data_file(str(real)) == real
    with pytest.raises(FileNotFoundError, match=adaptllm.DATA_ENV):
        adaptllm.data_file("fpb.jsonl", "finance-tasks/missing.json")


def test_bad_rows_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "x", "options": ["a"], "gold_index": 0}\n{"input": "y"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: needs `options`"):
        adaptllm.read_rows(bad)


@pytest.mark.parametrize("name", SUITES)
def test_suites_name_known_tasks_with_the_papers_settings(name):
    suite = load_suite(name)
    manager = task_manager(suite)
    assert {t.task for t in suite.tasks} <= set(manager.all_tasks)
    assert {t.category for t in suite.tasks} == {SUITES[name]}
    zero_shot = {t.task for t in suite.tasks if t.note == "zero-shot"}
    assert zero_shot == (
        {"adaptllm_pubmedqa", "adaptllm_usmle"}
        if name == "domain-biomed"
        else {"adaptllm_convfinqa"}
    )
    for task in suite.tasks:  # the bundled rows of a few-shot task carry their demonstrations
        rows = adaptllm.read_rows(adaptllm.BUNDLED / f"{task.task.removeprefix('adaptllm_')}.jsonl")
        shots = {row["input"].count("\n\n") for row in rows}
        assert shots == ({0} if task.task in zero_shot else {2}), task.task


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _recomputed(task: str, samples: list[dict]) -> float:
    """The task's metric from lm-eval's per-sample responses, with adaptllm's functions."""
    docs = [s["doc"] for s in samples]
    resps = [s["filtered_resps"] for s in samples]
    if task in ("adaptllm_ner", "adaptllm_convfinqa"):
        fn = adaptllm.ner_results if task == "adaptllm_ner" else adaptllm.convfinqa_results
        values = [next(iter(fn(d, [r[0] if isinstance(r, list) else r]).values())) for d, r in
                  zip(docs, resps, strict=True)]  # fmt: skip
        return sum(values) / len(values)
    lls = [[(float(x[0]), False) for x in r] for r in resps]
    preds = [adaptllm.predicted_index(d, r) for d, r in zip(docs, lls, strict=True)]
    pairs = [(d["gold_index"], p) for d, p in zip(docs, preds, strict=True)]
    if task == "adaptllm_headline":
        triples = [(d["class_id"], g, p) for d, (g, p) in zip(docs, pairs, strict=True)]
        return adaptllm.headline_f1(triples)
    if task in ("adaptllm_chemprot", "adaptllm_rct"):
        return adaptllm.micro_f1(pairs)
    if task in ("adaptllm_fpb", "adaptllm_fiqa_sa"):
        return adaptllm.weighted_f1(pairs)
    return sum(g == p for g, p in pairs) / len(pairs)


# A random model never writes the newline that ends an answer: 8 tokens, not AdaptLLM's 100,
# keep the test short (and use the suite's `overrides`, as a run on other settings would).
SHORT_ANSWERS = {"generation_kwargs": {"until": ["\n"], "do_sample": False, "max_gen_toks": 8}}


@pytest.mark.parametrize("name", SUITES)
def test_suite_runs_through_lm_eval_and_rows_carry_the_domain(tmp_path, tiny_model, name):
    shipped = load_suite(name)
    tasks = [
        t.model_copy(update={"overrides": SHORT_ANSWERS})
        if t.task in ("adaptllm_ner", "adaptllm_convfinqa")
        else t
        for t in shipped.tasks
    ]
    suite = shipped.model_copy(update={"tasks": tasks})
    out = tmp_path / name
    evaluate(
        EvalRequest(
            model=str(tiny_model),
            out=out,
            suite=suite,
            harness=HarnessOptions(batch_size=4, device="cpu", log_samples=True),
        )
    )
    summary = load_summary(out)
    assert [(r.task, r.metric) for r in summary.rows] == [(t.task, t.metric) for t in suite.tasks]
    for row in summary.rows:
        stem = row.task.removeprefix("adaptllm_")
        assert row.n == len(adaptllm.read_rows(adaptllm.BUNDLED / f"{stem}.jsonl"))
        assert row.category == SUITES[name] and 0.0 <= row.value <= 1.0
        samples = [json.loads(line) for line in (out / "samples" / f"{row.task}.jsonl").open()]
        assert row.value == pytest.approx(_recomputed(row.task, samples)), row.task
