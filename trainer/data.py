"""Batches from packed shards: deterministic, sharded across ranks, resumable at any step.

The order is a pure function of (seed, stage, epoch): a stage reads an endless
stream of per-epoch permutations of its sequences, and optimizer step ``s``
takes the ``global_batch`` positions starting at ``s * global_batch``. Within a
step, micro-batch ``m`` of rank ``r`` takes the slice ``(m * world + r)``, so
one rank with N micro-batches and N ranks with one each see the same global
batch. Resuming needs only the step number; there is no sampler state to save.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import PretrainedConfig

from iptkit.errors import IptkitError
from iptkit.shards import MANIFEST_NAME, ShardError, ShardSet, open_shards, sha256_file
from iptkit.trainer.config import PREFERENCE_MODES, Mode, StageConfig
from iptkit.trainer.losses import IGNORE_INDEX


def padding(
    tokens: np.ndarray, doc_starts: np.ndarray, pad: int | None, eos: int | None
) -> np.ndarray:
    """Where a packed row is padding: the trailing run of `pad` ids after its last document
    piece begins (the packer pads only a row's end, `transforms/tail/packing.py`). When the pad
    id is also the EOS id (a tokenizer without a pad token), the run's first token is the last
    document's own EOS and stays a target. A row that ends in its content, or shards whose
    manifest names no pad id, have none."""
    out = np.zeros(len(tokens), dtype=bool)
    if pad is None:
        return out
    first = int(doc_starts[-1]) + 1 if len(doc_starts) else 1  # a piece holds >= 1 token
    end = len(tokens)
    while end > first and tokens[end - 1] == pad:
        end -= 1
    if pad == eos and end < len(tokens):
        end += 1
    out[end:] = True
    return out


class DataMismatchError(IptkitError):
    """Shards do not fit the run: wrong tokenizer, vocabulary, or mode for their loss mask."""

    exit_code = 2


@dataclass(frozen=True)
class Layout:
    """How a global batch is split: per rank, per micro-batch."""

    micro_batch_size: int
    accumulation: int
    world_size: int
    rank: int

    @property
    def global_batch(self) -> int:
        return self.micro_batch_size * self.accumulation * self.world_size


def items(shards: ShardSet) -> int:
    """What a stage steps over: sequences, or preference pairs (two rows each)."""
    return shards.manifest.pairs or len(shards)


def item_rows(shards: ShardSet, item: int) -> list[int]:
    """The rows of one item: the sequence, or a pair's chosen then rejected row."""
    return [2 * item, 2 * item + 1] if shards.manifest.layout == "pairs" else [item]


def rows_batch(shards: ShardSet, rows: list[int], mode: Mode) -> dict[str, torch.Tensor]:
    """input_ids, position_ids (restarting per document) and labels of these rows."""
    tokens = np.stack([np.asarray(shards[i].tokens, dtype=np.int64) for i in rows])
    labels = tokens.copy()
    if mode != "pretrain":
        mask = np.stack([np.asarray(shards[i].loss_mask) for i in rows])
        labels[mask == 0] = IGNORE_INDEX
    # Padding is never a target, in any mode (pretrain has no mask to say so).
    special = shards.manifest.special_tokens
    pads = np.stack(
        [
            padding(row, shards[i].doc_starts, special.get("pad"), special.get("eos"))
            for row, i in zip(tokens, rows, strict=True)
        ]
    )
    labels[pads] = IGNORE_INDEX
    positions = np.stack([shards.position_ids(i) for i in rows])
    return {
        "input_ids": torch.from_numpy(tokens),
        "position_ids": torch.from_numpy(positions),
        "labels": torch.from_numpy(labels),
    }


def items_batch(shards: ShardSet, picked: list[int], mode: Mode) -> dict[str, torch.Tensor]:
    """The rows of these items; for pairs every chosen row first, then every rejected row, so
    a preference loss splits the batch in halves (mode sft on pairs: the chosen rows only)."""
    per_item = [item_rows(shards, i) for i in picked]
    rows = [r[0] for r in per_item]
    if mode in PREFERENCE_MODES:
        rows += [r[1] for r in per_item]
    return rows_batch(shards, rows, mode)


class StageBatches:
    """Micro-batches of one stage for one rank, addressed by (step within the stage, micro-step).

    The stream is of items (`items`): sequences, or preference pairs, whose micro-batch holds
    micro_batch_size pairs, i.e. twice as many rows."""

    def __init__(
        self,
        shards: ShardSet,
        mode: Mode,
        seed: int,
        stage_index: int,
        layout: Layout,
        shuffle: bool = True,
    ) -> None:
        self.shards = shards
        self.mode = mode
        self.layout = layout
        self.shuffle = shuffle
        self._seed = (seed, stage_index)
        self._epoch_order: tuple[int, np.ndarray] | None = None

    def micro_batch(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        """input_ids, position_ids (restarting per document) and labels, each [rows, seq_len]."""
        lay = self.layout
        first = step * lay.global_batch + (micro * lay.world_size + lay.rank) * lay.micro_batch_size
        picked = [self._sequence_at(p) for p in range(first, first + lay.micro_batch_size)]
        return items_batch(self.shards, picked, self.mode)

    def _sequence_at(self, position: int) -> int:
        """Item index at a position of the endless stream of epoch permutations."""
        n = items(self.shards)
        if not self.shuffle:
            return position % n
        epoch = position // n
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            rng = np.random.default_rng([*self._seed, epoch])
            self._epoch_order = (epoch, rng.permutation(n))
        return int(self._epoch_order[1][position % n])


def open_stage(stage: StageConfig, tokenizer_sha256: str | None, verify: bool) -> ShardSet:
    """Open a stage's shards and check they suit its mode; `verify` also checks every sha256.

    File sizes are always checked. Checksums read every byte, so the loop asks for them
    on one rank per node: eight ranks re-reading the same disk would only multiply the wait.
    """
    try:
        shards = open_shards(stage.data, verify=verify)
    except ShardError as exc:
        raise ShardError(f"stage {stage.name!r}: data: {exc}") from None
    m = shards.manifest
    if stage.mode != "pretrain" and not m.has_loss_mask:
        raise DataMismatchError(
            f"stage {stage.name!r}: mode {stage.mode!r} trains on masked spans, but {stage.data} "
            "has no loss mask; pack it with a loss mask or use mode: pretrain"
        )
    pairs = m.layout == "pairs"
    if stage.mode in PREFERENCE_MODES and not pairs:
        raise DataMismatchError(
            f"stage {stage.name!r}: mode {stage.mode!r} trains on preference pairs, but "
            f"{stage.data} holds packed sequences; pack preference records with `preference: true`"
        )
    if stage.mode == "pretrain" and pairs:
        raise DataMismatchError(
            f"stage {stage.name!r}: {stage.data} holds preference pairs; train them with mode "
            "orpo or dpo, or sft (on the chosen responses)"
        )
    if tokenizer_sha256 is not None and m.tokenizer.sha256 != tokenizer_sha256:
        raise DataMismatchError(
            f"stage {stage.name!r}: {stage.data} was tokenized with {m.tokenizer.path} "
            f"(sha256 {m.tokenizer.sha256[:12]}...), not the run's tokenizer "
            f"(sha256 {tokenizer_sha256[:12]}...); re-pack it with the run's tokenizer"
        )
    return shards


def validation_dir(stage: StageConfig) -> Path | None:
    """The stage's validation split: `validation:`, else the pack stage's `validation` folder
    beside `data` when it is a finished shard set, else None (nothing to evaluate)."""
    if stage.validation is not None:
        return Path(stage.validation)
    sibling = Path(stage.data).parent / "validation"
    if Path(stage.data).name != "validation" and (sibling / MANIFEST_NAME).is_file():
        return sibling
    return None


def open_validation(stage: StageConfig, tokenizer_sha256: str, verify: bool) -> ShardSet | None:
    """The stage's validation shards, checked as its training shards are (mode, tokenizer)."""
    path = validation_dir(stage)
    if path is None:
        return None
    return open_stage(dataclasses.replace(stage, data=str(path)), tokenizer_sha256, verify)


def resolve_tokenizer(configured: str | None, pretrained: str | None, shards: ShardSet) -> Path:
    """The run's tokenizer.json, which must be the one the shards were packed with (sha256).

    It is `tokenizer:` when set, else the continued checkpoint's own tokenizer.json (so
    shards made with another tokenizer cannot silently train it), else the manifest's path.
    """
    info = shards.manifest.tokenizer
    if configured:
        path, source = Path(configured), "tokenizer"
    elif pretrained and (Path(pretrained) / "tokenizer.json").is_file():
        path, source = Path(pretrained) / "tokenizer.json", "model.pretrained"
    else:
        path, source = Path(info.path), "the shard manifest"
    if not path.is_file():
        raise DataMismatchError(
            f"tokenizer {path} (from {source}) does not exist; set `tokenizer:` in the run "
            "config to the tokenizer.json the shards were packed with"
        )
    if sha256_file(path) != info.sha256:
        raise DataMismatchError(
            f"tokenizer {path} (from {source}) is not the one the shards were packed with "
            f"({info.path}, sha256 {info.sha256[:12]}...); re-pack the shards with it or "
            "train a model that uses their tokenizer"
        )
    return path


def check_fits(shards: ShardSet, config: PretrainedConfig, where: str) -> None:
    """Every id needs an embedding row (a larger, padded vocab is fine), every position a slot."""
    m = shards.manifest
    if m.vocab_size > config.vocab_size:
        raise DataMismatchError(
            f"{where}: the shards' vocab_size {m.vocab_size} exceeds the model's {config.vocab_size}; "
            f"set model.overrides.vocab_size to at least {m.vocab_size} or use the matching model"
        )
    if m.seq_len > config.max_position_embeddings:
        raise DataMismatchError(
            f"{where}: the shards' seq_len {m.seq_len} exceeds the model's "
            f"max_position_embeddings {config.max_position_embeddings}; re-pack shorter or set "
            f"model.overrides.max_position_embeddings (for RoPE models, consider rope_scaling too)"
        )
