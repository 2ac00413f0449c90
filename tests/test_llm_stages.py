"""translate, respond and judge end to end: the real transformers handler, tiny chat models
built here (scripts/make_tiny_models.py), DirectRunner pipelines over the bundled chat logs,
and the two example specs. Every instruction must end kept or rejected with a check's reason.
"""

import gzip
import json
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO, run_cli
from llm_helpers import tiny_models

DATA = REPO / "pipelines" / "examples" / "data"
TRANSLATION_REASONS = {
    "empty_output", "code_changed", "placeholder_lost", "echo_prompt", "echo_source",
    "untranslated", "no_language", "wrong_language", "low_lang_score", "script_ratio",
    "length_ratio", "truncated", "no_prompt",
}  # fmt: skip
RESPONSE_REASONS = {"empty_response", "response_too_long"}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return tiny_models().make_tiny_models(tmp_path_factory.mktemp("tiny-models"))


def _spec(tmp_path: Path, model: Path) -> Path:
    """Logged responses are kept, so judge reads them before respond replaces them; judge keeps
    what it cannot score (`unparsed: keep`), so respond still has instructions to answer."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        seed: 11
        output: {tmp_path / "run"}
        sources:
          - {{name: chats, format: conversations, path: {DATA / "chats_lmsys.jsonl"}, id_field: conversation_id}}
          - {{name: sharegpt, format: conversations, path: {DATA / "chats_sharegpt.jsonl"}, id_field: id}}
        stages:
          - extract: {{turns: first, keep_responses: true}}
          - langid: {{}}
          - translate: {{model: {model}, max_model_len: 1024, max_new_tokens: 24, attempts: 2}}
          - judge: {{model: {model}, max_model_len: 1024, max_new_tokens: 16, unparsed: keep, threshold: 5}}
          - respond: {{model: {model}, max_model_len: 1024, max_new_tokens: 24, max_response_tokens: 20}}
        """)
    )
    return spec


def _rows(folder: Path, pattern: str) -> list[dict]:
    rows = []
    for path in sorted(folder.glob(pattern)):
        data = path.read_bytes()
        data = gzip.decompress(data) if path.suffix == ".gz" else data
        rows += [json.loads(line) for line in data.splitlines()]
    return rows


def _run(tmp_path: Path, model: Path):
    assert run_cli("run", _spec(tmp_path, model)) == 0
    run = tmp_path / "run"
    stats = json.loads((run / "stats.json").read_text())
    assert stats["violations"] == []
    rejects = {
        stage: _rows(run / "rejects" / stage, "*.jsonl")
        for stage in ("extract", "langid", "translate", "respond", "judge")
    }
    return stats, _rows(run / "output", "*.jsonl.gz"), rejects


def _accounted(stats, output, rejects):
    """Every instruction extract kept ends in the output or in one later stage's rejects."""
    instructions = stats["stages"]["extract"]["out"]
    later = [r["id"] for s in ("langid", "translate", "respond", "judge") for r in rejects[s]]
    sources = [r["meta"].get("parallel", {}).get("id", r["id"]) for r in output]
    assert len(later) + len(sources) == instructions
    assert len(set(later) | set(sources)) == instructions


def test_random_model_outputs_are_rejected_with_the_checks_reasons(tmp_path, models):
    stats, output, rejects = _run(tmp_path, models["random"])
    _accounted(stats, output, rejects)
    st = stats["stages"]
    # Garbage never passes the translation checks (2 attempts each); Japanese instructions
    # skip translation and go on.
    assert st["translate"]["dropped"] and set(st["translate"]["dropped"]) <= TRANSLATION_REASONS
    assert all(
        "after 2 attempt(s)" in r["detail"]
        for r in rejects["translate"]
        if r["reason"] != "no_prompt"
    )
    assert st["translate"]["out"] == st["langid"]["out"] - len(rejects["translate"]) >= 1
    # The judge finds no score in garbage: kept unscored, its output recorded.
    assert st["judge"]["in"] >= 1 and set(st["judge"]["dropped"]) <= {"below_threshold"}
    assert set(st["respond"]["dropped"]) <= RESPONSE_REASONS and st["respond"]["dropped"]
    for r in output:
        assert r["meta"]["judge"]["score"] is None or r["meta"]["judge"]["score"] >= 5
        assert r["lang"] == "ja" and r["origin"] == "synthetic"
        assert r["meta"]["respond"]["model"] == str(models["random"])


