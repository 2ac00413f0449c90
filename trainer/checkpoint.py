"""Resumable checkpoints, written atomically, the newest few kept, loaded without running code.

One checkpoint is a directory ``run_dir/checkpoints/step-00000120``::

    state/           DeepSpeed's files: weights, optimizer, scheduler (per-rank ZeRO partitions)
    rng-rank<r>.pt   each rank's RNG states as plain tensors and numbers, so dropout continues
                     as if never stopped
    trainer.json     step, world size and the config that matters to resuming (see
                     `resume_identity`): what resuming continues from and checks

Every rank writes into ``.tmp-step-N``; after a barrier rank 0 renames it to
``step-N``, so a directory with a final name is always complete and a run
killed mid-save resumes from the previous one. The data position is the step
itself (see data.py). All ranks must see the same run_dir (a shared
filesystem on several nodes).

Every ``.pt`` file is read with ``torch.load(weights_only=True)``, DeepSpeed's own included (its
checkpoint engine's loader is replaced by one that passes it): tensors, containers, numbers and
strings, plus four small DeepSpeed classes that its optimizer states hold (`DEEPSPEED_GLOBALS`).
Any other object in a file, such as a pickle that would run code, refuses the resume.
"""

from __future__ import annotations

import json
import pickle
import random
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from deepspeed.accelerator import get_accelerator
from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
from deepspeed.runtime.zero.config import ZeroStageEnum
from deepspeed.utils.tensor_fragment import fragment_address

from iptkit.errors import IptkitError
from iptkit.trainer.config import RunConfig

_STEP_DIR = re.compile(r"step-(\d+)")
_TMP_PREFIX = ".tmp-"
_DS_TAG = "state"
ALLOW_FLAG = "--allow-config-change"
# The only classes besides tensors and plain data in DeepSpeed's checkpoint files (ZeRO 0-3, fp32
# and bf16): plain records whose construction runs no code of the file's choosing.
DEEPSPEED_GLOBALS = [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]
# DeepSpeed JSON values that optim.deepspeed_config fills from the run config's own keys.
_FILLED_FROM_RUN = {
    "train_micro_batch_size_per_gpu",
    "gradient_accumulation_steps",
    "bf16.enabled",
    "optimizer.params.lr",
}


class ResumeError(IptkitError):
    """A checkpoint cannot continue this run as configured."""

    exit_code = 2


class UnsafeCheckpoint(ResumeError):
    """A checkpoint file holds an object that torch.load(weights_only=True) refuses."""


