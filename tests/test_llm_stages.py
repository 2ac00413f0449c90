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

from iptkit.hashing import seeded_int

DATA = REPO / "pipelines" / "examples" / "data"
TRANSLATION_REASONS = {
    "empty_output", "code_changed", "placeholder_lost", "echo_prompt", "echo_source",
    "untranslated", "no_language", "wrong_language", "low_lang_score", "script_ratio",
    "length_ratio", "truncated", "no_prompt",
}  # fmt: skip
RESPONSE_REASONS = {
    "empty_response", "response_too_long", "off_target_script", "off_target_lang", "low_lang_score",
}  # fmt: skip


@pytest.fixture(scope="module")
def models(tiny_chat_models) -> dict[str, Path]:
    return tiny_chat_models


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


def test_xcit_example(xcit_example_run):
    stats = json.loads((xcit_example_run / "stats.json").read_text())
    assert stats["violations"] == []
    output = _rows(xcit_example_run / "output", "*.jsonl.gz")
    st = stats["stages"]
    assert st["translate"]["added"] == {
        "translation": st["translate"]["out"]
        - st["translate"]["in"]
        + sum(st["translate"]["dropped"].values())
    }
    built = [r for r in output if "xcit" in r["meta"]]
    tasks = Counter(r["meta"]["xcit"]["task"] for r in built)
    assert tasks["translation"] >= 2 and tasks["think"] >= 1
    assert all("difficulty" in r["meta"] for r in output)
    assert {r["origin"] for r in built} == {"synthetic"}
    # Every built record pairs true translations: its source and target are the same segment's
    # English original (the link) and the translate stage's translation of it, never an answer
    # written afresh. The Japanese record it came from was written by translate alone.
    by_id = {r["id"]: r for r in output}
    for r in built:
        info = r["meta"]["xcit"]
        ja = by_id[info["from"]]
        link = ja["meta"]["parallel"]
        assert ja["id"] == link["id"] + "#ja" and link["pairs_aligned"] is True
        assert "respond" not in ja["meta"] and ja["meta"]["translate"]["segments"] >= 1
        assert len(ja["pairs"]) == len(link["pairs"])
        if info["task"] == "think":
            assert info["segment"] == "pairs[0]" and r["text"] == ja["pairs"][0]["instruction"]
            en_pair, ja_pair = link["pairs"][0], ja["pairs"][0]
            assert r["pairs"][0]["response"] == (
                f"{en_pair['instruction']}\n\n{en_pair['response']}\n\n{ja_pair['response']}"
            )
            continue
        if info["segment"] == "text":
            en, jp = link["text"], ja["text"]
        else:
            k = int(info["segment"][len("pairs[") : info["segment"].index("]")])
            en, jp = link["pairs"][k]["response"], ja["pairs"][k]["response"]
        source, target = (en, jp) if info["source_lang"] == "en" else (jp, en)
        assert r["text"].endswith("\n\n" + source) and r["pairs"][0]["response"] == target
    segments = Counter(r["meta"]["xcit"]["segment"] for r in built)
    assert segments["text"] >= 2 and segments["pairs[0].response"] >= 2


INSTRUCTIONS = [
    ("q1", "ja", "日本の首都はどこですか？"),
    ("q2", "ja", "猫と犬の違いを教えてください。"),
    ("q3", "ja", "富士山の高さは？"),
    ("q4", "ja", "おすすめの本を三冊挙げてください。"),
    ("q5", "en", "What is the capital of France?"),
]


def test_best_of_n_responses_through_the_judge(tmp_path, models):
    """respond asks the model three times per instruction (sampled, seeded), every sample is a
    record or a reject of its own; judge keeps the best of each instruction's candidates."""
    rows = [{"id": i, "lang": lang, "text": text} for i, lang, text in INSTRUCTIONS]
    data = tmp_path / "instructions.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    model = models["constant"]
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        seed: 5
        output: {tmp_path / "run"}
        sources:
          - {{name: asks, format: jsonl, path: {data}, id_field: id, lang_field: lang, kind: instruction}}
        stages:
          - respond: {{model: {model}, max_model_len: 512, max_new_tokens: 24, max_response_tokens: 20, n: 3, temperature: 1.0, checks: {{lang_id: true}}}}
          - judge: {{model: {model}, max_model_len: 1024, max_new_tokens: 16, per: instruction, top_n: 1}}
        """)
    )
    assert run_cli("run", spec) == 0
    run = tmp_path / "run"
    stats = json.loads((run / "stats.json").read_text())
    assert stats["violations"] == []
    respond, judge = stats["stages"]["respond"], stats["stages"]["judge"]
    # Five instructions, three samples each: two added per instruction, every sample accounted.
    assert respond["in"] == 5 and respond["added"] == {"response_sample": 10}
    assert respond["out"] + sum(respond["dropped"].values()) == 15
    assert set(respond["dropped"]) <= RESPONSE_REASONS
    rejects = _rows(run / "rejects" / "respond", "*.jsonl")
    by_instruction = Counter(r["record"]["meta"]["respond"]["of"] for r in rejects)
    # The model answers in Japanese: the English instruction's three samples are off target.
    assert by_instruction["q5"] == 3 and respond["dropped"]["off_target_lang"] == 3
    assert {r["id"] for r in rejects if r["record"]["meta"]["respond"]["of"] == "q5"} == {
        "q5#r0", "q5#r1", "q5#r2",
    }  # fmt: skip
    # A sample that fails alone leaves its siblings: with this seed, one of q3's three samples
    # runs past max_response_tokens (temperature 1.0) and the other two stay candidates.
    assert [of for of, n in by_instruction.items() if 0 < n < 3] == ["q3"]
    assert respond["dropped"]["response_too_long"] == 1
    # judge: one record per instruction that kept a candidate, the rest not_top_n.
    output = _rows(run / "output", "*.jsonl.gz")
    assert sorted(r["meta"]["respond"]["of"] for r in output) == ["q1", "q2", "q3", "q4"]
    assert {key: judge[key] for key in ("in", "out", "dropped")} == {
        "in": respond["out"], "out": 4, "dropped": {"not_top_n": respond["out"] - 4},
    }  # fmt: skip
    assert judge["model"]["prompts"] == judge["model"]["cache_misses"] == respond["out"]
    losers = _rows(run / "rejects" / "judge", "*.jsonl")
    for r in output:
        info = r["meta"]["respond"]
        assert r["id"] == f"{info['of']}#r{info['sample']}" and info["n"] == 3
        assert r["pairs"][0]["instruction"] == r["text"] and r["meta"]["judge"]["score"] == 7.0
        # Every candidate scores 7 with this judge: the seeded hash picks, never the order.
        candidates = [r["id"]] + [
            x["id"] for x in losers if x["record"]["meta"]["respond"]["of"] == info["of"]
        ]
        assert r["id"] == min(candidates, key=lambda i: (seeded_int(5, i), i))
    # The samples of one instruction were drawn with distinct seeds.
    seeds = [r["meta"]["respond"]["seed"] for r in output] + [
        x["record"]["meta"]["respond"]["seed"] for x in losers
    ]
    assert len(set(seeds)) == len(seeds) == respond["out"]
