"""Trainer pieces that need no training run: config errors, data order, masks, attention."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from trainer_helpers import (
    REPO,
    SEQ_LEN,
    VOCAB,
    rank_env_restored,
    stage,
    write_config,
    write_data,
)
from transformers import AutoConfig

from iptkit.shards import open_shards
from iptkit.trainer.__main__ import main
from iptkit.trainer.config import ModelConfig, TrainConfigError, load_config
from iptkit.trainer.data import IGNORE_INDEX, Layout, StageBatches
from iptkit.trainer.models import architecture, build_model
from iptkit.trainer.optim import StageSchedule


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_data(tmp_path_factory.mktemp("data"), pt_rows=24, sft_rows=24)


def batches(shards_dir: Path, mode: str, layout: Layout, seed: int = 0) -> StageBatches:
    return StageBatches(open_shards(shards_dir), mode, seed, 0, layout)


# --------------------------------------------------------------------------- config


def test_config_errors_name_the_key_and_the_fix(tmp_path: Path, data: dict[str, Path]) -> None:
    config = write_config(
        tmp_path / "run.yaml",
        stages=[{"name": "a", "data": str(data["pt"]), "lr": -1.0, "step": 3}],
        model={"config": "llama-tiny", "atn_implementation": "sdpa"},
    )
    with pytest.raises(TrainConfigError) as err:
        load_config(config)
    message = str(err.value)
    assert "stages.0.lr: Input should be greater than 0 (got -1.0)" in message
    assert "stages.0.step: unknown key; did you mean 'steps'?" in message
    assert "model.atn_implementation: unknown key; did you mean 'attn_implementation'?" in message


RUN_YAML = """\
run_dir: run
model:
  config: mistral-50m
  atn_implementation: sdpa
deepspeed: zero2
stages:
  - {name: english, data: shards/en, steps: 2, lr: 3.0e-4}
  - name: polish
    data: shards/pl
    steps: 2
    lr: -1
