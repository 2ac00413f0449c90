"""Preference data end to end: the example spec (respond n samples, judge, preference, pack
preference shards) with the tiny chat-mixed model, its shards byte-identical across runs and
shown by `iptkit inspect`, the shipped sft -> orpo config training on them (the preference
for the chosen answer rises, answers grow longer), and a dpo run resumed after SIGKILL with
bit-identical losses."""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, files_under, run_cli
from llm_helpers import tiny_models
from trainer_helpers import (
    clean_env,
    rank_env_restored,
    stage,
    write_config,
    write_pairs,
    write_tokenizer,
)

from iptkit.pipelines.inspect_shards import inspect_shards
from iptkit.shards import open_shards
from iptkit.trainer.config import load_config
from iptkit.trainer.loop import train

REASONS = {"tie", "not_extreme", "pair_rejected", "small_gap", "no_pair", "same_response"}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_models().make_mixed_model(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory, mixed: Path) -> Path:
    run = tmp_path_factory.mktemp("example") / "run"
    spec = REPO / "pipelines" / "examples" / "preference.yaml"
    sets = [f"stages.{s}.model={mixed}" for s in ("respond", "judge")]
    sets.append(f"stages.pack.tokenizer={mixed}")
    args: list[object] = ["run", spec, "--out", run]
    for item in sets:
        args += ["--set", item]
    assert run_cli(*args) == 0
    return run


def _rows(folder: Path) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted(folder.glob("*.jsonl.gz"))
        for line in gzip.open(path, "rt", encoding="utf-8")
    ]


def test_example_spec_makes_judged_pairs_with_a_balanced_ledger(example: Path) -> None:
    tools = tiny_models()
    stats = json.loads((example / "stats.json").read_text())
    assert stats["violations"] == []
    st = stats["stages"]
    assert st["respond"]["added"]["response_sample"] == 3 * st["respond"]["in"]
    pairs = _rows(example / "output")
    assert len(pairs) == st["preference"]["out"] >= 6
    assert set(st["preference"]["dropped"]) <= REASONS
    assert st["preference"]["dropped"]["pair_rejected"] == len(pairs)
    for r in pairs:
        info = r["meta"]["preference"]
        # The judge rates an answer ending like its good one 8, like its poor one 3 (a sampled
        # answer may mix the two), so the better-rated answer is chosen.
        assert r["pairs"][-1]["response"].endswith("Rating: [[8]]")
        assert info["rejected"].endswith("Rating: [[3]]")
        assert (info["chosen_score"], info["rejected_score"]) == (8.0, 3.0)
        assert info["reason"] and info["chosen_id"].startswith(r["id"] + "#r")
    exact = [r for r in pairs if r["pairs"][-1]["response"] == tools.GOOD_ANSWER]
    assert len(exact) >= len(pairs) / 2
    train_set = open_shards(example / "shards" / "train")
    val_set = open_shards(example / "shards" / "validation")
    assert train_set.manifest.layout == "pairs"
    assert train_set.manifest.pairs + val_set.manifest.pairs == len(pairs)
    assert val_set.manifest.pairs == 4
    shown = inspect_shards(example / "shards" / "train", n=1)
    assert "preference pairs" in shown and "── prompt" in shown
    assert "── chosen" in shown and tools.GOOD_ANSWER in shown
    assert "── rejected" in shown and tools.POOR_ANSWER in shown
    assert "<|assistant|>" in shown  # the model's own chat template (chat_template.jinja)


def test_pairs_read_back_and_pack_byte_identically(tmp_path: Path, example: Path, mixed: Path):
    """The example's output, read as preference records (`format: preference`), packs into
    the same bytes on every run."""
    spec = tmp_path / "repack.yaml"
    spec.write_text(
        json.dumps(
            {
                "seed": 3,
                "output": str(tmp_path / "unused"),
                "sources": [
                    {
                        "name": "pairs",
                        "format": "preference",
                        "id_field": "id",
                        "path": str(example / "output" / "*.jsonl.gz"),
                    }
                ],
                "stages": [
                    {
                        "pack": {
                            "tokenizer": str(mixed),
                            "seq_len": 128,
                            "preference": True,
                            "validation": 2,
                            "sequences_per_shard": 3,
                        }
                    }
                ],
            }
        )  # fmt: skip
    )
    outs = []
    for name in ("a", "b"):
        assert run_cli("run", spec, "--out", tmp_path / name) == 0
        outs.append(files_under(tmp_path / name / "shards"))
    assert outs[0] == outs[1]
    train_set = open_shards(tmp_path / "a" / "shards" / "train")
    sizes = [s.sequences for s in train_set.manifest.shards]
    assert all(n % 2 == 0 and n <= 4 for n in sizes)  # 3 rounded up to whole pairs
    stats = json.loads((tmp_path / "a" / "stats.json").read_text())
    assert stats["violations"] == [] and stats["stages"]["pack"]["dropped"] == {}


