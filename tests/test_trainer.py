"""Training runs with real DeepSpeed and torch on the CPU: tiny Llama, seq_len 32, a few steps.

Single-rank runs happen in this process (a process group of one over gloo);
runs with two ranks, or that get killed, go through scripts/train.sh or
`python -m iptkit.trainer` in a subprocess.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import torch
import torch.nn.functional as F
from trainer_helpers import (
    REPO,
    VOCAB,
    clean_env,
    free_port,
    rank_env_restored,
    stage,
    write_config,
    write_data,
    write_shards,
    write_tokenizer,
)
from transformers import AutoModelForCausalLM, AutoTokenizer

from iptkit.errors import IptkitError
from iptkit.shards import open_shards
from iptkit.trainer.__main__ import main
from iptkit.trainer.checkpoint import UnsafeCheckpoint, latest_checkpoint
from iptkit.trainer.config import load_config
from iptkit.trainer.data import Layout, StageBatches
from iptkit.trainer.loop import TrainResult, train
from iptkit.trainer.runlock import RunLock, RunLocked

# Two ranks with ZeRO-3 must really partition even these tiny tensors.
ZERO3_ALL_PARTITIONED = {
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": 1.0,
    "bf16": {"enabled": "auto"},
    "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
    "optimizer": {
        "type": "AdamW",
        "params": {"lr": "auto", "betas": [0.9, 0.95], "weight_decay": 0.1, "torch_adam": True},
    },
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_data(tmp_path_factory.mktemp("data"), pt_rows=64, sft_rows=32)


@pytest.fixture
def in_process() -> Iterator[None]:
    with rank_env_restored():
        yield


def run(config: Path, *sets: str) -> TrainResult:
    return train(load_config(config, list(sets)))


def losses(run_dir: Path) -> dict[int, float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines)}


def logits(model: torch.nn.Module, shards_dir: Path) -> torch.Tensor:
    batch = StageBatches(open_shards(shards_dir), "pretrain", 0, 0, Layout(4, 1, 1, 0))
    inputs = batch.micro_batch(0, 0)
    with torch.no_grad():
        return model(input_ids=inputs["input_ids"], position_ids=inputs["position_ids"]).logits


def launch(*args: str, timeout: int = 180) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args, cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_two_stages_learn_checkpoint_and_export(
    tmp_path: Path, data: dict[str, Path], in_process: None
) -> None:
    config = write_config(
        tmp_path / "run.yaml",
        stages=[
            stage("pretrain", data["pt"], steps=40, lr=1e-2),
            stage("sft", data["sft"], epochs=1.0, mode="sft"),
        ],
        checkpoint={"every_steps": 15, "keep_last": 2},
        metrics={"progress_bar": True, "plot": True, "peak_tflops": 1.0},
    )
    result = run(config)
    run_dir = tmp_path / "run"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert result.step == 40 + 16 == len(records)  # sft: one epoch of 32 rows in batches of 2
    pretrain = [r["loss"] for r in records if r["stage"] == "pretrain"]
    assert np.mean(pretrain[-5:]) < np.mean(pretrain[:5]) - 1.0
    assert {r["stage"] for r in records[40:]} == {"sft"}
    assert records[40]["lr"] < records[41]["lr"]  # the second stage warms up again
    assert all(r["grad_norm"] > 0 and r["tokens_per_s"] > 0 and r["mfu"] > 0 for r in records)
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert checkpoints == ["step-00000045", "step-00000056"]  # 15 and 30 pruned
    assert AutoTokenizer.from_pretrained(run_dir / "hf").convert_tokens_to_ids("w5") == 8
    assert (run_dir / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_sft_loss_counts_only_masked_tokens(
    tmp_path: Path, data: dict[str, Path], in_process: None
) -> None:
    """Step 1's logged loss equals cross-entropy over the response tokens of the initial model."""
    config = write_config(
        tmp_path / "run.yaml",
        stages=[stage("sft", data["sft"], steps=1, mode="sft")],
        export={"enabled": False},
    )
    from iptkit.trainer.models import architecture, build_model

    cfg = load_config(config).model
    initial = build_model(cfg, architecture(cfg), seed=0)
    batch = StageBatches(open_shards(data["sft"]), "sft", 0, 0, Layout(2, 1, 1, 0))
    inputs = batch.micro_batch(0, 0)
    mask = torch.stack([torch.from_numpy(np.asarray(open_shards(data["sft"])[0].loss_mask))] * 2)
    with torch.no_grad():
        out = initial(input_ids=inputs["input_ids"], position_ids=inputs["position_ids"]).logits
    per_token = F.cross_entropy(
        out[:, :-1].transpose(1, 2), inputs["input_ids"][:, 1:], reduction="none"
    )
    on_response = per_token[mask[:, 1:] == 1].mean().item()
    on_everything = per_token.mean().item()

    run(config)
    logged = losses(tmp_path / "run")[1]
    assert logged == pytest.approx(on_response, rel=1e-5)
    assert abs(logged - on_everything) > 1e-3