def save_checkpoint(
    engine: Any, root: Path, step: int, identity: dict[str, Any], keep_last: int
) -> Path:
    """Write the checkpoint of `step` on every rank; return its final directory."""
    rank = dist.get_rank()
    final = root / f"step-{step:08d}"
    temp = root / f"{_TMP_PREFIX}{final.name}"
    if rank == 0:
        if temp.exists():  # left by a run killed while saving
            shutil.rmtree(temp)
        temp.mkdir(parents=True)
    dist.barrier()
    engine.save_checkpoint(str(temp), tag=_DS_TAG, save_latest=False)
    torch.save(_rng_state(), temp / f"rng-rank{rank}.pt")
    dist.barrier()
    if rank == 0:
        meta = {"step": step, "world_size": dist.get_world_size(), "config": identity}
        (temp / "trainer.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        temp.replace(final)
        for old in _complete_checkpoints(root)[:-keep_last]:
            # trainer.json first: a kill while deleting leaves debris, never a checkpoint.
            (old / "trainer.json").unlink()
            shutil.rmtree(old)
    dist.barrier()
    return final


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint under `root`, or None."""
    found = _complete_checkpoints(root)
    return found[-1] if found else None


def check_resume(
    path: Path, identity: dict[str, Any], world_size: int, allow_config_change: bool
) -> list[str]:
    """Whether the checkpoint at `path` can continue this run: raise ResumeError if not; return
    the config changes (`key: old -> new`) that `allow_config_change` lets through."""
    meta = json.loads((path / "trainer.json").read_text(encoding="utf-8"))
    if "config" not in meta:
        raise ResumeError(
            f"{path} was written by an older iptkit, whose checkpoints hold pickled RNG states "
            "that cannot be loaded safely; finish that run with the version that started it, "
            "or start over in a new run_dir"
        )
    if meta["world_size"] != world_size:
        raise ResumeError(
            f"{path} was written by {meta['world_size']} ranks and this run has "
            f"{world_size}; ZeRO partitions are per rank, so resume with "
            f"{meta['world_size']} ranks"
        )
    changes = config_changes(meta["config"], identity)
    if changes and not allow_config_change:
        listed = "\n  ".join(changes)
        raise ResumeError(
            f"{path} was written with a different config; resuming would silently continue "
            f"that run under these changes:\n  {listed}\n"
            f"Pass {ALLOW_FLAG} to resume with them anyway (the previous config.yaml is kept), "
            "set the values back, or use a new run_dir to start over"
        )
    return changes


def resume_identity(
    run: RunConfig, manifests: list[str], ds_config: dict[str, Any]
) -> dict[str, Any]:
    """What a resumed run must share with the run that wrote its checkpoint, by dotted key:
    seed, model, tokenizer, precision, batch, each stage (its data by the shard manifest's
    sha256, so a moved directory is the same data), and the DeepSpeed JSON (less the values
    filled in from the keys above). Left out, as free to change: run_dir, checkpoint, metrics,
    export, eval, each stage's validation data, and activation_checkpointing (recomputation gives
    the same numbers)."""
    identity: dict[str, Any] = {
        "seed": run.seed,
        "model.config": run.model.config,
        "model.pretrained": run.model.pretrained,
        "model.overrides": run.model.overrides,
        "model.attn_implementation": run.model.attn_implementation,
        "tokenizer": run.tokenizer,
        "precision": run.precision,
        "micro_batch_size": run.micro_batch_size,
        "gradient_accumulation_steps": run.gradient_accumulation_steps,
        "deepspeed": run.deepspeed,
    }
    for i, (stage, manifest) in enumerate(zip(run.stages, manifests, strict=True)):
        fields = asdict(stage)
        fields.pop("data")
        fields.pop("validation")  # evaluation reads it; training never does
        if stage.mode != "orpo":
            fields.pop("orpo_lambda")  # a mode's own weight only: older checkpoints resume
        if stage.mode != "dpo":
            fields.pop("dpo_beta")
        identity |= {f"stages.{i}.{key}": value for key, value in fields.items()}
        identity[f"stages.{i}.data (manifest sha256)"] = manifest
    identity |= {
        f"deepspeed JSON: {key}": value
        for key, value in _flat(ds_config)
        if key not in _FILLED_FROM_RUN
    }
    return json.loads(json.dumps(identity))  # as trainer.json gives it back (lists, not tuples)


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """`key: old -> new` for every key of two `resume_identity` dicts that differs."""
    keys = list(old) + [k for k in new if k not in old]
    return [
        f"{key}: {_shown(old.get(key))} -> {_shown(new.get(key))}"
        for key in keys
        if old.get(key) != new.get(key)
    ]


def load_checkpoint(engine: Any, path: Path) -> int:
    """Restore everything saved at `path` into `engine` and this process; return its step.
    Every file is read with torch.load(weights_only=True); see the module's docstring."""
    if engine.load_universal_checkpoint():
        raise ResumeError(
            "the DeepSpeed config sets checkpoint.load_universal, whose loader reads files with "
            "torch.load(weights_only=False); remove it to resume an iptkit checkpoint"
        )
    engine.checkpoint_engine.load = safe_load  # DeepSpeed reads every file it resumes through it
    load_path, _ = engine.load_checkpoint(str(path), tag=_DS_TAG)
    if load_path is None:
        raise ResumeError(
            f"DeepSpeed could not read {path / _DS_TAG}; delete {path} to resume from an "
            "older checkpoint"
        )
    _set_rng_state(safe_load(path / f"rng-rank{dist.get_rank()}.pt"))
    return int(json.loads((path / "trainer.json").read_text(encoding="utf-8"))["step"])


def safe_load(path: str | Path, map_location: str | Callable[..., Any] | None = None) -> Any:
    """torch.load with weights_only=True, DeepSpeed's record classes allowed; a file holding
    anything else raises UnsafeCheckpoint (nothing in it has run)."""
    try:
        with torch.serialization.safe_globals(DEEPSPEED_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        what = f"a reference to {found[1]}" if found else str(exc).splitlines()[0]
        raise UnsafeCheckpoint(
            f"{path} holds {what}, which an iptkit checkpoint never contains; refused to load "
            "it, since unpickling it could run code (checkpoints are read with "
            "torch.load(weights_only=True), see docs/trainer.md). Delete the checkpoint "
            "directory that holds it to resume from an older one"
        ) from None


def _flat(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _shown(value: Any) -> str:
    return "(none)" if value is None else json.dumps(value)


def _complete_checkpoints(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    # A step folder without trainer.json is debris (its files deleted), not a checkpoint.
    steps = [
        (int(m[1]), p)
        for p in root.iterdir()
        if (m := _STEP_DIR.fullmatch(p.name)) and (p / "trainer.json").is_file()
    ]
    return [p for _, p in sorted(steps)]


def _rng_state() -> dict[str, Any]:
    """Every RNG as tensors, numbers and strings: what weights_only=True loads."""
    version, python_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    return {
        "python_version": version,
        "python_state": torch.tensor(python_state, dtype=torch.int64),
        "python_gauss": gauss,
        "numpy_kind": kind,
        "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
        "numpy_pos": int(pos),
        "numpy_has_gauss": int(has_gauss),
        "numpy_cached_gaussian": float(cached_gaussian),
        "torch": torch.get_rng_state(),
        "accelerator": get_accelerator().get_rng_state(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    python_state = tuple(int(x) for x in state["python_state"].tolist())
    random.setstate((state["python_version"], python_state, state["python_gauss"]))
    np.random.set_state(
        (
            state["numpy_kind"],
            state["numpy_keys"].numpy().astype(np.uint32),
            state["numpy_pos"],
            state["numpy_has_gauss"],
            state["numpy_cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    get_accelerator().set_rng_state(state["accelerator"])
