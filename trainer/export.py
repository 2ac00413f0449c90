"""Export the trained model in Hugging Face format: safetensors, config, tokenizer.

The directory loads with ``AutoModelForCausalLM.from_pretrained`` and so with
lm-eval's ``hf`` model and vLLM. Under ZeRO-3 each parameter is gathered from
its partitions one at a time, so accelerator memory never holds more than one
whole tensor beyond the shards; rank 0 collects the state dict in CPU memory.
The directory is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import deepspeed
import torch
import torch.distributed as dist
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from iptkit.shards import Manifest


def export_hf(
    engine: Any, out_dir: Path, tokenizer_file: Path, manifest: Manifest, dtype: torch.dtype
) -> None:
    """Gather the weights (a collective: call on every rank); rank 0 writes `out_dir`."""
    model = engine.module
    state = gather_parameters(engine, dtype)
    if dist.get_rank() == 0:
        temp = out_dir.with_name(f".tmp-{out_dir.name}")
        shutil.rmtree(temp, ignore_errors=True)
        model.config.dtype = dtype
        model.save_pretrained(temp, state_dict=state, safe_serialization=True)
        load_tokenizer(tokenizer_file, manifest).save_pretrained(temp)
        # The original bytes, not transformers' re-serialisation: its sha256 then still matches
        # the shards' manifest, so the export can be continued (model.pretrained) on them.
        shutil.copyfile(tokenizer_file, temp / "tokenizer.json")
        shutil.rmtree(out_dir, ignore_errors=True)
        temp.replace(out_dir)
    dist.barrier()


def gather_parameters(engine: Any, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Every parameter, whole, on rank 0's CPU (other ranks get {}); a collective under ZeRO-3,
    one tensor at a time. Tied weights appear once, as named_parameters gives them."""
    state = {}
    for name, param in engine.module.named_parameters():
        with deepspeed.zero.GatheredParameters([param], enabled=hasattr(param, "ds_id")):
            if dist.get_rank() == 0:
                state[name] = param.detach().to("cpu", dtype).clone()
    return state


def load_tokenizer(tokenizer_file: Path, manifest: Manifest) -> PreTrainedTokenizerBase:
    """The full tokenizer when tokenizer.json sits in a Hugging Face tokenizer directory.

    A bare tokenizer.json is wrapped, with the special tokens the pack stage recorded.
    """
    if (tokenizer_file.parent / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(tokenizer_file.parent, local_files_only=True)
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_file))
    for role, token_id in manifest.special_tokens.items():
        if role in ("bos", "eos", "pad", "unk"):
            setattr(tokenizer, f"{role}_token", tokenizer.convert_ids_to_tokens(token_id))
    return tokenizer
