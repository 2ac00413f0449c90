"""`iptkit eval` end to end: the smoke suite through lm-eval with a tiny local model, offline."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
from eval_helpers import SMOKE, write_tiny_model

from iptkit.eval.offline import OFFLINE_ENV
from iptkit.pipelines.cli import main
from iptkit.transforms.text.language_checks import target_char_ratio


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("model") / "hf")


@pytest.fixture(scope="module")
def smoke_run(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "run"
    argv = ["eval", str(model), "--suite", "smoke", "--limit", "4", "--out", str(out)]
    argv += ["--max-new-tokens", "24", "--log-samples", "--device", "cpu"]
    before = {name: os.environ.get(name) for name in OFFLINE_ENV}
    assert main(argv) == 0
    assert {name: os.environ.get(name) for name in OFFLINE_ENV} == before  # offline undone
    return out


def test_smoke_suite_summary_matches_lm_eval_and_its_samples(smoke_run: Path) -> None:
    summary = json.loads((smoke_run / "summary.json").read_text())
    lm_eval = json.loads((smoke_run / "lm_eval_results.json").read_text())
    rows = {(r["task"], r["metric"]): r for r in summary["rows"]}
    expected = {
        ("iptkit_smoke_mc_en", "acc_norm", 0, "none"),
        ("iptkit_smoke_mc_ja", "acc_norm", 1, "none"),
        ("iptkit_smoke_gen_en", "exact_match", 1, "strip"),
        ("iptkit_smoke_gen_ja", "exact_match", 1, "strip"),
    }
    for task, metric, shots, filter_name in expected:
        row = rows[(task, metric)]
        assert (row["n"], row["num_fewshot"], row["filter"]) == (4, shots, filter_name)
        assert lm_eval["n-shot"][task] == shots  # per-task shots reached lm-eval
        assert row["value"] == lm_eval["results"][task][f"{metric},{filter_name}"]
        samples = [json.loads(x) for x in (smoke_run / "samples" / f"{task}.jsonl").open()]
        assert len(samples) == 4
        assert row["value"] == pytest.approx(sum(s[metric] for s in samples) / 4)
    # The 1-shot prompts really hold one train example before the question.
    ja = json.loads((smoke_run / "samples" / "iptkit_smoke_mc_ja.jsonl").open().readline())
    shot, question = ja["arguments"][0][0].split("\n\n")
    assert shot in (
        "質問：蜂が作るものは何ですか。\n回答： 蜂蜜",
        "質問：ワンワンと鳴く動物はどれですか。\n回答： 犬",
    )
    assert question == "質問：日本の首都はどこですか。\n回答："
    assert summary["limit"] == 4 and summary["suite"] == "smoke"


def test_generation_metrics_recomputed_from_the_answers(smoke_run: Path) -> None:
    generations = [json.loads(line) for line in (smoke_run / "generations.jsonl").open()]
    assert [g["id"] for g in generations] == ["en-1", "en-2", "en-3", "en-4"] + [
        "ja-1",
        "ja-2",
        "ja-3",
        "ja-4",
    ]
    for g in generations:
        assert 0 < g["new_tokens"] <= 24
        assert g["chars"] == len(g["answer"])
        # The respond stage's measurement (language_checks), prose letters only, 4 decimals.
        assert g["target_char_ratio"] == target_char_ratio(g["answer"], g["lang"])
        assert g["letters"] or g["target_char_ratio"] is None
    rows = {
        (r["task"], r["metric"]): r
        for r in json.loads((smoke_run / "summary.json").read_text())["rows"]
    }
    ja = [g for g in generations if g["lang"] == "ja"]
    assert rows[("generation/ja", "answer_chars")]["value"] == pytest.approx(
        sum(g["chars"] for g in ja) / 4
    )
    ratios = [g["target_char_ratio"] for g in ja if g["target_char_ratio"] is not None]
    assert (("generation/ja", "target_char_ratio") in rows) == bool(ratios)
    if ratios:
        row = rows[("generation/ja", "target_char_ratio")]
        assert row["value"] == pytest.approx(sum(ratios) / len(ratios), abs=1e-6)
        assert (row["flag"] is not None) == (row["value"] < 0.60)


def test_a_dataset_missing_offline_is_named_with_the_fix(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "hub_task.yaml").write_text(
        textwrap.dedent("""\
        task: needs_the_hub
        dataset_path: iptkit-tests/no-such-dataset
        output_type: multiple_choice
        test_split: test
        doc_to_text: "{{q}}"
        doc_to_target: 0
        doc_to_choice: ["a", "b"]
        """)
    )
    suite = tmp_path / "hub.yaml"
    suite.write_text(
        textwrap.dedent("""\
        name: hub
        task_dir: tasks
        builtin_tasks: false
        tasks:
          - {task: needs_the_hub, num_fewshot: 0, metric: acc}
          - {task: iptkit_smoke_mc_en, num_fewshot: 0, metric: acc}
        """)
    )
    # A suite names one task folder: the smoke task goes next to the hub one.
    for name in ("smoke_mc_en.yaml", "_smoke_mc_template", "smoke_data.py"):
        (tasks / name).write_bytes((SMOKE / name).read_bytes())
    (tasks / "data").mkdir()
    (tasks / "data" / "mc_en.jsonl").write_bytes((SMOKE / "data" / "mc_en.jsonl").read_bytes())
    code = main(
        ["eval", str(model), "--suite", str(suite), "--out", str(tmp_path / "o"), "--no-generation"]
    )
    err = capsys.readouterr().err
    assert code == 4
    assert "1 task(s) of suite hub cannot load their data offline" in err
    assert "needs_the_hub: " in err and "'iptkit-tests/no-such-dataset'" in err
    assert "(OfflineModeIsEnabled)" in err  # the hub was never asked
    assert "iptkit eval cache --suite hub --tasks needs_the_hub" in err
    assert not (tmp_path / "o" / "summary.json").exists()


def test_unknown_task_and_missing_model_are_clear_errors(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\nbuiltin_tasks: false\ntasks:\n  - {task: nope, num_fewshot: 0, metric: acc}\n"
    )
    assert main(["eval", str(model), "--suite", str(suite), "--no-generation"]) == 4
    assert "task(s) nope not found" in capsys.readouterr().err
    assert main(["eval", str(tmp_path), "--suite", "smoke"]) == 4
    assert "no config.json" in capsys.readouterr().err
    assert main(["eval", str(model), "--suite", "smoke", "--tasks", "arc_easy"]) == 4
    assert "--tasks: not in suite smoke: arc_easy" in capsys.readouterr().err
