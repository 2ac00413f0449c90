"""The code and math suites: scoring (pass@k, answer extraction) and both suites end to end on
CPU with a tiny chat model, through `iptkit eval`."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest
from eval_helpers import REPO

from iptkit.errors import EvalError
from iptkit.eval.code_exec import (
    code_rows,
    execute,
    extract_code,
    pass_at_k,
    program,
    read_problems,
)
from iptkit.eval.intervals import wilson_interval
from iptkit.eval.suites import ExecutionSet, SuiteError, load_suite
from iptkit.pipelines.cli import main

PROBLEMS = REPO / "eval" / "problems" / "code"


def bundled() -> list[tuple[ExecutionSet, list]]:
    suite = load_suite("code")
    return [(s, read_problems(suite.problems_path(s), s.format)) for s in suite.execution]


def test_pass_at_k_is_the_unbiased_estimator() -> None:
    for n in range(1, 7):
        for c in range(n + 1):
            for k in range(1, n + 1):
                expected = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(expected)
    assert (pass_at_k(5, 2, 1), pass_at_k(5, 2, 2)) == (pytest.approx(0.4), pytest.approx(0.7))


def test_wilson_interval() -> None:
    # Wilson (1927); the textbook case 8/10 gives about [0.490, 0.943].
    assert wilson_interval(0.8, 10) == pytest.approx((0.490, 0.943), abs=1e-3)
    low, high = wilson_interval(0.0, 8)
    assert low == 0.0 and 0.3 < high < 0.33  # not empty when nothing passed
    assert wilson_interval(0.5, 0) is None


def test_canonical_solutions_pass_and_wrong_ones_fail() -> None:
    """The bundled problems' tests are real: their references pass, a wrong answer fails."""
    for item, problems in bundled():
        right = execute(problems, {p.id: [p.canonical] for p in problems}, workers=2)
        assert [r.status for r in right] == ["passed"] * len(problems), right
        wrong = execute(problems, {p.id: ["    return None\n"] for p in problems}, workers=2)
        assert {r.status for r in wrong} == {"failed"}
        (row,) = code_rows(item, right)
        assert (row.metric, row.value, row.n, row.category) == ("pass@1", 1.0, 4, "coding")
        assert row.interval == wilson_interval(1.0, 4)
        assert code_rows(item, wrong)[0].value == 0.0


def test_pass_at_k_rows_over_samples() -> None:
    item = ExecutionSet(
        name="he", problems="x", format="humaneval", samples=3, k=[1, 3], temperature=0.8
    )
    problems = bundled()[0][1][:2]
    first, second = problems
    completions = {
        first.id: [first.canonical, "    return 0\n", "    return 0\n"],
        second.id: ["    return 0\n"] * 3,
    }
    results = execute(problems, completions, workers=2)
    assert [(r.task_id, r.sample, r.status == "passed") for r in results] == [
        (first.id, 0, True),
        (first.id, 1, False),
        (first.id, 2, False),
        (second.id, 0, False),
        (second.id, 1, False),
        (second.id, 2, False),
    ]
    at1, at3 = code_rows(item, results)
    assert (at1.metric, at1.value) == ("pass@1", pytest.approx((1 / 3) / 2, abs=1e-6))
    assert (at3.metric, at3.value, at3.n) == ("pass@3", 0.5, 2)


def test_a_fenced_answer_is_a_whole_solution() -> None:
    problem = bundled()[0][1][0]
    answer = "Here it is:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    assert extract_code(answer) == "def add(a, b):\n    return a + b\n"
    assert extract_code("    return a + b") is None
    (result,) = execute([problem], {problem.id: [answer]})
    assert result.status == "passed"
    assert program(problem, "    return a + b\n").startswith(problem.prompt + "    return a + b\n")


def test_bad_problem_files_name_the_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"task_id": "a", "prompt": "x", "entry_point": "f"}) + "\n")
    with pytest.raises(EvalError, match=r"p.jsonl:1: `test` must be a non-empty string"):
        read_problems(path, "humaneval")
    path.write_text(json.dumps({"task_id": 1, "text": "t", "code": "c", "test_list": "x"}) + "\n")
    with pytest.raises(EvalError, match=r"p.jsonl:1: `test_list` must be a list"):
        read_problems(path, "mbpp")


