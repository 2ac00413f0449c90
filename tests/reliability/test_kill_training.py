"""Training killed with SIGKILL in the middle of a checkpoint write, and again at a seeded
random step, then resumed: every loss in metrics.jsonl is bit-identical to an uninterrupted
run's, and the half-written checkpoint is never loaded (issue 18, "Prove it").

A checkpoint is written into `.tmp-step-N` and renamed to `step-N` when whole
(trainer/checkpoint.py); the test polls for that temporary folder, as fast as Python can, and
kills the trainer the moment it appears, so the kill lands inside the write.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from killing import wait_for
from trainer_helpers import REPO, clean_env, rank_env_restored, stage, write_config, write_data

from iptkit.trainer.checkpoint import latest_checkpoint
from iptkit.trainer.config import load_config
from iptkit.trainer.loop import train

STEPS = 24


def losses(run_dir: Path) -> dict[int, float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines)}


def last_step(run_dir: Path) -> int:
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return json.loads(lines[-1])["step"] if lines else 0
    except (FileNotFoundError, json.JSONDecodeError):  # mid-write
        return 0


@pytest.fixture
def launch():
    """Start a trainer; any still running when the test ends is killed."""
    started: list[subprocess.Popen] = []

    def start(config: Path) -> subprocess.Popen:
        started.append(trainer(config))
        return started[-1]

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def trainer(config: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "iptkit.trainer", str(config)],
        cwd=REPO,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def kill(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()[-3000:]
    return err.decode()


def test_training_killed_during_a_checkpoint_write_and_at_a_random_step_resumes_exactly(
    tmp_path_factory: pytest.TempPathFactory, launch
) -> None:
    root = tmp_path_factory.mktemp("kill-train")
    data = write_data(root / "data", pt_rows=48, sft_rows=8)
    fields = dict(
        deepspeed="zero2",
        model={"config": "llama-tiny", "overrides": {"attention_dropout": 0.2}},
        stages=[stage("pt", data["pt"], steps=STEPS)],
        checkpoint={"every_steps": 4, "keep_last": 2},
        export={"enabled": False},
    )
    killed_dir = root / "killed"
    killed = write_config(root / "killed.yaml", run_dir=str(killed_dir), **fields)
    checkpoints = killed_dir / "checkpoints"
    rng = random.Random(18)

    # 1. Killed inside the write of a checkpoint chosen at random (not the first: there must be
    # an older complete one to fall back on).
    target = rng.choice(range(8, STEPS, 4))
    temp = checkpoints / f".tmp-step-{target:08d}"
    proc = launch(killed)
    assert wait_for(temp.exists, 600, proc), "the trainer ended before the checkpoint write"
    kill(proc)
    assert temp.is_dir() and not (checkpoints / f"step-{target:08d}").exists()
    fallback = latest_checkpoint(checkpoints)
    assert fallback is not None and fallback.name == f"step-{target - 4:08d}"

    # 2. Resumed from the complete checkpoint, never the half-written one; killed again at a
    # random step after it.
    proc = launch(killed)
    at = rng.randint(target + 1, STEPS - 1)
    assert wait_for(lambda: last_step(killed_dir) >= at, 600, proc), "finished before the kill"
    assert f"resumed from {fallback} (step {target - 4})" in kill(proc)

    # 3. Resumed to the end (in this process), and an uninterrupted run to compare with.
    with rank_env_restored():
        train(load_config(killed, []))
        reference = write_config(root / "ref.yaml", run_dir=str(root / "ref"), **fields)
        train(load_config(reference, []))
    assert not list(checkpoints.glob(".tmp-*"))
    got, expected = losses(killed_dir), losses(root / "ref")
    assert list(got) == list(range(1, STEPS + 1))
    assert got == expected  # bit-identical floats, every step