def test_two_ranks_zero3_match_one_rank_and_export(
    tmp_path: Path, data: dict[str, Path], in_process: None
) -> None:
    """2 ranks x 1 micro-batch (ZeRO-3, scripts/train.sh) == 1 rank x 2 micro-batches (ZeRO-2)."""
    one = write_config(
        tmp_path / "one.yaml",
        run_dir=str(tmp_path / "one"),
        deepspeed="zero2",
        gradient_accumulation_steps=2,
        activation_checkpointing=True,
        stages=[stage("pt", data["pt"], steps=6)],
    )
    zero3 = tmp_path / "zero3.json"
    zero3.write_text(json.dumps(ZERO3_ALL_PARTITIONED))
    two = write_config(
        tmp_path / "two.yaml",
        run_dir=str(tmp_path / "two"),
        deepspeed=str(zero3),
        stages=[stage("pt", data["pt"], steps=6)],
    )
    launch("bash", "scripts/train.sh", str(two), "--num_gpus", "2", "--master_port", free_port())
    single = run(one)

    expected, got = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert list(got) == list(range(1, 7))
    np.testing.assert_allclose([got[s] for s in got], [expected[s] for s in got], rtol=1e-4)
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "two" / "hf")
    torch.testing.assert_close(
        logits(exported, data["pt"]), logits(single.engine.module, data["pt"]), rtol=1e-3, atol=1e-3
    )


def test_zero3_export_reloads_with_the_same_logits(
    tmp_path: Path, data: dict[str, Path], in_process: None
) -> None:
    zero3 = tmp_path / "zero3.json"
    zero3.write_text(json.dumps(ZERO3_ALL_PARTITIONED))
    config = write_config(
        tmp_path / "run.yaml", deepspeed=str(zero3), stages=[stage("pt", data["pt"], steps=3)]
    )
    result = run(config)
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "hf")
    assert next(exported.parameters()).dtype == torch.float32
    result.engine.module.eval()
    torch.testing.assert_close(
        logits(exported, data["pt"]), logits(result.engine.module, data["pt"]), rtol=0, atol=1e-6
    )


