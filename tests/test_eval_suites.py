"""The shipped suites against the installed lm-eval, and the summary's reading of lm-eval results."""

from __future__ import annotations

from pathlib import Path

import pytest

from iptkit.errors import EvalError, SpecError
from iptkit.eval.harness import task_manager, task_specs
from iptkit.eval.suites import load_suite, suite_names
from iptkit.eval.summary import lm_eval_rows, sample_count


def test_shipped_suites() -> None:
    assert {
        "code", "domain-biomed", "domain-finance", "ipt-general", "ipt-ja", "math", "mt-bench",
        "mt-bench-ja", "mt-bench-pl", "smoke"
    } <= set(suite_names())
    general = load_suite("ipt-general")
    shots = {t.task: t.num_fewshot for t in general.tasks}
    # Cheng et al., Appendix C: 0-shot LM-style tasks, 5-shot question answering.
    assert shots == {
        "winogrande": 0,
        "piqa": 0,
        "hellaswag": 0,
        "arc_easy": 5,
        "arc_challenge": 5,
        "boolq": 5,
        "social_iqa": 5,
        "openbookqa": 5,
        "mmlu": 5,
    }
    assert {t.task for t in general.tasks if t.metric == "acc_norm"} == {
        "piqa",
        "hellaswag",
        "arc_easy",
        "arc_challenge",
        "social_iqa",
        "openbookqa",
    }
    assert all(t.lang == "ja" for t in load_suite("ipt-ja").tasks)
    smoke = load_suite("smoke")
    assert smoke.prompts_path is not None and smoke.prompts_path.is_file()
    assert [t.task for t in smoke.select(["iptkit_smoke_gen_ja", "iptkit_smoke_mc_en"])] == [
        "iptkit_smoke_mc_en",
        "iptkit_smoke_gen_ja",
    ]


def test_every_suite_task_and_metric_exists_in_the_installed_lm_eval() -> None:
    """Builds each task's config as lm-eval would (no data loaded): a renamed task or a metric
    the task does not compute fails here, not hours into a GPU run."""
    from lm_eval.tasks._yaml_loader import load_yaml

    suites = [load_suite("ipt-general"), load_suite("ipt-ja")]
    assert all(s.task_dir is None and s.builtin_tasks for s in suites)
    manager = task_manager(suites[0])  # lm-eval's own index, the same for both (~10 s)
    for suite in suites:
        for task, spec in zip(suite.tasks, task_specs(suite.tasks), strict=True):
            entry = manager.task_index[task.task]
            config = {**load_yaml(entry.yaml_path, resolve_func=False), **spec}
            if "group" in config:
                metrics = [m["metric"] for m in config.get("aggregate_metric_list", [])]
            else:
                metrics = [m["metric"] for m in config["metric_list"]]
            assert task.metric in metrics, (suite.name, task.task, metrics)


def test_suite_errors_name_the_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ntasks:\n  - {task: x, num_fewshot: -1, metric: acc, colour: red}\n")
    with pytest.raises(SpecError) as err:
        load_suite(str(bad))
    message = str(err.value)
    assert f"{bad}:3: tasks.0.num_fewshot:" in message and f"{bad}:3: tasks.0.colour:" in message
    with pytest.raises(EvalError, match="no suite 'nope'; name one of .*ipt-ja, .*smoke or a"):
        load_suite("nope")
    missing = tmp_path / "m.yaml"
    missing.write_text(
        "name: m\nprompts: none.jsonl\ntasks: [{task: x, num_fewshot: 0, metric: acc}]\n"
    )
    with pytest.raises(SpecError, match="prompts: no such file"):
        load_suite(str(missing))


# lm-eval's results layout for a group with a subgroup, a filtered metric and a missing stderr.
RESULTS = {
    "results": {
        "mmlu": {"acc,none": 0.31, "acc_stderr,none": 0.004, "alias": "mmlu"},
        "mmlu_stem": {"acc,none": 0.29, "acc_stderr,none": 0.008},
        "mmlu_abstract_algebra": {"acc,none": 0.2, "acc_stderr,none": 0.04},
        "mmlu_anatomy": {"acc,none": 0.3, "acc_stderr,none": 0.04},
        "mmlu_other_x": {"acc,none": 0.4, "acc_stderr,none": 0.05},
        "jsquad": {"exact_match,whitespaces": 0.12, "exact_match_stderr,whitespaces": "N/A"},
    },
    "group_subtasks": {
        "mmlu": ["mmlu_stem", "mmlu_other_x"],
        "mmlu_stem": ["mmlu_abstract_algebra", "mmlu_anatomy"],
    },
    "n-samples": {
        "mmlu_abstract_algebra": {"original": 100, "effective": 100},
        "mmlu_anatomy": {"original": 135, "effective": 135},
        "mmlu_other_x": {"original": 50, "effective": 50},
        "jsquad": {"original": 4442, "effective": 4442},
    },
    "n-shot": {"mmlu_abstract_algebra": 5, "jsquad": 2},
    "higher_is_better": {"mmlu": {"acc": True}, "jsquad": {"exact_match": True}},
}


def test_summary_rows_from_lm_eval_results(tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\ntasks:\n"
        "  - {task: mmlu, num_fewshot: 5, metric: acc}\n"
        "  - {task: jsquad, num_fewshot: 2, metric: exact_match, lang: ja}\n"
    )
    tasks = load_suite(str(suite)).tasks
    mmlu, jsquad = lm_eval_rows(RESULTS, tasks)
    assert (mmlu.value, mmlu.stderr, mmlu.n, mmlu.num_fewshot) == (0.31, 0.004, 285, 5)
    assert (jsquad.value, jsquad.stderr, jsquad.filter, jsquad.lang) == (
        0.12,
        None,
        "whitespaces",
        "ja",
    )
    assert sample_count(RESULTS, "mmlu_stem") == 235
    wrong = tmp_path / "w.yaml"
    wrong.write_text("name: w\ntasks:\n  - {task: mmlu, num_fewshot: 5, metric: acc_norm}\n")
    with pytest.raises(
        EvalError, match="task mmlu reports no metric 'acc_norm' \\(it reports: acc\\)"
    ):
        lm_eval_rows(RESULTS, load_suite(str(wrong)).tasks)


def test_cache_builds_every_task_of_a_suite(capsys: pytest.CaptureFixture[str]) -> None:
    """`iptkit eval cache` builds the tasks online, which loads (here: local) data; the hub
    download itself is lm-eval's and datasets' own path."""
    from iptkit.pipelines.cli import main

    assert main(["eval", "cache", "--suite", "smoke", "--tasks", "iptkit_smoke_mc_ja"]) == 0
    assert (
        "cached the data of 1 task(s) of suite smoke: iptkit_smoke_mc_ja" in capsys.readouterr().out
    )