"""


def test_config_errors_name_file_line_and_key_all_at_once(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(RUN_YAML)
    with pytest.raises(TrainConfigError) as err:
        load_config(config, ["stages.english.steps=0", "deepspeed=zero9"])
    assert [(p.key, p.line, p.origin) for p in err.value.problems] == [
        ("model.config", 3, str(config)),
        ("model.atn_implementation", 4, str(config)),
        ("stages.1.lr", 11, str(config)),
        ("stages.0.steps", None, "--set stages.english.steps=0"),
        ("deepspeed", None, "--set deepspeed=zero9"),
    ]
    message = str(err.value)
    assert message.startswith("invalid run config (5 problems):")
    assert f"{config}:3: model.config: 'mistral-50m' is neither a file nor a name in " in message
    assert (
        "configs/models (shipped: llama-tiny, llama3-8b, mistral-1.3b, mistral-500m, mistral-7b)"
        in message
    )
    assert f"{config}:11: stages.1.lr: Input should be greater than 0 (got -1)" in message
    # Fixed by overrides: a stage is named by its name or its index.
    config.write_text(RUN_YAML.replace("  atn_implementation: sdpa\n", ""))
    run = load_config(config, ["model.config=mistral-500m", "stages.polish.lr=1e-4"])
    assert run.model.config == "mistral-500m" and run.stages[1].lr == 1e-4


def test_cli_validates_a_run_config_without_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(RUN_YAML.replace("atn_", "attn_").replace("lr: -1", "lr: 1"))
    assert main([str(config), "--validate", "--set", "model.config=llama-tiny"]) == 0
    out = capsys.readouterr().out
    assert f"run config {config}: valid" in out and "LlamaConfig: 2 layers" in out
    assert "configs/deepspeed/zero2.json" in out and "(ZeRO stage 2)" in out
    assert "2. polish: pretrain, 2 steps, lr 1, data shards/pl (no manifest.json there yet)" in out
    assert not (tmp_path / "run").exists()
    assert main([str(config), "--validate", "--set", "stages.polish.lr=0"]) == 2
    assert "--set stages.polish.lr=0: stages.1.lr: Input should be greater than 0" in (
        capsys.readouterr().err
    )


def test_cli_prints_config_errors_without_traceback(
    tmp_path: Path, data: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "run.yaml", stages=[stage("a", data["pt"], steps=2)])
    assert main([str(config), "--set", "stages.0.epochs=1"]) == 2
    err = capsys.readouterr().err
    assert "stage 'a': set exactly one of steps and epochs" in err
    assert "Traceback" not in err
    assert main([str(config), "--set", "deepspeed=zero9"]) == 2
    assert "'zero9' is neither a file nor a name in configs/deepspeed" in capsys.readouterr().err
    with rank_env_restored():  # this error comes after joining a process group of one
        assert main([str(config), "--set", f"stages.0.data={tmp_path}/missing"]) == 1
    err = capsys.readouterr().err
    assert f"error: stage 'a': data: {tmp_path}/missing not found" in err
    assert "Traceback" not in err


def test_deepspeed_json_that_contradicts_the_run_config_is_refused(
    tmp_path: Path, data: dict[str, Path]
) -> None:
    ds = tmp_path / "ds.json"
    ds.write_text('{"train_micro_batch_size_per_gpu": 8, "optimizer": {"type": "AdamW"}}')
    config = write_config(
        tmp_path / "run.yaml", deepspeed=str(ds), stages=[stage("a", data["pt"], steps=2)]
    )
    from iptkit.trainer.optim import deepspeed_config

    with pytest.raises(TrainConfigError, match='train_micro_batch_size_per_gpu = 8 .* "auto"'):
        deepspeed_config(load_config(config))


def test_schedule_warms_up_then_decays_to_the_floor() -> None:
    s = StageSchedule(start=10, steps=12, lr=1.0, min_lr=0.1, warmup_steps=2)
    lrs = [s.lr_at(step) for step in range(10, 22)]
    assert lrs[:3] == [0.5, 1.0, 1.0]
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:], strict=False))
    assert lrs[-1] == pytest.approx(0.1)


# --------------------------------------------------------------------------- data


def test_ranks_split_the_same_global_batch_as_accumulation(data: dict[str, Path]) -> None:
    one = batches(data["pt"], "pretrain", Layout(2, 2, 1, 0))
    ranks = [batches(data["pt"], "pretrain", Layout(2, 1, 2, r)) for r in (0, 1)]
    for step in range(5):  # 24 rows, 4 per step: crosses into the second epoch
        expected = torch.cat([one.micro_batch(step, m)["input_ids"] for m in (0, 1)])
        got = torch.cat([b.micro_batch(step, 0)["input_ids"] for b in ranks])
        assert torch.equal(expected, got)


def test_order_is_a_seeded_permutation_per_epoch(data: dict[str, Path]) -> None:
    shards = open_shards(data["pt"])
    every_row = {tuple(np.asarray(shards[i].tokens)) for i in range(len(shards))}

    def epoch(seed: int, index: int) -> list[tuple[int, ...]]:
        b = batches(data["pt"], "pretrain", Layout(3, 1, 1, 0), seed)
        steps = range(index * 8, index * 8 + 8)  # 8 steps of 3 = one epoch of 24
        return [tuple(row.tolist()) for s in steps for row in b.micro_batch(s, 0)["input_ids"]]

    assert set(epoch(0, 0)) == every_row and len(epoch(0, 0)) == len(every_row)
    assert epoch(0, 0) == epoch(0, 0)
    assert epoch(0, 0) != epoch(0, 1) and set(epoch(0, 1)) == every_row
    assert epoch(0, 0) != epoch(1, 0)


def test_as_written_order_keeps_the_curriculum_every_epoch(data: dict[str, Path]) -> None:
    shards = open_shards(data["pt"])
    b = StageBatches(shards, "pretrain", 0, 0, Layout(3, 1, 1, 0), shuffle=False)
    rows = [tuple(r.tolist()) for s in range(16) for r in b.micro_batch(s, 0)["input_ids"]]
    written = [tuple(np.asarray(shards[i].tokens).tolist()) for i in range(len(shards))]
    assert rows == written + written  # two epochs, each in the shards' own order


def test_sft_labels_keep_only_masked_tokens(data: dict[str, Path]) -> None:
    shards = open_shards(data["sft"])
    sft = batches(data["sft"], "sft", Layout(4, 1, 1, 0)).micro_batch(0, 0)
    pretrain = batches(data["sft"], "pretrain", Layout(4, 1, 1, 0)).micro_batch(0, 0)
    mask = np.stack([shards[i].loss_mask for i in range(len(shards))])
    assert set(mask.sum(axis=1)) == {SEQ_LEN - 15}
    assert torch.equal((sft["labels"] != IGNORE_INDEX).sum(dim=1), torch.full((4,), SEQ_LEN - 15))
    assert torch.equal(sft["labels"][:, 15:], sft["input_ids"][:, 15:])
    assert (sft["labels"][:, :15] == IGNORE_INDEX).all()
    assert torch.equal(pretrain["labels"], pretrain["input_ids"])


def test_sft_mode_needs_a_loss_mask(tmp_path: Path, data: dict[str, Path]) -> None:
    from iptkit.trainer.data import DataMismatchError, open_stage

    run = load_config(
        write_config(tmp_path / "r.yaml", stages=[stage("s", data["pt"], steps=1, mode="sft")])
    )
    with pytest.raises(DataMismatchError, match="has no loss mask; pack it with a loss mask"):
        open_stage(run.stages[0], None, verify=True)


def test_position_ids_confine_attention_to_each_document(data: dict[str, Path]) -> None:
    """A document packed after another gets the same logits as alone (sdpa and eager)."""
    doc_a, doc_b = torch.arange(3, 15), torch.arange(20, 40)
    packed = torch.cat([doc_a, doc_b])[None]
    reset = torch.cat([torch.arange(12), torch.arange(20)])[None]
    for attn in ("sdpa", "eager"):
        cfg = ModelConfig(config="llama-tiny", attn_implementation=attn)
        model = build_model(cfg, architecture(cfg), seed=0).eval()
        with torch.no_grad():
            alone = model(input_ids=doc_b[None]).logits[0]
            confined = model(input_ids=packed, position_ids=reset).logits[0, 12:]
            leaking = model(input_ids=packed, position_ids=torch.arange(32)[None]).logits[0, 12:]
        torch.testing.assert_close(confined, alone, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(leaking, alone, atol=1e-3)
    assert VOCAB <= model.config.vocab_size


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "train").glob("*.yaml")), ids=str)
def test_shipped_run_configs_are_valid(path: Path) -> None:
    from iptkit.trainer.optim import deepspeed_config

    run = load_config(path)
    ds = deepspeed_config(run)
    assert ds["train_micro_batch_size_per_gpu"] == run.micro_batch_size
    assert ds["bf16"]["enabled"] is (run.precision == "bf16")
    if run.model.config and not run.model.pretrained:  # Table 14: Mistral; demo: tiny Llama
        assert architecture(run.model).model_type == ("llama" if "demo" in path.name else "mistral")


def test_loss_curve_is_drawn(tmp_path: Path) -> None:
    import json

    from iptkit.trainer.metrics import plot_loss

    metrics = tmp_path / "metrics.jsonl"
    records = [{"step": s, "stage": "a" if s < 3 else "b", "loss": 5.0 / s} for s in (1, 2, 3, 4)]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records))
    plot_loss(metrics, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_corrupted_shard_is_refused(tmp_path: Path, data: dict[str, Path]) -> None:
    import shutil

    from iptkit.shards import ShardError
    from iptkit.trainer.data import open_stage

    copy = tmp_path / "pt"
    shutil.copytree(data["pt"], copy)
    tokens = next(copy.glob("*.tokens.bin"))
    raw = bytearray(tokens.read_bytes())
    raw[5] ^= 1  # same size, different bytes: only the checksum can tell
    tokens.write_bytes(bytes(raw))
    run = load_config(write_config(tmp_path / "r.yaml", stages=[stage("pt", copy, steps=1)]))
    with pytest.raises(ShardError, match="(?s)stage 'pt': data: .* sha256 does not match"):
        open_stage(run.stages[0], None, verify=True)


def test_only_step_folders_with_trainer_json_are_checkpoints(tmp_path: Path) -> None:
    from iptkit.trainer.checkpoint import latest_checkpoint

    for step, complete in ((10, True), (20, True), (30, False)):
        folder = tmp_path / f"step-{step:08d}"
        (folder / "state").mkdir(parents=True)
        if complete:
            (folder / "trainer.json").write_text("{}")
    assert latest_checkpoint(tmp_path) == tmp_path / "step-00000020"


def _padded_shards(out: Path, tok: Path, special: dict[str, int]) -> Path:
    """Two rows: documents then padding (pad id `special["pad"]`), and one row with none."""
    from iptkit.shards import ShardWriter, sha256_file

    pad, eos = special["pad"], special["eos"]
    doc = [1, 5, 6, 7, 8, eos]
    rows = [
        (doc + [pad] * (SEQ_LEN - 6), [0]),
        (doc + doc + [pad] * (SEQ_LEN - 12), [0, 6]),
        ((doc * 6)[:SEQ_LEN], [0, 6, 12, 18, 24, 30]),
    ]
    with ShardWriter(
        out, seq_len=SEQ_LEN, vocab_size=VOCAB, tokenizer_path=str(tok),
        tokenizer_sha256=sha256_file(tok), special_tokens=special, spec_hash="t", seed=0,
        has_loss_mask=False, sequences_per_shard=16,
    ) as writer:  # fmt: skip
        for tokens, starts in rows:
            writer.add(np.array(tokens), None, starts)
    return out


@pytest.mark.parametrize("pad", [0, 2], ids=["own_pad", "pad_is_eos"])
def test_padding_is_never_a_target_in_pretrain_mode(
    tmp_path: Path, data: dict[str, Path], pad: int
) -> None:
    shards_dir = _padded_shards(tmp_path / "pad", data["tok"], {"bos": 1, "eos": 2, "pad": pad})
    b = StageBatches(open_shards(shards_dir), "pretrain", 0, 0, Layout(3, 1, 1, 0), shuffle=False)
    batch = b.micro_batch(0, 0)
    targets = (batch["labels"] != IGNORE_INDEX).sum(dim=1).tolist()
    # Every document token (its EOS included) is a target; not one pad cell is.
    assert targets == [6, 12, SEQ_LEN]
    kept = batch["labels"] != IGNORE_INDEX
    assert torch.equal(batch["labels"][kept], batch["input_ids"][kept])


@pytest.mark.parametrize(
    ("name", "table"), [("synthesizer", "Table 8"), ("continual-then-sft", "Table 14")]
)
def test_a_pretrained_start_trains_with_the_papers_dropout(
    tmp_path: Path, name: str, table: str
) -> None:
    """Cheng et al. train with dropout 0.1 (Tables 8 and 14); released checkpoints ship 0.0.
    The shipped configs name their architecture's preset next to the checkpoint, and its
    dropout is what the model trains with."""
    from iptkit.trainer.models import _preset_data

    run = load_config(REPO / "configs" / "train" / f"{name}.yaml")
    assert run.model.pretrained and run.model.config
    preset = _preset_data(REPO / "configs" / "models" / f"{run.model.config}.yaml")
    # The checkpoint: the same network, with its own dropout 0.0.
    checkpoint = AutoConfig.for_model(**{**preset, "attention_dropout": 0.0})
    checkpoint.save_pretrained(tmp_path / "ckpt")
    model = ModelConfig(config=run.model.config, pretrained=str(tmp_path / "ckpt"))
    assert architecture(model).attention_dropout == 0.1, table
    # Without the preset the checkpoint's value stays; overrides still come last.
    assert architecture(ModelConfig(pretrained=str(tmp_path / "ckpt"))).attention_dropout == 0.0
    last = ModelConfig(
        config=run.model.config, pretrained=str(tmp_path / "ckpt"),
        overrides={"attention_dropout": 0.05},
    )  # fmt: skip
    assert architecture(last).attention_dropout == 0.05


def test_a_preset_of_another_network_is_refused_on_a_checkpoint(tmp_path: Path) -> None:
    cfg = ModelConfig(config="llama-tiny")
    architecture(cfg).save_pretrained(tmp_path / "tiny")
    with pytest.raises(TrainConfigError, match="sets hidden_size=4096, the checkpoint has 32"):
        architecture(ModelConfig(config="llama3-8b", pretrained=str(tmp_path / "tiny")))
    with pytest.raises(TrainConfigError, match="is a mistral preset, the checkpoint is llama"):
        architecture(ModelConfig(config="mistral-500m", pretrained=str(tmp_path / "tiny")))
