"""Tiny tokenizers, shard sets and run configs for the trainer tests (CPU, seconds per run).

The toy language is learnable: a document is BOS then words counting up by a
per-document stride, so after two words every next word is determined. SFT
rows put random words (the prompt, mask 0) before such a count (the response,
mask 1): only a loss restricted to the response can approach zero.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tokenizers import Tokenizer, models, pre_tokenizers

from iptkit.shards import ShardWriter, sha256_file

# These tests run DeepSpeed on the CPU even where a GPU is present.
os.environ.setdefault("DS_ACCELERATOR", "cpu")

REPO = Path(__file__).resolve().parents[1]
SEQ_LEN = 32
WORDS = 60
SPECIAL = {"pad": 0, "bos": 1, "eos": 2}
VOCAB = len(SPECIAL) + WORDS
_DS_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def write_tokenizer(directory: Path) -> Path:
    """A WordLevel tokenizer over <pad> <s> </s> w0..w59, saved as tokenizer.json."""
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2} | {f"w{i}": 3 + i for i in range(WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tokenizer.json"
    tokenizer.save(str(path))
    return path


def _count(rng: np.random.Generator, length: int) -> np.ndarray:
    start, stride = rng.integers(WORDS), rng.integers(1, 4)
    return 3 + (start + stride * np.arange(length)) % WORDS


def write_shards(
    out: Path, tokenizer: Path, *, rows: int, sft: bool = False, seed: int = 0
) -> Path:
    """`rows` packed rows of SEQ_LEN; pretrain rows hold 2-3 documents, SFT rows one pair."""
    rng = np.random.default_rng(seed)
    with ShardWriter(
        out,
        seq_len=SEQ_LEN,
        vocab_size=VOCAB,
        tokenizer_path=str(tokenizer),
        tokenizer_sha256=sha256_file(tokenizer),
        special_tokens=SPECIAL,
        spec_hash="test",
        seed=seed,
        has_loss_mask=sft,
        sequences_per_shard=16,
    ) as writer:
        for _ in range(rows):
            if sft:
                prompt = rng.integers(3, VOCAB, size=12)
                tokens = np.concatenate([[1], prompt, _count(rng, SEQ_LEN - 13)])
                mask = (np.arange(SEQ_LEN) >= 15).astype(np.uint8)  # the count's third word on
                writer.add(tokens, mask, (0,))
            else:
                cuts = sorted(
                    rng.choice(np.arange(6, SEQ_LEN - 6), size=rng.integers(1, 3), replace=False)
                )
                starts = [0, *cuts]
                lengths = np.diff([*starts, SEQ_LEN])
                tokens = np.concatenate(
                    [np.concatenate([[1], _count(rng, n - 1)]) for n in lengths]
                )
                writer.add(tokens, None, starts)
    return out


def write_data(root: Path, pt_rows: int, sft_rows: int) -> dict[str, Path]:
    """A tokenizer, pre-training shards and SFT shards (with loss masks) under `root`."""
    tok = write_tokenizer(root / "tok")
    return {
        "tok": tok,
        "pt": write_shards(root / "pt", tok, rows=pt_rows),
        "sft": write_shards(root / "sft", tok, rows=sft_rows, sft=True),
    }


def write_config(path: Path, **overrides: Any) -> Path:
    """A run YAML: tiny Llama, fp32, ZeRO-1, no progress bar; top-level keys replaced by overrides."""
    config: dict[str, Any] = {
        "run_dir": str(path.parent / "run"),
        "seed": 0,
        "model": {"config": "llama-tiny"},
        "deepspeed": "zero1",
        "precision": "fp32",
        "micro_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "stages": [],
        "checkpoint": {"every_steps": 0, "keep_last": 2},
        "metrics": {"progress_bar": False, "plot": False},
    }
    config.update(overrides)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def stage(name: str, data: Path, **fields: Any) -> dict[str, Any]:
    return {"name": name, "data": str(data), "lr": 3e-3, "warmup_steps": 2, **fields}


def clean_env() -> dict[str, str]:
    """The environment for a launched trainer: CPU DeepSpeed, no rank variables of ours."""
    env = {k: v for k, v in os.environ.items() if k not in _DS_ENV}
    env["DS_ACCELERATOR"] = "cpu"
    env["PYTHON"] = sys.executable
    return env


def free_port() -> str:
    """A port for a launched run's rendezvous, so parallel test runs do not collide."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


@contextlib.contextmanager
def rank_env_restored() -> Iterator[None]:
    """Undo the rank variables an in-process run sets, so later launches and tests start clean."""
    saved = {name: os.environ.get(name) for name in _DS_ENV}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def write_pairs(out: Path, tokenizer: Path, *, pairs: int, seed: int = 0) -> Path:
    """`pairs` preference pairs (layout pairs): BOS and random prompt words, then as the chosen
    response a count (the toy language), as the rejected one random words; EOS after each."""
    rng = np.random.default_rng(seed)
    with ShardWriter(
        out,
        seq_len=SEQ_LEN,
        vocab_size=VOCAB,
        tokenizer_path=str(tokenizer),
        tokenizer_sha256=sha256_file(tokenizer),
        special_tokens=SPECIAL,
        spec_hash="test",
        seed=seed,
        has_loss_mask=True,
        sequences_per_shard=16,
        layout="pairs",
    ) as writer:
        for _ in range(pairs):
            prompt = np.concatenate([[1], rng.integers(3, VOCAB, size=8)])
            size = int(rng.integers(6, 12))
            for response in (_count(rng, size), rng.integers(3, VOCAB, size=size)):
                tokens = np.zeros(SEQ_LEN, np.int64)
                body = np.concatenate([prompt, response, [2]])
                tokens[: len(body)] = body
                mask = np.zeros(SEQ_LEN, np.uint8)
                mask[len(prompt) : len(body)] = 1
                writer.add(tokens, mask, (0,))
    return out
