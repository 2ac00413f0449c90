"""`python -m iptkit.trainer CONFIG [--set KEY=VALUE ...] [--validate]`: train one run config.

CONFIG is a run YAML, or the name of a run config shipped with iptkit (configs/train: `demo`,
`instruct-pt-500m`, ...). With --validate the config is checked as training checks it before it
starts (keys and values, the model preset built into a Hugging Face config, the DeepSpeed JSON
with its "auto" values filled), what would run is printed, and nothing else happens: no
process group, model weights or data. Exit code 0: valid; 2: not.

A rerun on the same run_dir resumes from its newest checkpoint; a config that differs from the
checkpoint's in what shapes training is refused with the list of changes, unless
--allow-config-change. A run_dir another trainer holds is refused (run_dir/trainer.lock).

Also the module the deepspeed launcher starts on every rank (scripts/train.sh),
which appends --local_rank; the rank is read from the environment instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from iptkit.errors import IptkitError

if TYPE_CHECKING:
    from iptkit.trainer.config import RunConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iptkit.trainer", description=__doc__)
    parser.add_argument(
        "config", help="run config YAML, or the name of one in configs/train (e.g. demo)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set stages.0.lr=1e-4 (repeatable)",
    )
    parser.add_argument(
        "--validate",
        action="store_true",
        help="check the config and its presets, print what would run, and exit (trains nothing)",
    )
    parser.add_argument(
        "--allow-config-change",
        action="store_true",
        help="resume even though the config differs from the checkpoint's in seed, model, batch, "
        "stages, data or DeepSpeed JSON (the changes are printed; config.yaml is replaced, the "
        "previous one kept as config.until-step-N.yaml)",
    )
    parser.add_argument("--local_rank", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        from iptkit.trainer.config import TRAIN_SUFFIXES, find_config_file, load_config

        path = find_config_file(args.config, "train", TRAIN_SUFFIXES, "CONFIG")
        run = load_config(path, args.set)
        if args.validate:
            print(describe(path, run))
            return 0
        # Imported only now so that --help and config errors do not wait for torch and DeepSpeed.
        from iptkit.trainer.loop import train

        train(run, allow_config_change=args.allow_config_change)
    except IptkitError as exc:
        rank = os.environ.get("RANK")
        prefix = f"[rank {rank}] " if rank not in (None, "0") else ""
        print(f"{prefix}error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def describe(path: Path, run: RunConfig) -> str:
    """What `--validate` prints, after the checks training makes before it starts: the model
    preset built (on the meta device, no memory) and the DeepSpeed JSON filled in."""
    import torch
    from transformers import AutoModelForCausalLM

    from iptkit.trainer.config import (
        CONFIGS_DIR,
        DEEPSPEED_SUFFIXES,
        MODEL_SUFFIXES,
        find_config_file,
    )
    from iptkit.trainer.models import architecture
    from iptkit.trainer.optim import deepspeed_config

    config = architecture(run.model)
    with torch.device("meta"):
        params = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    ds = deepspeed_config(run)
    source = f"pretrained {run.model.pretrained}" if run.model.pretrained else ""
    if run.model.config is not None:
        file = find_config_file(run.model.config, "models", MODEL_SUFFIXES, "model.config")
        preset = f"config {run.model.config} = {_shown(file, CONFIGS_DIR)}"
        source = f"{source}, dropout from {preset}" if source else preset
    ds_file = find_config_file(run.deepspeed, "deepspeed", DEEPSPEED_SUFFIXES, "deepspeed")
    lines = [
        f"run config {path}: valid",
        f"  run_dir     {run.run_dir}",
        f"  model       {source}",
        f"              {type(config).__name__}: {config.num_hidden_layers} layers, hidden "
        f"{config.hidden_size}, vocab {config.vocab_size}, {params / 1e6:.1f}M parameters",
        f"  deepspeed   {run.deepspeed} = {_shown(ds_file, CONFIGS_DIR)} "
        f"(ZeRO stage {ds.get('zero_optimization', {}).get('stage', 0)})",
        f"  batch       {run.micro_batch_size} sequences x {run.gradient_accumulation_steps} "
        f"accumulation per rank, {run.precision}",
        f"  stages ({len(run.stages)}):",
    ]
    for i, stage in enumerate(run.stages, 1):
        length = f"{stage.steps} steps" if stage.steps is not None else f"{stage.epochs} epochs"
        written = (Path(stage.data) / "manifest.json").is_file()
        lines.append(
            f"    {i}. {stage.name}: {stage.mode}, {length}, lr {stage.lr:g}, data {stage.data}"
            + ("" if written else " (no manifest.json there yet)")
        )
    return "\n".join(lines)


def _shown(path: Path, configs: Path) -> str:
    """A preset's file, as `configs/...` plus where that is, or the path given."""
    try:
        rel = path.resolve().relative_to(configs.resolve())
    except ValueError:
        return str(path)
    return f"configs/{rel.as_posix()} ({path})"


if __name__ == "__main__":
    sys.exit(main())
