"""The run configuration: typed dataclasses that are also the YAML schema.

A run YAML maps one-to-one onto :class:`RunConfig`. :func:`load_config`
validates it with pydantic before any process group, model or file exists,
so a wrong key or value fails at once with the dotted key and the fix.
Relative paths are relative to the directory the trainer is launched from,
like the pipeline spec's ``output``; names without a path (``zero2``,
``mistral-500m``) are presets shipped with iptkit (``configs/`` in the source tree, the
package ``iptkit.configs`` when installed), found through importlib.resources.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass

from iptkit.config_file import ConfigFile, find_file, package_dir, shipped_names
from iptkit.errors import ConfigError

CONFIGS_DIR = package_dir("iptkit.configs")
"""The presets shipped with iptkit (configs/ in the source tree, iptkit/configs installed)."""
MODEL_SUFFIXES = (".yaml", ".yml", ".json")
DEEPSPEED_SUFFIXES = (".json",)
TRAIN_SUFFIXES = (".yaml", ".yml")

Mode = Literal["pretrain", "sft", "synth_tune", "orpo", "dpo"]
PREFERENCE_MODES = ("orpo", "dpo")
"""Modes that train on preference pairs (shards with layout `pairs`)."""
_STRICT = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class TrainConfigError(ConfigError):
    """The run configuration is wrong; raised before training starts (exit code 2)."""

    what = "run config"


@dataclass(config=_STRICT)
class ModelConfig:
    """Which model to train: a fresh one from an architecture, or a checkpoint to continue
    (with the preset's training values, such as the papers' dropout, applied onto it)."""

    config: str | None = None
    """Architecture for training from scratch: a preset in configs/models (e.g. `mistral-500m`) or a path to a YAML/JSON Hugging Face config with a `model_type`. With `pretrained`, the preset of the checkpoint's architecture: its training values (dropout: Cheng et al. Tables 8 and 14 train with 0.1; released checkpoints ship 0.0) are applied onto the checkpoint's config, and its architecture keys must match the checkpoint's."""
    pretrained: str | None = None
    """A Hugging Face checkpoint directory to continue training (continual pre-training, SFT)."""
    overrides: dict[str, Any] = Field(default_factory=dict)
    """Config attributes to change, e.g. `{attention_dropout: 0.0, max_position_embeddings: 4096}`; applied last."""
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2", "flex_attention"] = "sdpa"
    """Attention kernel. All of these confine attention to each packed document (transformers derives the block-diagonal mask from the position ids)."""

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if self.config is None and self.pretrained is None:
            raise ValueError(
                "set model.config (train from scratch) or model.pretrained (continue a "
                "checkpoint; with model.config too, the preset's dropout applies onto it)"
            )
        return self