def _example(tmp_path: Path, name: str, model: Path) -> tuple[dict, list[dict], Path]:
    run = tmp_path / name
    spec = REPO / "pipelines" / "examples" / f"{name}.yaml"
    sets = [f"stages.{stage}.model={model}" for stage in ("translate", "respond", "judge")]
    if name == "xcit":
        sets.pop()
    args = ["run", spec, "--out", run]
    for item in sets:
        args += ["--set", item]
    assert run_cli(*args) == 0
    stats = json.loads((run / "stats.json").read_text())
    assert stats["violations"] == []
    return stats, _rows(run / "output", "*.jsonl.gz"), run


def test_swallow_ja_example(tmp_path, models):
    stats, output, run = _example(tmp_path, "swallow_ja", models["constant"])
    st = stats["stages"]
    # The constant model's short Japanese sentence passes the checks for short sources; long
    # ones fail the length ratio on every attempt.
    assert st["translate"]["out"] >= 3 and st["translate"]["dropped"].get("length_ratio", 0) >= 1
    assert set(st["translate"]["dropped"]) <= TRANSLATION_REASONS
    assert st["respond"]["dropped"] == {}
    assert set(st["judge"]["dropped"]) <= {"not_top_n"}
    assert len(output) == st["judge"]["out"] >= 3
    for r in output:
        assert r["lang"] == "ja" and r["origin"] == "synthetic" and r["category"]
        assert r["meta"]["judge"]["score"] == 7.0
        assert r["pairs"] == [
            {"instruction": r["text"], "response": "はい、わかりました。評価：[[7]]"}
        ]
        assert r["meta"]["respond"]["model"] == str(models["constant"])
        if "parallel" in r["meta"]:
            link = r["meta"]["parallel"]
            assert r["id"] == link["id"] + "#ja" and link["lang"] != "ja" and link["text"]
            assert r["meta"]["origin_before"] == "organic"
    per_source = Counter(r["source"] for r in output)
    assert all(n <= 8 for n in per_source.values())
    reasons = {r["reason"] for r in _rows(run / "rejects" / "translate", "*.jsonl")}
    assert reasons <= TRANSLATION_REASONS
    # A model stage's time includes its inference (RunInference's latency in its namespace):
    # the model stages dominate a run of a few dozen records through a model.
    seconds = json.loads((run / "timings.json").read_text())["stage_seconds"]
    model_time = sum(seconds[s] for s in ("translate", "respond", "judge"))
    assert model_time > 5 * sum(seconds[s] for s in ("read", "extract", "categorize"))


def test_xcit_example(tmp_path, models):
    stats, output, _ = _example(tmp_path, "xcit", models["constant"])
    st = stats["stages"]
    assert st["translate"]["added"] == {
        "translation": st["translate"]["out"]
        - st["translate"]["in"]
        + sum(st["translate"]["dropped"].values())
    }
    built = [r for r in output if "xcit" in r["meta"]]
    tasks = Counter(r["meta"]["xcit"]["task"] for r in built)
    assert tasks["translation"] >= 2 and tasks["think"] >= 1
    think = next(r for r in built if r["meta"]["xcit"]["task"] == "think")
    assert think["lang"] == "ja" and think["pairs"][0]["response"].endswith("評価：[[7]]")
    assert all("difficulty" in r["meta"] for r in output)
    assert {r["origin"] for r in built} == {"synthetic"}
