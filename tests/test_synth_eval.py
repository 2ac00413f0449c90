"""`iptkit synth eval` (Table 5): the scoring by hand, the prompts, and the command end to end
with a tiny synthesizer trained here, through the transformers backend and the test server."""

import json
import os
from pathlib import Path

import pytest
from synth_helpers import save, tiny_llama, train_synthesizer

from iptkit.eval.summary import load_summary
from iptkit.eval.synth_quality import pairs_prompt, response_prompt
from iptkit.eval.synth_scores import (
    mean_interval,
    pair_score,
    response_text,
    summary_rows,
    token_f1,
    tokens,
)
from iptkit.transforms.inference.core import NO_TOKENIZER, ModelSpec
from iptkit.transforms.synth.tuning_data import TaskExample

HELD_OUT = Path(__file__).resolve().parent / "data" / "synth_heldout.jsonl"


def qa(q, a):
    return {"instruction": q, "response": a}


def test_token_f1_by_hand():
    # SQuAD normalisation: case, punctuation and articles go.
    assert token_f1("The Capital, Paris!", "paris capital") == 1.0
    # 2 shared of 3 predicted and 5 gold tokens ("a" goes): P 2/3, R 2/5, F1 1/2.
    assert token_f1("paris is big", "paris is a very old city") == pytest.approx(0.5)
    assert token_f1("", "paris") == 0.0 and token_f1("rome", "paris") == 0.0
    # A CJK character is a token: 東京 vs 京都 share 京 (P 1/2, R 1/2).
    assert tokens("東京です") == ["東", "京", "で", "す"]
    assert token_f1("東京", "京都") == pytest.approx(0.5)


def test_pair_score_matches_one_to_one_by_hand():
    gold = [qa("capital of France?", "Paris"), qa("capital of Spain?", "Madrid")]
    generated = [qa("capital of Spain?", "Madrid"), qa("capital of Italy?", "Rome")]
    score = pair_score(generated, gold)
    # Spain matches Spain (F1 1); Italy/Rome against France/Paris shares "capital of"
    # (2 of 4 tokens each side: F1 1/2). Matched 1.5 of 2 generated and 2 gold pairs.
    assert score.matches == [(0, 1, 0.5), (1, 0, 1.0)]
    assert (score.precision, score.recall, score.f1) == pytest.approx((0.75, 0.75, 0.75))
    # The literal reading: all generated text against all gold text (6 of 8 tokens shared).
    assert score.text_f1 == pytest.approx(0.75)
    # One extra generated pair lowers precision, not recall.
    more = pair_score([*generated, qa("what?", "nothing")], gold)
    assert (more.precision, more.recall) == pytest.approx((0.5, 0.75))
    assert pair_score([], gold).f1 == 0.0


def test_response_text_and_prompts():
    assert response_text(" Paris </END>\n\n<QUE> next <ANS> x </END>") == "Paris"
    assert response_text(" Rome</s><s> <CON>") == "Rome"
    example = TaskExample("d:1", "d", "Paris is the capital of France.", [qa("Capital?", "Paris")])
    assert response_prompt(example, example.pairs[0]) == (
        "<s> <CON> Paris is the capital of France. </CON>\n\n<QUE> Capital? <ANS>"
    )
    demo = TaskExample("d:2", "d", "Rome is in Italy.", [qa("Where is Rome?", "Italy")])
    spec = ModelSpec(backend="openai", model="m")
    prompt, kept = pairs_prompt(example, [demo], NO_TOKENIZER, spec)
    assert kept == [demo] and prompt == (
        "<s> <CON> Rome is in Italy. </CON>\n\n<QUE> Where is Rome? <ANS> Italy </END></s>"
        "<s> <CON> Paris is the capital of France. </CON>\n\n"
    )


def test_mean_interval():
    assert mean_interval([0.5], 0) == (0.5, None, None)
    mean, stderr, (low, high) = mean_interval([0.0, 1.0, 1.0, 1.0], 0)
    assert mean == 0.75 and stderr == pytest.approx(0.25)
    assert 0.0 <= low <= mean <= high <= 1.0
    assert mean_interval([0.0, 1.0, 1.0, 1.0], 0) == mean_interval([0.0, 1.0, 1.0, 1.0], 0)


