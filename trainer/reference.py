"""The frozen reference model of a `dpo` stage: the policy as it was when the stage began.

At the stage's first step the weights are gathered (export.gather_parameters) and rank 0
writes them to run_dir/reference/STAGE.safetensors (a temporary name, then a rename); every
rank then loads that file into a model of its own, outside DeepSpeed, in eval mode and without
gradients. A run resumed in the middle of the stage loads the same file, so the reference,
like everything else, continues exactly. Each rank holds the whole reference model (under
ZeRO-3 too): a second copy of the weights, not of the optimizer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, PretrainedConfig

from iptkit.trainer.checkpoint import ResumeError
from iptkit.trainer.export import gather_parameters


def reference_file(run_dir: Path, stage: str) -> Path:
    return run_dir / "reference" / f"{stage}.safetensors"


def reference_model(
    engine: Any,
    config: PretrainedConfig,
    attn_implementation: str,
    file: Path,
    *,
    stage_start: bool,
    dtype: torch.dtype,
) -> torch.nn.Module:
    """The stage's reference: written from the current weights at `stage_start`, else read
    back (a resumed run); a resumed run without the file is refused."""
    if stage_start:
        state = gather_parameters(engine, dtype)
        if dist.get_rank() == 0:
            file.parent.mkdir(parents=True, exist_ok=True)
            temp = file.with_name(f".tmp-{file.name}")
            save_file(state, str(temp))
            os.replace(temp, file)
        dist.barrier()
    elif not file.is_file():
        raise ResumeError(
            f"{file} is missing: the dpo stage's reference model is written when the stage "
            "starts and read on resume; resume from a checkpoint before the stage, or copy it back"
        )
    saved = load_file(str(file))
    # Building a model draws its initial weights from the global generator; they are replaced
    # at once, and drawing them must not move the generator that dropout goes on using (a run
    # resumed mid-stage builds the reference at another point than the run it continues).
    with torch.random.fork_rng(devices=[]):
        model = AutoModelForCausalLM.from_config(
            config, dtype=dtype, attn_implementation=attn_implementation
        )
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(saved[name])
    model.requires_grad_(False)
    return model.eval().to(engine.device)
