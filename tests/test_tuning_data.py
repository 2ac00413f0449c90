"""Context-based task JSONL -> synthesizer tuning sequences (Cheng et al. 2024, App. A/B)."""

import json
from collections import Counter

from conftest import run_cli
from synth_helpers import build_tokenizer, write_jsonl

from iptkit.transforms.synth.lmops_format import parse_sequence
from iptkit.transforms.synth.tuning_data import convert, pack, parse_example, select


def words(text: str) -> int:
    return len(text.split())


def example(i: int, n_pairs: int, dataset: str = "d") -> dict:
    return {
        "context": f"Context number {i} about topic {i}.",
        "questions": [f"Question {j} on {i}?" for j in range(n_pairs)],
        "answers": [f"answer {j}" for j in range(n_pairs)],
        "dataset": dataset,
    }


def test_options_and_cot_follow_table7():
    ex = parse_example(
        {
            "context": "Roses are red.",
            "questions": ["Colour of roses?", "Is it red?"],
            "answers": ["red", "yes"],
            "options": [["red", "blue"], None],
            "cots": ["Roses are red.", None],
        },
        "x:1",
        "d",
    )
    assert ex.pairs == [
        {
            "instruction": "Colour of roses?\nOptions:\n- red\n- blue\nLet's think step by step.",
            "response": "Roses are red.\nTherefore, the answer is red",
        },
        {"instruction": "Is it red?", "response": "yes"},
    ]


def test_cap_keeps_examples_with_most_pairs():
    examples = [parse_example(example(i, 1 + i % 4), f"d:{i}", "d") for i in range(12)]
    kept = select(examples, cap=3, seed=0)
    assert [len(e.pairs) for e in kept] == [4, 4, 4]
    assert select(examples, 3, 0) == kept  # deterministic


def test_sequences_pack_one_dataset_up_to_max_len_with_loss_spans():
    examples = [parse_example(example(i, 2), f"d:{i}", "d") for i in range(10)]
    stats = Counter()
    sequences = pack(examples, words, max_len=60, seed=1, stats=stats)
    assert sum(len(s.examples) for s in sequences) == 10
    assert all(s.tokens <= 60 for s in sequences)
    assert all(len(s.examples) >= 2 for s in sequences[:-1])  # few-shot: filled up
    for s in sequences:
        parsed = parse_sequence(s.text)  # the text is well-formed N-shot data
        assert [p for _, pairs in parsed for p in pairs] == s.pairs
        for start, end in s.loss_spans:  # each span: one example's pairs and its </s>
            span = s.text[start:end]
            assert span.startswith("<QUE>") and span.endswith("</END></s>")
            assert "<CON>" not in span
        ends = [e for _, e in s.loss_spans]
        starts = [st for st, _ in s.loss_spans]
        outside = "".join(
            s.text[a:b] for a, b in zip([0, *ends], [*starts, len(s.text)], strict=True)
        )
        assert "<QUE>" not in outside and outside.count("<CON>") == len(s.examples)


def test_overlong_example_loses_its_last_pairs_then_is_dropped():
    long_one = parse_example(example(0, 6), "d:0", "d")
    stats = Counter()
    (seq,) = pack([long_one], words, max_len=30, seed=0, stats=stats)
    assert 0 < len(seq.pairs) < 6 and seq.tokens <= 30
    assert stats["pairs_cut"] == 6 - len(seq.pairs)
    assert pack([long_one], words, max_len=5, seed=0, stats=stats) == []
    assert stats["too_long"] == 1


def test_convert_reports_bad_lines_by_file_and_line(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        json.dumps(example(1, 2))
        + "\n{broken\n"
        + json.dumps({"context": "c", "questions": ["q"], "answers": ["a", "b"]})
        + "\n"
        + json.dumps(example(2, 1, dataset="other"))
        + "\n"
    )
    sequences, report = convert([(path, "mixed")], words, max_len=100)
    assert {s.dataset for s in sequences} == {"d", "other"}
    assert report["bad_lines"] == 2
    assert report["problems"][0].startswith(f"{path}:2: ")
    assert report["problems"][1] == f"{path}:3: answers: must be a list of 1 (one per question)"


def test_cli_writes_sequences_with_real_token_counts(tmp_path):
    rows = [example(i, 2) for i in range(6)]
    for r in rows:
        del r["dataset"]  # named on the command line instead
    data = write_jsonl(tmp_path / "qa.jsonl", rows)
    tok_dir = tmp_path / "tok"
    texts = [r["context"] + " " + " ".join(r["questions"] + r["answers"]) for r in rows]
    tokenizer = build_tokenizer(texts + ["\n\n"], tok_dir)
    out = tmp_path / "tuning.jsonl"
    args = ["synth", "tuning-data", f"{data}=qa", "--out", out, "--tokenizer", tok_dir]
    assert run_cli(*args, "--max-len", "128") == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert all(r["dataset"] == "qa" for r in lines)
    assert len(lines) < 6  # several examples share a sequence
    for r in lines:
        assert r["tokens"] <= 128
        n = len(tokenizer(r["text"], add_special_tokens=False)["input_ids"])
        assert n == r["tokens"]  # examples counted alone add up to the whole sequence
    report = json.loads((tmp_path / "tuning.jsonl.report.json").read_text())
    assert report["datasets"]["qa"]["selected"] == 6
