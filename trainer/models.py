"""The model to train: a preset or Hugging Face config from scratch, or a checkpoint to continue.

Any architecture transformers can build as a causal LM works; the presets in
configs/models are the Table 14 models of Cheng et al. 2024 plus a tiny one for
tests. Each rank builds the whole model in CPU memory (transformers' own
partitioned loading, ``HfDeepSpeedConfig``, needs the accelerate package).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from iptkit.config_file import parse_yaml
from iptkit.trainer.config import (
    MODEL_SUFFIXES,
    ModelConfig,
    TrainConfigError,
    find_config_file,
)


def is_training_key(key: str) -> bool:
    """A config attribute that sets how a model trains, not what it is: the dropout ratios
    (`attention_dropout`, `hidden_dropout`, GPT-style `resid_pdrop`, ...)."""
    return "dropout" in key or key.endswith("pdrop")


def apply_preset(config: PretrainedConfig, preset: dict[str, Any], where: str) -> None:
    """A preset's training values onto a checkpoint's config (in place). The preset must
    describe the checkpoint's architecture: a key both set differently is a wrong preset."""
    if preset["model_type"] != config.model_type:
        raise TrainConfigError(
            f"model.config: {where} is a {preset['model_type']} preset, the checkpoint is "
            f"{config.model_type}; name the preset of the checkpoint's architecture"
        )
    for key, value in preset.items():
        if is_training_key(key):
            setattr(config, key, value)
        elif key in ARCHITECTURE_KEYS and getattr(config, key, value) != value:
            raise TrainConfigError(
                f"model.config: {where} sets {key}={value!r}, the checkpoint has "
                f"{getattr(config, key)!r}; name the preset of the checkpoint's architecture"
            )


# The keys that say which network a preset describes (checked against a checkpoint's).
ARCHITECTURE_KEYS = (
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "vocab_size",
)  # fmt: skip


def architecture(cfg: ModelConfig) -> PretrainedConfig:
    """The Hugging Face config of the model: the preset's, or the checkpoint's with the
    preset's training values (dropout) when both are named; overrides applied last."""
    preset, where = None, ""
    if cfg.config is not None:
        path = find_config_file(cfg.config, "models", MODEL_SUFFIXES, "model.config")
        preset, where = _preset_data(path), str(path)
    if cfg.pretrained is not None:
        if not (Path(cfg.pretrained) / "config.json").is_file():
            raise TrainConfigError(
                f"model.pretrained: {cfg.pretrained} has no config.json; give a Hugging Face "
                "checkpoint directory (as written by save_pretrained or this trainer's export)"
            )
        # A local folder only: never a Hub lookup, whatever the folder holds.
        config = AutoConfig.from_pretrained(cfg.pretrained, local_files_only=True)
        if preset is not None:
            apply_preset(config, preset, where)
    else:
        assert preset is not None
        config = _config_from_data(dict(preset), where)
    for key, value in cfg.overrides.items():
        if not hasattr(config, key):
            raise TrainConfigError(
                f"model.overrides.{key}: {type(config).__name__} has no attribute {key!r}"
            )
        setattr(config, key, value)
    config.use_cache = False  # training never decodes; the KV cache would only cost memory
    return config


def build_model(cfg: ModelConfig, config: PretrainedConfig, seed: int) -> PreTrainedModel:
    """Fresh weights seeded by `seed`, or the checkpoint's weights, in fp32 (DeepSpeed casts)."""
    torch.manual_seed(seed)
    if cfg.pretrained is not None:
        return AutoModelForCausalLM.from_pretrained(
            cfg.pretrained,
            config=config,
            local_files_only=True,
            dtype=torch.float32,
            attn_implementation=cfg.attn_implementation,
        )
    return AutoModelForCausalLM.from_config(
        config, dtype=torch.float32, attn_implementation=cfg.attn_implementation
    )


def flops_per_token(config: PretrainedConfig, parameters: int, seq_len: int) -> float:
    """Training FLOPs per token: 6N for the weights plus 12*layers*hidden*seq_len for attention.

    The estimate of the PaLM paper (appendix B), as nanoGPT uses for MFU.
    """
    return 6 * parameters + 12 * config.num_hidden_layers * config.hidden_size * seq_len


def _preset_data(path: Path) -> dict[str, Any]:
    """A preset file's keys, `model_type` among them."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
    else:  # bounded: an alias bomb or a recursive alias is a located error, not a hang
        data, _ = parse_yaml(text, str(path), TrainConfigError)
    if not isinstance(data, dict) or "model_type" not in data:
        raise TrainConfigError(
            f"model.config: {path} must be a mapping with a `model_type` (e.g. mistral, llama)"
        )
    return data


def _config_from_data(data: dict[str, Any], where: str) -> PretrainedConfig:
    model_type = data.pop("model_type")
    try:
        return AutoConfig.for_model(model_type, **data)
    except ValueError as exc:
        raise TrainConfigError(f"model.config: {where}: {exc}") from None