def test_summary_rows_group_by_dataset_split_and_all():
    items = [
        {"kind": "response", "dataset": "a", "shots": 0, "f1": 1.0, "error": None},
        {"kind": "response", "dataset": "b", "shots": 0, "f1": 0.0, "error": "request_failed"},
        {"kind": "pairs", "dataset": "a", "shots": 3, "f1": 0.2, "text_f1": 0.3, "error": None},
        {"kind": "pairs", "dataset": "a", "shots": 3, "f1": 0.4, "text_f1": 0.5, "error": None},
    ]
    rows = {(r.task, r.metric): r for r in summary_rows(items, {"b"}, 0)}
    assert list(rows)[:3] == [
        ("synth/a", "response_f1"),
        ("synth/a", "pair_f1_3shot"),
        ("synth/a", "pair_text_f1_3shot"),
    ]
    assert rows[("synth/a", "pair_f1_3shot")].value == pytest.approx(0.3)
    assert rows[("synth/a", "pair_f1_3shot")].num_fewshot == 3
    assert rows[("synth/all", "response_f1")].value == 0.5
    assert rows[("synth/all", "response_f1")].category is None
    assert rows[("synth/unseen", "response_f1")].category == "unseen"
    assert "1 failed generation" in rows[("synth/b", "response_f1")].flag
    assert rows[("synth/a", "response_f1")].flag is None
    # Without --unseen, no split rows.
    assert {r.task for r in summary_rows(items, None, 0)} == {"synth/a", "synth/b", "synth/all"}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models train and generate faster on one thread, and far faster on a machine
    whose cores other processes share (ten times, measured under a load of 11 on 2 cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def synthesizer(tmp_path_factory) -> Path:
    return train_synthesizer(tmp_path_factory.mktemp("synthesizer"), steps=300)


@pytest.fixture(scope="module")
def untrained(tmp_path_factory, synthesizer) -> Path:
    """A model with the synthesizer's tokenizer and random weights: the baseline to beat."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(synthesizer)
    return save(tiny_llama(tokenizer, seed=1), tokenizer, tmp_path_factory.mktemp("untrained"))


def synth_eval(model, out, *extra):
    from iptkit.pipelines.cli import main

    return main(
        ["synth", "eval", str(HELD_OUT), "--model", str(model), "--out", str(out),
         "--unseen", "reverse", "--max-model-len", "512", "--max-new-tokens", "48",
         "--device", "cpu", *map(str, extra)]
    )  # fmt: skip


def rows_by_key(out):
    return {(r.task, r.metric): r for r in load_summary(out).rows}


def test_synth_eval_end_to_end(tmp_path, synthesizer, untrained):
    assert synth_eval(synthesizer, tmp_path / "tuned") == 0
    assert synth_eval(untrained, tmp_path / "base") == 0
    tuned, base = rows_by_key(tmp_path / "tuned"), rows_by_key(tmp_path / "base")
    lines = [json.loads(line) for line in HELD_OUT.open()]
    n_pairs = sum(len(line["questions"]) for line in lines if line["dataset"] == "capitals")
    row = tuned[("synth/capitals", "response_f1")]
    assert row.n == n_pairs and row.category == "seen" and row.interval is not None
    assert tuned[("synth/reverse", "pair_f1_3shot")].category == "unseen"
    assert tuned[("synth/unseen", "pair_f1_0shot")].n == 4
    assert tuned[("synth/all", "pair_f1_3shot")].n == len(lines)
    # The tuned synthesizer answers the seen questions and writes capital pairs; random weights
    # do neither.
    assert row.value > 0.8 > base[("synth/capitals", "response_f1")].value
    for key in [("synth/capitals", "pair_f1_0shot"), ("synth/capitals", "pair_f1_3shot")]:
        assert tuned[key].value > 0.3 > base[key].value
    items = [json.loads(line) for line in (tmp_path / "tuned" / "items.jsonl").open()]
    total_pairs = sum(len(line["questions"]) for line in lines)
    assert len(items) == total_pairs + 2 * len(lines)
    few = [i for i in items if i["kind"] == "pairs" and i["shots"] == 3]
    assert all(len(i["demos"]) == 3 for i in few if i["dataset"] == "capitals")
    assert all(i["context_id"] not in i["demos"] for i in few)
    # The summary is one `iptkit eval compare` renders next to another run.
    from iptkit.pipelines.cli import main

    assert main(["eval", "compare", str(tmp_path / "base"), str(tmp_path / "tuned"),
                 "--out", str(tmp_path / "compare")]) == 0  # fmt: skip
    assert "synth/capitals" in (tmp_path / "compare" / "compare.md").read_text()


def test_synth_eval_against_an_openai_endpoint_equals_transformers(tmp_path, synthesizer):
    from openai_server import ServerProcess

    server = ServerProcess(
        synthesizer, tmp_path / "server", env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    try:
        assert synth_eval(synthesizer, tmp_path / "local", "--shots", "0", "--limit", "2") == 0
        assert synth_eval(
            "tiny", tmp_path / "endpoint", "--base-url", server.base_url,
            "--tokenizer", synthesizer, "--shots", "0", "--limit", "2",
        ) == 0  # fmt: skip
    finally:
        server.stop()
    local = [json.loads(x) for x in (tmp_path / "local" / "items.jsonl").open()]
    remote = [json.loads(x) for x in (tmp_path / "endpoint" / "items.jsonl").open()]
    assert [i["generated"] for i in remote] == [i["generated"] for i in local]
    assert all(i["error"] is None for i in remote)
    assert rows_by_key(tmp_path / "endpoint").keys() == rows_by_key(tmp_path / "local").keys()


def test_bad_input_names_the_file_and_line(tmp_path, capsys):
    bad = tmp_path / "held.jsonl"
    bad.write_text('{"context": "x", "questions": ["q"], "answers": ["a"]}\n{"context": ""}\n')
    from iptkit.pipelines.cli import main

    code = main(["synth", "eval", str(bad), "--model", str(tmp_path), "--out", str(tmp_path / "o")])
    assert code == 2
    assert f"{bad}:2: context" in capsys.readouterr().err


def test_unknown_unseen_dataset_is_an_error(tmp_path, capsys):
    code = synth_eval(tmp_path, tmp_path / "out", "--unseen", "nope")
    assert code == 2 and "--unseen: no held-out data for nope" in capsys.readouterr().err
