"""Optimizer settings and the learning-rate schedule.

The DeepSpeed JSON owns what DeepSpeed does (ZeRO stage, clipping, AdamW's
betas and weight decay); the run YAML owns batch sizes, precision and the
per-stage schedule, and fills the JSON's ``"auto"`` values. A JSON value that
contradicts the YAML is an error rather than a silent winner.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from iptkit.trainer.config import (
    DEEPSPEED_SUFFIXES,
    RunConfig,
    TrainConfigError,
    find_config_file,
)


def deepspeed_config(run: RunConfig) -> dict[str, Any]:
    """The DeepSpeed config dict for `run`, "auto" values filled in and checked."""
    path = find_config_file(run.deepspeed, "deepspeed", DEEPSPEED_SUFFIXES, "deepspeed")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TrainConfigError(f"deepspeed: {path} is not valid JSON ({exc})") from None
    if "scheduler" in config:
        raise TrainConfigError(
            f"deepspeed: remove `scheduler` from {path}; the learning-rate schedule is set per "
            "stage in the run config (lr, warmup_steps, min_lr_ratio)"
        )
    if config.get("optimizer", {}).get("type", "").lower() not in ("adam", "adamw"):
        raise TrainConfigError(
            f'deepspeed: {path} needs an `optimizer` of type "AdamW" (see configs/deepspeed)'
        )
    wanted = {
        ("train_micro_batch_size_per_gpu",): run.micro_batch_size,
        ("gradient_accumulation_steps",): run.gradient_accumulation_steps,
        ("bf16", "enabled"): run.precision == "bf16",
    }
    for keys, value in wanted.items():
        _fill(config, keys, value, path)
    # Only a starting value: WarmupCosine sets the rate before every step.
    config["optimizer"].setdefault("params", {})["lr"] = run.stages[0].lr
    if config.get("fp16", {}).get("enabled") is True:
        raise TrainConfigError(
            f"deepspeed: {path} enables fp16; use `precision: bf16` in the run config instead"
        )
    return config


def parameter_groups(model: torch.nn.Module) -> list[dict[str, Any]]:
    """Weight decay on matrices only: decaying norms and biases pulls them to 0 for no benefit."""
    params = [p for p in model.parameters() if p.requires_grad]
    # Under ZeRO-3 a parameter is an empty placeholder; ds_shape is its real shape.
    matrix = [len(getattr(p, "ds_shape", p.shape)) >= 2 for p in params]
    return [
        {"params": [p for p, m in zip(params, matrix, strict=True) if m]},
        {"params": [p for p, m in zip(params, matrix, strict=True) if not m], "weight_decay": 0.0},
    ]


@dataclass(frozen=True)
class StageSchedule:
    """The schedule of one stage: global steps [start, start + steps), warmup then cosine."""

    start: int
    steps: int
    lr: float
    min_lr: float
    warmup_steps: int

    def lr_at(self, step: int) -> float:
        """Linear warmup to `lr`, then cosine to `min_lr` at the stage's last step."""
        local = step - self.start
        if local < self.warmup_steps:
            return self.lr * (local + 1) / self.warmup_steps
        progress = (local - self.warmup_steps) / max(1, self.steps - self.warmup_steps - 1)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


class WarmupCosine:
    """Learning rate over the run's global optimizer step, one warmup-cosine per stage.

    DeepSpeed calls step() after each optimizer step and saves state_dict() in
    its checkpoints, so a resumed run continues the schedule exactly.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, stages: list[StageSchedule]) -> None:
        self.optimizer = optimizer
        self.stages = stages
        self.step_count = 0
        self._apply()

    def lr_at(self, step: int) -> float:
        stage = next((s for s in self.stages if step < s.start + s.steps), self.stages[-1])
        return stage.lr_at(step)

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, int]:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step_count = state["step_count"]
        self._apply()

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step_count)


def stage_schedules(run: RunConfig, stage_steps: list[int]) -> Iterator[StageSchedule]:
    """Lay the stages end to end on the global step axis."""
    start = 0
    for stage, steps in zip(run.stages, stage_steps, strict=True):
        yield StageSchedule(
            start=start,
            steps=steps,
            lr=stage.lr,
            min_lr=stage.lr * stage.min_lr_ratio,
            warmup_steps=min(stage.warmup_steps, steps),
        )
        start += steps


def _fill(config: dict[str, Any], keys: tuple[str, ...], value: Any, path: object) -> None:
    """Set an "auto" or missing value; refuse one that disagrees with the run config."""
    node = config
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    current = node.get(keys[-1], "auto")
    if current == "auto":
        node[keys[-1]] = value
    elif current != value:
        dotted = ".".join(keys)
        raise TrainConfigError(
            f"deepspeed: {path} sets {dotted} = {current!r} but the run config implies {value!r}; "
            f'set it to "auto" in the JSON and choose it in the run config'
        )