def test_execution_suite_errors_are_located(tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(
        textwrap.dedent("""\
        name: s
        execution:
          - {name: a, problems: missing.jsonl, format: humaneval}
          - {name: b, problems: missing.jsonl, format: mbpp, k: [2]}
        """)
    )
    with pytest.raises(SuiteError) as error:
        load_suite(str(suite))
    text = str(error.value)
    assert "execution.0.problems" in text and "no such file" in text
    assert "every k must be in 1..samples (1)" in text
    (tmp_path / "empty.yaml").write_text("name: e\n")
    with pytest.raises(SuiteError, match="a suite names lm-eval `tasks`, a `chat` section or `execution` sets"):
        load_suite(str(tmp_path / "empty.yaml"))


def test_math_answers_are_scored_by_their_last_number() -> None:
    """The math tasks' own lm-eval filter and metric on hand-written answers (the tiny model
    answers nothing right, so this is where a right answer is shown to score)."""
    from lm_eval.api.instance import Instance
    from lm_eval.tasks import TaskManager

    manager = TaskManager(
        include_path=str(REPO / "eval" / "tasks" / "math"), include_defaults=False
    )
    task = manager.load(["iptkit_math_en"])["tasks"]["iptkit_math_en"]
    doc = next(iter(task.test_docs()))
    assert doc["answer_number"] == "60"
    answers = {
        " 60": 1.0,
        " He reads 15 * 4 = 60 pages.": 1.0,
        " 1,060.": 0.0,
        " $60.": 1.0,
        " 59": 0.0,
        " sixty": 0.0,
    }
    for answer, expected in answers.items():
        instance = Instance("generate_until", doc, ("", {}), 0)
        instance.resps = [answer]
        (ensemble,) = task._filters
        ensemble.apply([instance])
        (filtered,) = instance.filtered_resps.values()
        assert task.process_results(doc, [filtered])["exact_match"] == expected, answer


@pytest.fixture(scope="module")
def chat_model(tiny_chat_models: dict[str, Path]) -> Path:
    return tiny_chat_models["random"]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8")]


def test_code_suite_end_to_end(chat_model: Path, tmp_path: Path) -> None:
    """The shipped code suite, its completions cut to 24 tokens (a random model's code fails
    whatever its length; on a loaded CPU the budget is the test's time)."""
    import yaml

    data = yaml.safe_load((REPO / "eval" / "suites" / "code.yaml").read_text())
    for item in data["execution"]:
        item["problems"] = str(REPO / "eval" / "suites" / item["problems"])
        item["max_new_tokens"] = 24
    suite = tmp_path / "code.yaml"
    suite.write_text(yaml.safe_dump(data))
    out = tmp_path / "run"
    argv = ["eval", str(chat_model), "--suite", str(suite), "--out", str(out), "--device", "cpu"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == {"code": "code/"}
    for name in ("humaneval_tiny", "mbpp_tiny"):
        results = read_jsonl(out / "code" / f"{name}.jsonl")
        assert len(results) == 4 and {r["sample"] for r in results} == {0}
        (row,) = [r for r in summary["rows"] if r["task"] == name]
        value = sum(r["status"] == "passed" for r in results) / 4
        assert (row["metric"], row["value"], row["n"], row["category"]) == (
            "pass@1",
            value,
            4,
            "coding",
        )
        assert row["interval"] == list(wilson_interval(value, 4))


def test_sampled_chat_completions_are_seeded(chat_model: Path, tmp_path: Path) -> None:
    suite = tmp_path / "code-chat.yaml"
    suite.write_text(
        textwrap.dedent(f"""\
        name: code-chat
        execution:
          - name: mbpp_chat
            problems: {PROBLEMS / "mbpp-tiny.jsonl"}
            format: mbpp
            chat: true
            samples: 2
            k: [1, 2]
            temperature: 1.0
            max_new_tokens: 12
            seed: 5
        """)
    )
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        argv = ["eval", str(chat_model), "--suite", str(suite), "--out", str(out)]
        assert main([*argv, "--device", "cpu"]) == 0
        runs.append(read_jsonl(out / "code" / "mbpp_chat.jsonl"))
    assert runs[0] == [dict(r, wall_s=a["wall_s"]) for a, r in zip(runs[0], runs[1], strict=True)]
    samples = {(r["task_id"], r["sample"]): r["completion"] for r in runs[0]}
    assert len(samples) == 8
    assert any(samples[(t, 0)] != samples[(t, 1)] for t in ("1", "2", "3", "4"))
    rows = json.loads((tmp_path / "a" / "summary.json").read_text())["rows"]
    assert [r["metric"] for r in rows] == ["pass@1", "pass@2"]


def test_math_suite_end_to_end(chat_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "math"
    argv = ["eval", str(chat_model), "--suite", "math", "--out", str(out), "--device", "cpu"]
    assert main([*argv, "--log-samples", "--limit", "3"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["task"]: r for r in summary["rows"]}
    assert set(rows) == {"iptkit_math_en", "iptkit_math_ja", "iptkit_math_pl"}
    for task in rows:
        row, n = rows[task], 3
        assert (row["metric"], row["filter"], row["n"], row["category"]) == (
            "exact_match",
            "flexible-extract",
            n,
            "math",
        )
        samples = read_jsonl(out / "samples" / f"{task}.jsonl")
        assert row["value"] == pytest.approx(sum(s["exact_match"] for s in samples) / n)
        assert row["interval"] == list(wilson_interval(row["value"], n))
        assert samples[0]["arguments"][0][0].count("\n\n") == 3  # three shots before it
