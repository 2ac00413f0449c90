"""The training run: set up, resume, loop over steps, checkpoint, export.

Read train() top to bottom; everything it calls lives in a module with one job
(config, data, models, optim, checkpoint, export, metrics).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import deepspeed
import torch
import torch.distributed as dist
import yaml
from deepspeed.accelerator import get_accelerator

from iptkit.trainer.checkpoint import (
    ALLOW_FLAG,
    ResumeError,
    check_resume,
    latest_checkpoint,
    load_checkpoint,
    resume_identity,
    save_checkpoint,
)
from iptkit.trainer.config import PREFERENCE_MODES, RunConfig, StageConfig
from iptkit.trainer.data import (
    Layout,
    StageBatches,
    check_fits,
    items,
    open_stage,
    open_validation,
    resolve_tokenizer,
)
from iptkit.trainer.distributed import init_distributed
from iptkit.trainer.evaluate import Evaluator
from iptkit.trainer.export import export_hf
from iptkit.trainer.metrics import MetricsLog, plot_loss
from iptkit.trainer.models import architecture, build_model, flops_per_token
from iptkit.trainer.objective import objective
from iptkit.trainer.optim import (
    WarmupCosine,
    deepspeed_config,
    parameter_groups,
    stage_schedules,
)
from iptkit.trainer.reference import reference_file, reference_model
from iptkit.trainer.runlock import RunLock, RunLocked


@dataclass
class TrainResult:
    """What a finished run leaves in memory, for callers that keep going (tests, notebooks)."""

    engine: Any
    """The DeepSpeed engine; engine.module is the trained model."""
    step: int
    """Optimizer steps completed over the whole run, resumed ones included."""


def train(run: RunConfig, *, allow_config_change: bool = False) -> TrainResult:
    """Train the run's stages in order on one model, resuming from its newest checkpoint.

    Rank 0 holds run_dir's lock (runlock.py) throughout. Resuming with a config that differs
    from the checkpoint's in what shapes training (checkpoint.resume_identity) is refused
    unless `allow_config_change`.
    """
    rank, world = init_distributed()
    run_dir = Path(run.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock_run_dir(run_dir, rank, world)
    try:
        return _train(run, rank, world, allow_config_change)
    finally:
        if lock is not None:
            lock.release()


def _lock_run_dir(run_dir: Path, rank: int, world: int) -> RunLock | None:
    """Rank 0 takes the lock; every rank raises RunLocked if it could not."""
    lock, refusal = None, None
    if rank == 0:
        try:
            lock = RunLock.acquire(run_dir)
        except RunLocked as exc:
            refusal = exc
    refused = torch.tensor([refusal is not None], dtype=torch.int32, device=_device())
    if world > 1:
        dist.broadcast(refused, src=0)
    if refusal is not None:
        raise refusal
    if refused.item():
        raise RunLocked(f"rank 0 could not lock {run_dir} (its error says who holds it)")
    return lock


def _device() -> torch.device:
    return torch.device(get_accelerator().current_device_name())


def _train(run: RunConfig, rank: int, world: int, allow_config_change: bool) -> TrainResult:
    ds_config = deepspeed_config(run)
    layout = Layout(run.micro_batch_size, run.gradient_accumulation_steps, world, rank)
    run_dir = Path(run.run_dir)

    # Data before the model: a wrong path, tokenizer or mode fails in seconds, not after loading.
    # If it fails, the launcher (deepspeed, torchrun) stops the other ranks too.
    verify = int(os.environ["LOCAL_RANK"]) == 0
    first = open_stage(run.stages[0], None, verify)
    tokenizer_file = resolve_tokenizer(run.tokenizer, run.model.pretrained, first)
    sha = first.manifest.tokenizer.sha256
    shard_sets = [first] + [open_stage(s, sha, verify) for s in run.stages[1:]]
    validations = [open_validation(s, sha, verify) for s in run.stages]
    stage_steps = [
        stage.total_steps(items(shards), layout.global_batch)
        for stage, shards in zip(run.stages, shard_sets, strict=True)
    ]
    schedules = list(stage_schedules(run, stage_steps))
    total_steps = sum(stage_steps)
    # What a checkpoint must agree with to be resumed: seed, model, batch, stages, exact data.
    identity = resume_identity(
        run,
        [hashlib.sha256(shards.manifest.to_json().encode()).hexdigest() for shards in shard_sets],
        ds_config,
    )

    checkpoints = run_dir / "checkpoints"
    latest = latest_checkpoint(checkpoints)
    changes: list[str] = []
    if latest is not None:
        if not run.checkpoint.resume:
            raise ResumeError(
                f"{checkpoints} already holds checkpoints and checkpoint.resume is false; use a "
                "new run_dir, or delete them to start over"
            )
        changes = check_resume(latest, identity, world, allow_config_change)
    if rank == 0:
        _write_config(run, run_dir, latest, changes)

    config = architecture(run.model)
    for stage, shards in zip(run.stages, shard_sets, strict=True):
        check_fits(shards, config, f"stage {stage.name!r}")
    # Every rank builds the whole fp32 model in CPU memory; deepspeed.initialize then moves it
    # to the accelerator, partitioned under ZeRO-3.
    model = build_model(run.model, config, run.seed)
    if run.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    parameters = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
    engine, *_ = deepspeed.initialize(
        model=model,
        model_parameters=parameter_groups(model),
        config=ds_config,
        lr_scheduler=lambda optimizer: WarmupCosine(optimizer, schedules),
    )

    if latest is not None:
        step = load_checkpoint(engine, latest)
        if rank == 0:
            print(f"resumed from {latest} (step {step})", file=sys.stderr, flush=True)
    else:
        step = 0
        torch.manual_seed(run.seed + rank)  # dropout differs per rank, as with distinct data
    batches = [
        StageBatches(shards, stage.mode, run.seed, index, layout, shuffle=stage.order == "shuffle")
        for index, (stage, shards) in enumerate(zip(run.stages, shard_sets, strict=True))
    ]
    evaluators = [
        None if v is None else Evaluator(v, stage, run.eval, run.micro_batch_size)
        for stage, v in zip(run.stages, validations, strict=True)
    ]
    dtype = torch.bfloat16 if run.precision == "bf16" else torch.float32
    reference: tuple[int, Any] | None = None  # (stage index, model) of the dpo stage running
    metrics = MetricsLog(
        run_dir,
        run.metrics,
        enabled=rank == 0,
        resumed_step=step,
        total_steps=total_steps,
        peak_flops=run.metrics.peak_tflops * 1e12 * world if run.metrics.peak_tflops else None,
    )

    engine.train()
    while step < total_steps:
        k = next(i for i, s in enumerate(schedules) if step < s.start + s.steps)
        stage = run.stages[k]
        if stage.mode == "dpo" and (reference is None or reference[0] != k):
            file = reference_file(run_dir, stage.name)
            reference = (k, reference_model(engine, config, run.model.attn_implementation, file,
                                            stage_start=step == schedules[k].start, dtype=dtype))  # fmt: skip
        ref_model = reference[1] if reference is not None and reference[0] == k else None
        lr = engine.lr_scheduler.get_last_lr()[0]
        started = time.perf_counter()
        loss, stats = train_step(engine, batches[k], step - schedules[k].start, stage, ref_model)
        seconds = time.perf_counter() - started
        step += 1
        seq_len = shard_sets[k].manifest.seq_len
        grad_norm = engine.get_global_grad_norm()
        rows = 2 if stage.mode in PREFERENCE_MODES else 1
        metrics.log(
            step=step,
            stage=stage.name,
            loss=loss,
            lr=lr,
            grad_norm=None if grad_norm is None else float(grad_norm),
            tokens=layout.global_batch * rows * seq_len,
            seconds=seconds,
            flops_per_token=flops_per_token(config, parameters, seq_len),
            extra=stats,
        )
        stage_end = step == schedules[k].start + schedules[k].steps
        every = run.eval.every_steps
        if evaluators[k] is not None and (stage_end or (every and step % every == 0)):
            metrics.log_eval(
                step=step, stage=stage.name, values=evaluators[k].run(engine, ref_model)
            )
        every = run.checkpoint.every_steps
        if step == total_steps or (every and step % every == 0):
            save_checkpoint(engine, checkpoints, step, identity, run.checkpoint.keep_last)
    metrics.close()

    if run.export.enabled:
        export_hf(engine, run.export_dir, tokenizer_file, first.manifest, dtype)
    if rank == 0 and run.metrics.plot:
        plot_loss(metrics.path, run_dir / "loss.png")
    return TrainResult(engine=engine, step=step)


def _write_config(run: RunConfig, run_dir: Path, latest: Path | None, changes: list[str]) -> None:
    """run_dir/config.yaml: the config as run, defaults filled in, next to what it produced. A
    resume allowed to change the config keeps the previous one as config.until-step-N.yaml."""
    path = run_dir / "config.yaml"
    if changes and latest is not None:
        note = f"note: resuming {latest} with a changed config ({ALLOW_FLAG}):\n  " + "\n  ".join(
            changes
        )
        if path.is_file():
            kept = run_dir / f"config.until-{latest.name}.yaml"
            path.replace(kept)
            note += f"\nthe previous config is kept as {kept}"
        print(note, file=sys.stderr, flush=True)
    path.write_text(yaml.safe_dump(asdict(run), sort_keys=False))


def train_step(
    engine: Any, batches: StageBatches, stage_step: int, stage: StageConfig, reference: Any = None
) -> tuple[float, dict[str, float]]:
    """One optimizer step; returns its loss and preference numbers (objective.py), each
    averaged over micro-batches and ranks.

    DeepSpeed scales each micro-batch's loss by 1/accumulation and only updates
    the weights at the accumulation boundary, so engine.step() runs every time.
    """
    micro_batches = batches.layout.accumulation
    total: torch.Tensor | None = None
    keys: list[str] = []
    for micro in range(micro_batches):
        batch = {k: v.to(engine.device) for k, v in batches.micro_batch(stage_step, micro).items()}
        loss, stats = objective(engine, batch, stage, reference)
        engine.backward(loss)
        engine.step()
        keys = list(stats)
        values = torch.tensor([loss.item(), *stats.values()], device=engine.device)
        total = values if total is None else total + values
    assert total is not None
    dist.all_reduce(total)
    mean = (total / (micro_batches * dist.get_world_size())).tolist()
    return mean[0], dict(zip(keys, mean[1:], strict=True))