def test_killed_run_resumes_with_identical_losses(
    tmp_path: Path, data: dict[str, Path], in_process: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL a run after its first checkpoint; resuming takes over the lock the killed run
    left and gives the uninterrupted losses."""
    fields: dict[str, Any] = dict(
        deepspeed="zero2",
        model={"config": "llama-tiny", "overrides": {"attention_dropout": 0.2}},
        stages=[stage("pt", data["pt"], steps=40)],
        checkpoint={"every_steps": 4, "keep_last": 2},
        export={"enabled": False},
    )
    reference = write_config(tmp_path / "ref.yaml", run_dir=str(tmp_path / "ref"), **fields)
    killed = write_config(tmp_path / "killed.yaml", run_dir=str(tmp_path / "killed"), **fields)

    proc = subprocess.Popen(
        [sys.executable, "-m", "iptkit.trainer", str(killed)],
        cwd=REPO,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.monotonic() + 120
    while not any(checkpoints.glob("step-*")) and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, proc.stderr.read().decode()[-3000:]
    resumed_from = max(int(p.name.split("-")[1]) for p in checkpoints.glob("step-*"))
    assert resumed_from < 40

    assert json.loads((tmp_path / "killed" / "trainer.lock").read_text())["pid"] == proc.pid
    capsys.readouterr()
    run(killed)
    assert f"taking over the lock of {tmp_path / 'killed'} left by pid {proc.pid}" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "killed" / "trainer.lock").exists()
    run(reference)
    expected, got = losses(tmp_path / "ref"), losses(tmp_path / "killed")
    assert list(got) == list(range(1, 41))
    assert [got[s] for s in range(resumed_from + 1, 41)] == [
        expected[s] for s in range(resumed_from + 1, 41)
    ]


def test_data_that_does_not_fit_the_model_is_refused(
    tmp_path: Path, data: dict[str, Path], in_process: None
) -> None:
    config = write_config(tmp_path / "run.yaml", stages=[stage("pt", data["pt"], steps=1)])
    with pytest.raises(IptkitError, match=f"vocab_size {VOCAB} exceeds the model's 40"):
        run(config, "model.overrides={vocab_size: 40}")
    with pytest.raises(IptkitError, match="seq_len 32 exceeds the model's max_position_embed"):
        run(config, "model.overrides={max_position_embeddings: 16}")
    other = write_tokenizer(tmp_path / "other")
    other.write_text(other.read_text().replace('"w1"', '"v1"'))
    with pytest.raises(IptkitError, match="is not the one the shards were packed with"):
        run(config, f"tokenizer={other}")
    second = write_shards(tmp_path / "other-shards", other, rows=4)
    with pytest.raises(IptkitError, match="was tokenized with .* not the run's tokenizer"):
        run(
            config,
            f"stages=[{{name: a, data: {data['pt']}, steps: 1, lr: 0.1}}, "
            f"{{name: b, data: {second}, steps: 1, lr: 0.1}}]",
        )


def test_continue_from_an_export_and_refuse_a_changed_resume(
    tmp_path: Path, data: dict[str, Path], in_process: None
) -> None:
    """An export is a `model.pretrained` for the next run (continual pre-training, then SFT)."""
    first = write_config(
        tmp_path / "first.yaml",
        run_dir=str(tmp_path / "first"),
        stages=[stage("pt", data["pt"], steps=2)],
    )
    run(first)
    exported = tmp_path / "first" / "hf"
    second = write_config(
        tmp_path / "second.yaml",
        run_dir=str(tmp_path / "second"),
        model={"pretrained": str(exported)},
        stages=[stage("sft", data["sft"], steps=2, mode="sft")],
    )
    result = run(second)
    assert result.step == 2
    with pytest.raises(
        IptkitError, match="already holds checkpoints and checkpoint.resume is false"
    ):
        run(second, "checkpoint.resume=false")
    with pytest.raises(
        IptkitError, match=r"different config(.|\n)*stages.0.steps: 2 -> 3(.|\n)*allow-config"
    ):
        run(second, "stages.0.steps=3")


def test_resuming_with_a_changed_config_is_refused_unless_allowed(
    tmp_path: Path, data: dict[str, Path], in_process: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seed, batch size, learning rate, model and data changed on resume: refused with the list
    of changes and the flag, config.yaml untouched; with the flag, resumed and the old kept."""
    config = write_config(
        tmp_path / "run.yaml",
        stages=[stage("pt", data["pt"], steps=2)],
        export={"enabled": False},
    )
    run(config)
    run_dir = tmp_path / "run"
    saved = (run_dir / "config.yaml").read_bytes()
    other = write_shards(tmp_path / "other", data["tok"], rows=64, seed=1)
    changed = [
        "seed=1",
        "micro_batch_size=4",
        "stages.0.lr=0.01",
        "model.overrides={attention_dropout: 0.1}",
        f"stages.0.data={other}",
        "metrics.plot=true",  # reporting is free to change
    ]
    capsys.readouterr()
    assert main([str(config), *(f"--set={s}" for s in changed)]) == 2
    err = capsys.readouterr().err
    for line in (
        "seed: 0 -> 1",
        "micro_batch_size: 2 -> 4",
        "stages.0.lr: 0.003 -> 0.01",
        'model.overrides: {} -> {"attention_dropout": 0.1}',
        "stages.0.data (manifest sha256): ",
        "Pass --allow-config-change to resume",
    ):
        assert line in err, err
    assert "metrics" not in err
    assert (run_dir / "config.yaml").read_bytes() == saved
    assert not list(run_dir.glob("config.until-*"))

    allowed = ["--set=stages.0.steps=3", "--set=stages.0.lr=0.01", "--allow-config-change"]
    assert main([str(config), *allowed]) == 0
    err = capsys.readouterr().err
    assert "changed config (--allow-config-change)" in err
    assert "stages.0.steps: 2 -> 3" in err and "stages.0.lr: 0.003 -> 0.01" in err
    assert (run_dir / "config.until-step-00000002.yaml").read_bytes() == saved
    assert load_config(run_dir / "config.yaml").stages[0].steps == 3
    assert list(losses(run_dir)) == [1, 2, 3]


class _Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def test_a_checkpoint_that_would_run_code_is_refused(
    tmp_path: Path, data: dict[str, Path], in_process: None
) -> None:
    """A pickle payload in the RNG file or in DeepSpeed's optimizer states (ZeRO-3) refuses the
    resume and never runs; the untouched checkpoint then resumes."""
    zero3 = tmp_path / "zero3.json"
    zero3.write_text(json.dumps(ZERO3_ALL_PARTITIONED))
    config = write_config(
        tmp_path / "run.yaml",
        deepspeed=str(zero3),
        stages=[stage("pt", data["pt"], steps=2)],
        export={"enabled": False},
    )
    run(config)
    checkpoint = tmp_path / "run" / "checkpoints" / "step-00000002"
    marker = tmp_path / "code-ran"
    rng = checkpoint / "rng-rank0.pt"
    optim = checkpoint / "state" / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    originals = {path: path.read_bytes() for path in (rng, optim)}

    torch.save({"python_state": _Payload(marker)}, rng)
    with pytest.raises(UnsafeCheckpoint, match="rng-rank0.pt holds a reference to exec,"):
        run(config)
    assert not marker.exists()
    rng.write_bytes(originals[rng])

    states = torch.load(optim, weights_only=False)  # our own file, trusted here
    states["payload"] = _Payload(marker)
    torch.save(states, optim)
    with pytest.raises(UnsafeCheckpoint, match="optim_states.pt holds a reference to exec,"):
        run(config)
    assert not marker.exists()
    optim.write_bytes(originals[optim])

    assert run(config).step == 2  # DeepSpeed's ZeRO-3 files load with weights_only=True


def test_a_second_trainer_on_the_run_dir_is_refused(tmp_path: Path, data: dict[str, Path]) -> None:
    """While one trainer runs, a second one on its run_dir exits 2 naming the holder (pid, host,
    start time) and touches nothing: no duplicated metrics, config.yaml unchanged."""
    config = write_config(
        tmp_path / "run.yaml",
        stages=[stage("pt", data["pt"], steps=100_000)],
        export={"enabled": False},
    )
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "iptkit.trainer", str(config)]
    holder = subprocess.Popen(
        command, cwd=REPO, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_for(lambda: _logged_steps(run_dir), holder, "a step logged")
        saved = (run_dir / "config.yaml").read_bytes()
        second = subprocess.run(
            command, cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=120
        )
        assert holder.poll() is None
        steps = _logged_steps(run_dir)
    finally:
        holder.kill()
        holder.wait()
    assert second.returncode == 2, second.stderr[-3000:]
    assert f"{run_dir} is in use by another trainer: pid {holder.pid} on host " in second.stderr
    assert f"on host {socket.gethostname()}, started 20" in second.stderr
    assert (run_dir / "config.yaml").read_bytes() == saved
    assert steps == list(range(1, len(steps) + 1))


def test_a_stale_lock_is_taken_over_and_another_hosts_lock_is_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_file = tmp_path / "trainer.lock"
    record = {"pid": dead.pid, "host": socket.gethostname(), "started": "2020-01-01T00:00:00+00:00"}
    lock_file.write_text(json.dumps(record))
    with RunLock.acquire(tmp_path):
        assert f"left by pid {dead.pid} on host" in capsys.readouterr().err
        assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    assert not lock_file.exists()

    lock_file.write_text(json.dumps(record | {"host": "elsewhere", "pid": os.getpid()}))
    with pytest.raises(
        RunLocked, match=f"another host: pid {os.getpid()} on host elsewhere.*delete"
    ):
        RunLock.acquire(tmp_path)
    assert lock_file.exists()


def test_a_signal_to_train_sh_stops_every_rank_and_the_run_resumes(
    tmp_path: Path, data: dict[str, Path]
) -> None:
    """SIGTERM to scripts/train.sh (a scheduler's) stops the launcher and both ranks within
    seconds, long before the end and the export; the rerun resumes from the last checkpoint, and
    SIGINT (Ctrl-C) stops it the same way."""
    config = write_config(
        tmp_path / "run.yaml",
        stages=[stage("pt", data["pt"], steps=100_000)],
        checkpoint={"every_steps": 3, "keep_last": 2},
    )
    run_dir = tmp_path / "run"
    checkpoints = run_dir / "checkpoints"

    def past_a_checkpoint() -> bool:
        done = latest_checkpoint(checkpoints)
        return done is not None and max(_logged_steps(run_dir), default=0) > int(done.name[5:])

    log = _launch_and_signal(config, tmp_path / "first.log", past_a_checkpoint, signal.SIGTERM)
    resumed_from = latest_checkpoint(checkpoints)
    assert resumed_from is not None, log
    reached = max(_logged_steps(run_dir))

    second = tmp_path / "second.log"
    log = _launch_and_signal(
        config,
        second,
        # Past where the first run got: steps the resumed run trained, not the first run's lines.
        lambda: "resumed from" in second.read_text() and _logged_steps(run_dir)[-1:] > [reached],
        signal.SIGINT,
    )
    assert f"resumed from {resumed_from} (step {int(resumed_from.name[5:])})" in log
    assert "taking over the lock" in log
    steps = _logged_steps(run_dir)
    assert steps == list(range(1, len(steps) + 1))


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _launch_and_signal(
    config: Path, log_file: Path, ready: Callable[[], bool], signum: signal.Signals
) -> str:
    """Start 2 CPU ranks through scripts/train.sh, send `signum` once `ready()`, and check that
    the script and every process under it are gone within 10 s, with no export; return the log."""
    with log_file.open("w") as log:
        proc = subprocess.Popen(
            ["bash", "scripts/train.sh", str(config), "--num_gpus", "2"]
            + ["--master_port", free_port()],
            cwd=REPO,
            env=clean_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            # As from a terminal: a suite started in the background of a non-interactive shell
            # ignores SIGINT, and a shell that starts with it ignored cannot trap it.
            preexec_fn=_default_sigint,
        )
    tree: list[psutil.Process] = []
    try:
        _wait_for(ready, proc, "the run to get there", log_file)
        tree = psutil.Process(proc.pid).children(recursive=True)
        ranks = [p for p in tree if any(a.startswith("--local_rank") for a in p.cmdline())]
        assert len(ranks) == 2, [p.cmdline() for p in tree]
        proc.send_signal(signum)
        _, alive = psutil.wait_procs(tree, timeout=10)
        assert not alive, f"still running 10 s after {signum.name}: {[p.cmdline() for p in alive]}"
        assert proc.wait(timeout=5) == 128 + signum
    finally:
        for p in tree:
            with contextlib.suppress(psutil.Error):
                p.kill()
        proc.kill()
        proc.wait()
    assert not (Path(load_config(config).run_dir) / "hf").exists()
    return log_file.read_text()


def _wait_for(
    ready: Callable[[], bool], proc: subprocess.Popen[Any], what: str, log: Path | None = None
) -> None:
    deadline = time.monotonic() + 180
    while not ready():
        assert proc.poll() is None, f"exited {proc.returncode}: " + (
            log.read_text()[-3000:] if log else ""
        )
        assert time.monotonic() < deadline, f"waited 180 s for {what}"
        time.sleep(0.05)


def _logged_steps(run_dir: Path) -> list[int]:
    """Steps in metrics.jsonl so far (a line being written is left out)."""
    path = run_dir / "metrics.jsonl"
    steps = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        with contextlib.suppress(ValueError):
            steps.append(json.loads(line)["step"])
    return steps