@dataclass(config=_STRICT)
class StageConfig:
    """One stage of the run: its data, what the loss covers, how long and how fast."""

    name: str
    """Label in metrics and logs, e.g. `english`, `polish`, `sft`."""
    data: str
    """Shard directory written by the pack stage (holds manifest.json)."""
    mode: Mode = "pretrain"
    """`pretrain`: loss on every token but padding. `sft`: loss on tokens whose loss mask is 1 (responses). `synth_tune`: the same mechanism for the instruction synthesizer, whose mask marks the instruction-response pairs. `orpo` (Hong et al. 2024) and `dpo` (Rafailov et al. 2023): preference pairs (shards packed with `preference: true`); micro_batch_size then counts pairs. `sft` on preference shards trains on the chosen responses. Padding (the trailing pad ids of a row, `trainer.data.padding`) is never a target in any mode."""
    validation: str | None = None
    """Shard directory of this stage's validation split; default the `validation` folder beside `data` when it holds a manifest.json (the pack stage's `validation` option writes it)."""
    orpo_lambda: float = Field(0.1, ge=0)
    """Mode orpo: weight of the odds-ratio term added to the SFT loss (Hong et al. 2024 use 0.1; PLLuM's value is not published)."""
    dpo_beta: float = Field(0.1, gt=0)
    """Mode dpo: beta, the strength of the pull towards the reference model (Rafailov et al. 2023: 0.1 for dialogue)."""
    steps: int | None = Field(None, ge=1)
    """Optimizer steps in this stage; give this or `epochs`."""
    epochs: float | None = Field(None, gt=0)
    """Passes over the stage's shards, rounded up to whole steps; give this or `steps`."""
    order: Literal["shuffle", "as_written"] = "shuffle"
    """`shuffle`: a seeded permutation per epoch. `as_written`: the shards' own row order every epoch, for shards the pack stage wrote with `order: curriculum` (easy to hard, X-CIT)."""
    lr: float = Field(gt=0)
    """Peak learning rate, reached after warmup (Table 14: 3e-4 for 500M, 2e-4 for 1.3B)."""
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    """Floor of the cosine decay as a fraction of `lr`."""
    warmup_steps: int = Field(0, ge=0)
    """Linear warmup from 0 to `lr` at the start of this stage; each stage warms up again."""

    @model_validator(mode="after")
    def _one_length(self) -> StageConfig:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(f"stage {self.name!r}: set exactly one of steps and epochs")
        return self

    def total_steps(self, sequences: int, global_batch: int) -> int:
        """Optimizer steps of the stage; epochs are converted with the shard set's size."""
        if self.steps is not None:
            return self.steps
        assert self.epochs is not None
        return max(1, math.ceil(self.epochs * sequences / global_batch))


@dataclass(config=_STRICT)
class CheckpointConfig:
    """When to write resumable checkpoints and how many to keep."""

    every_steps: int = Field(1000, ge=0)
    """Write a checkpoint every this many optimizer steps (0: only at the end)."""
    keep_last: int = Field(2, ge=1)
    """Keep only this many newest checkpoints; older ones are deleted after a new one is complete."""
    resume: bool = True
    """Continue from the newest checkpoint in run_dir/checkpoints when there is one. With false, a run_dir that holds checkpoints is an error, so none is overwritten."""


@dataclass(config=_STRICT)
class MetricsConfig:
    """What to report while training."""

    progress_bar: bool = True
    """A tqdm bar on rank 0 when its stderr is a terminal."""
    tensorboard: bool = False
    """Also write TensorBoard events to run_dir/tensorboard (needs the tensorboard package)."""
    peak_tflops: float | None = Field(None, gt=0)
    """Peak dense TFLOP/s of one accelerator at the training precision, for MFU (A100 bf16: 312, H100 SXM: 989). Unset: MFU is not reported."""
    plot: bool = True
    """Draw run_dir/loss.png at the end (needs matplotlib; skipped with a note otherwise)."""

    @model_validator(mode="after")
    def _tensorboard_installed(self) -> MetricsConfig:
        if self.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise ValueError(
                "tensorboard: true needs `pip install tensorboard` (or set it to false)"
            )
        return self


@dataclass(config=_STRICT)
class EvalConfig:
    """Validation while training: the stage's loss on its validation split, and answer lengths."""

    every_steps: int = Field(0, ge=0)
    """Evaluate every this many optimizer steps (0: only at the end of each stage, which always happens when a validation split exists)."""
    max_items: int = Field(256, ge=1)
    """Validation sequences (pairs, in preference modes) evaluated each time: the first ones in the shards' order, the same every time."""
    generate: int = Field(4, ge=0)
    """Prompts (the first validation rows with a loss mask: the tokens before the response) answered greedily each time; their mean answer length in tokens is reported. 0: none."""
    max_new_tokens: int = Field(64, ge=1)
    """Most tokens generated per answer; an answer that reaches it counts as truncated."""