def test_sft_then_orpo_raises_the_preference_for_chosen(
    tmp_path: Path, example: Path, mixed: Path
) -> None:
    shards = example / "shards" / "train"
    config = REPO / "configs" / "train" / "preference-sft-orpo.yaml"
    sets = [f"run_dir={tmp_path / 'train'}", f"model.pretrained={mixed}",
            f"stages.0.data={shards}", f"stages.1.data={shards}"]  # fmt: skip
    with rank_env_restored():
        train(load_config(config, sets))
    lines = [json.loads(x) for x in (tmp_path / "train" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in lines if r["stage"] == "orpo" and "loss" in r]
    evals = [r for r in lines if r["stage"] == "orpo" and "val_loss" in r]
    assert len(evals) >= 2 and all(r["split"] == "validation" for r in evals)
    assert any(r["stage"] == "sft" and "val_loss" in r for r in lines)  # every stage's end
    # The preference for the chosen answer rises over training, on held-out pairs too.
    assert evals[-1]["val_reward_margin"] > evals[0]["val_reward_margin"] + 0.5
    assert evals[-1]["val_reward_accuracy"] == 1.0
    assert steps[-1]["chosen_logp"] - steps[-1]["rejected_logp"] > (
        steps[0]["chosen_logp"] - steps[0]["rejected_logp"]
    )
    # The chosen answer is the longer one: answers grow, as PLLuM saw after alignment.
    assert evals[-1]["gen_length"] > evals[0]["gen_length"]
    assert (tmp_path / "train" / "hf" / "model.safetensors").is_file()


def test_dpo_resumed_after_sigkill_gives_identical_losses(tmp_path: Path) -> None:
    """sft on the chosen rows, then dpo; killed after its first checkpoint (inside the dpo
    stage, whose reference model was written at its start), resumed: the same losses and
    evaluations as a run never stopped."""
    tok = write_tokenizer(tmp_path / "tok")
    data = write_pairs(tmp_path / "pref" / "train", tok, pairs=16)
    write_pairs(tmp_path / "pref" / "validation", tok, pairs=4, seed=1)
    fields = dict(
        deepspeed="zero2",
        model={"config": "llama-tiny", "overrides": {"attention_dropout": 0.2}},
        stages=[stage("sft", data, mode="sft", steps=2), stage("dpo", data, mode="dpo", steps=6)],
        checkpoint={"every_steps": 4, "keep_last": 2},
        eval={"every_steps": 4, "generate": 2, "max_new_tokens": 4},
        export={"enabled": False},
    )
    reference = write_config(tmp_path / "ref.yaml", run_dir=str(tmp_path / "ref"), **fields)
    killed = write_config(tmp_path / "killed.yaml", run_dir=str(tmp_path / "killed"), **fields)
    proc = subprocess.Popen(
        [sys.executable, "-m", "iptkit.trainer", str(killed)],
        cwd=REPO, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.monotonic() + 400
    while not any(checkpoints.glob("step-*")) and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 400 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, proc.stderr.read().decode()[-3000:]
    resumed_from = max(int(p.name.split("-")[1]) for p in checkpoints.glob("step-*"))
    assert resumed_from < 8
    assert (tmp_path / "killed" / "reference" / "dpo.safetensors").is_file()
    with rank_env_restored():
        train(load_config(killed))
        train(load_config(reference))

    def lines(run: str) -> list[dict]:
        text = (tmp_path / run / "metrics.jsonl").read_text()
        drop = ("tokens_per_s", "mfu")  # wall-clock figures
        return [
            {k: v for k, v in json.loads(x).items() if k not in drop} for x in text.splitlines()
        ]

    got, expected = lines("killed"), lines("ref")
    assert [r["step"] for r in got if "loss" in r] == list(range(1, 9))
    assert got == expected
    assert {"reward_margin", "reward_accuracy", "chosen_logp"} <= set(got[-2])
    assert "val_reward_margin" in got[-1] and "gen_length" in got[-1]