@dataclass(config=_STRICT)
class ExportConfig:
    """The Hugging Face export at the end of the run."""

    enabled: bool = True
    """Write safetensors, config and tokenizer, loadable by transformers, lm-eval and vLLM."""
    dir: str | None = None
    """Where to write it; default run_dir/hf."""


@dataclass(config=_STRICT)
class RunConfig:
    """A whole training run: model, DeepSpeed settings, batch, stages in order, outputs."""

    run_dir: str
    """Output directory: checkpoints/, metrics.jsonl, loss.png, hf/."""
    model: ModelConfig
    """The model to train."""
    stages: list[StageConfig] = Field(min_length=1)
    """Stages run in order on one model and optimizer, e.g. English then the target language (X-CIT), or continual pre-training then SFT (PLLuM)."""
    seed: int = 0
    """Seeds model initialisation, data order and dropout."""
    tokenizer: str | None = None
    """tokenizer.json the shards were made with; default the path in their manifest. Its sha256 must match the manifest."""
    deepspeed: str = "zero2"
    """DeepSpeed JSON: `zero1`, `zero2`, `zero3` (configs/deepspeed) or a path. Keys set to "auto" are filled from this file."""
    precision: Literal["bf16", "fp32"] = "bf16"
    """Training precision; bf16 keeps fp32 master weights in the optimizer."""
    micro_batch_size: int = Field(1, ge=1)
    """Sequences per rank per forward pass."""
    gradient_accumulation_steps: int = Field(1, ge=1)
    """Micro-batches per optimizer step; global batch = micro_batch_size * this * ranks."""
    activation_checkpointing: bool = False
    """Recompute activations in the backward pass (Hugging Face gradient checkpointing) to save memory."""
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    """Checkpointing and resuming."""
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    """Reporting."""
    eval: EvalConfig = Field(default_factory=EvalConfig)
    """Validation loss and answer lengths while training."""
    export: ExportConfig = Field(default_factory=ExportConfig)
    """Hugging Face export."""

    @model_validator(mode="after")
    def _unique_stage_names(self) -> RunConfig:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        return self

    @property
    def export_dir(self) -> Path:
        return Path(self.export.dir) if self.export.dir else Path(self.run_dir) / "hf"


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a run YAML, apply `--set key.path=value` overrides, and validate it, presets
    included (`model.config`, `deepspeed` must name a file or a shipped preset); raise
    `TrainConfigError` listing every problem with its file, line and dotted key."""
    source = ConfigFile.read(
        path,
        what="run config",
        error=TrainConfigError,
        sets=overrides,
        keys_hint="run_dir, model, stages, ...",
    )
    run, problems = source.check(RunConfig)
    # The presets as written, checked even when other keys are wrong: every problem at once.
    data = source.data
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    presets = [
        (("model", "config"), model.get("config"), "models", MODEL_SUFFIXES),
        (("deepspeed",), data.get("deepspeed"), "deepspeed", DEEPSPEED_SUFFIXES),
    ]
    for loc, value, subdir, suffixes in presets:
        if isinstance(value, str) and find_file(value, CONFIGS_DIR / subdir, suffixes) is None:
            problems.append(source.locate(loc, _not_found(value, subdir, suffixes)))
    source.fail(problems)
    return run


def find_config_file(value: str, subdir: str, suffixes: tuple[str, ...], key: str) -> Path:
    """A path as given if it exists, else the preset named `value` in configs/<subdir>
    (shipped with iptkit: found in the installed package as in a source checkout)."""
    found = find_file(value, CONFIGS_DIR / subdir, suffixes)
    if found is None:
        raise TrainConfigError(f"{key}: {_not_found(value, subdir, suffixes)}")
    return found


def _not_found(value: str, subdir: str, suffixes: Sequence[str]) -> str:
    shipped = shipped_names(CONFIGS_DIR / subdir, suffixes)
    return (
        f"{value!r} is neither a file nor a name in configs/{subdir} "
        f"(shipped: {', '.join(shipped) or 'none'})"
    )
