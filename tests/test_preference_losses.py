"""The ORPO and DPO losses against hand-computed values, and preference shards read back with
numpy alone (no iptkit, no torch)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from trainer_helpers import write_pairs, write_tokenizer

from iptkit.shards import ShardError, ShardWriter, open_shards, sha256_file
from iptkit.trainer.losses import (
    IGNORE_INDEX,
    causal_lm_loss,
    dpo_loss,
    orpo_loss,
    sequence_logps,
)

# A two-token response: each row is [prompt token, target, target] over a vocabulary of 2, and
# the logits at positions 0 and 1 are [log p, log(1 - p)], so token 0 has probability p.
CHOSEN, REJECTED = (0.8, 0.5), (0.4, 0.25)
REF_CHOSEN, REF_REJECTED = (0.5, 0.5), (0.5, 0.5)


def rows(*probabilities: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.tensor(
        [[[math.log(p), math.log(1 - p)] for p in ps] + [[0.0, 0.0]] for ps in probabilities]
    )
    labels = torch.tensor([[IGNORE_INDEX, 0, 0]] * len(probabilities))
    return logits, labels


def test_sequence_logps_sum_the_target_tokens_only() -> None:
    logits, labels = rows(CHOSEN, REJECTED)
    sums, counts = sequence_logps(logits, labels)
    assert counts.tolist() == [2, 2]
    torch.testing.assert_close(sums, torch.tensor([math.log(0.4), math.log(0.1)]))
    labels[0, 2] = IGNORE_INDEX
    sums, counts = sequence_logps(logits, labels)
    assert counts.tolist() == [1, 2]
    assert sums[0].item() == pytest.approx(math.log(0.8))


def test_orpo_loss_matches_the_hand_computed_value() -> None:
    logits, labels = rows(CHOSEN, REJECTED)
    sums, counts = sequence_logps(logits, labels)
    out = orpo_loss(sums[:1], counts[:1], sums[1:], counts[1:], lam=0.1)
    # By hand (Hong et al. 2024, eq. 2-7): log P(y|x) is the mean token log-probability, so
    # P(chosen) = sqrt(0.8 * 0.5) = 0.63246 and P(rejected) = sqrt(0.4 * 0.25) = 0.31623;
    # odds 1.72076 and 0.46248, log odds ratio ln(3.72076) = 1.31393,
    # L_OR = -ln sigmoid(1.31393) = 0.23804; L_SFT = -(ln 0.8 + ln 0.5) / 2 = 0.45815;
    # L = 0.45815 + 0.1 * 0.23804 = 0.48195.
    p_c, p_r = math.sqrt(0.8 * 0.5), math.sqrt(0.4 * 0.25)
    log_or = math.log((p_c / (1 - p_c)) / (p_r / (1 - p_r)))
    expected = -(math.log(0.8) + math.log(0.5)) / 2 + 0.1 * math.log1p(math.exp(-log_or))
    assert log_or == pytest.approx(1.31393, abs=1e-5)
    assert expected == pytest.approx(0.48195, abs=1e-5)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    stats = out.stats()
    assert stats["reward_margin"] == pytest.approx(log_or, rel=1e-6)
    assert stats["reward_accuracy"] == 1.0
    assert stats["chosen_logp"] == pytest.approx(math.log(p_c), rel=1e-6)
    # lambda 0 is plain SFT on the chosen response: the same as the token-mode loss.
    zero = orpo_loss(sums[:1], counts[:1], sums[1:], counts[1:], lam=0.0)
    assert zero.loss.item() == pytest.approx(causal_lm_loss(logits[:1], labels[:1]).item())


def test_dpo_loss_matches_the_hand_computed_value() -> None:
    logits, labels = rows(CHOSEN, REJECTED)
    sums, counts = sequence_logps(logits, labels)
    ref_logits, _ = rows(REF_CHOSEN, REF_REJECTED)
    ref, _ = sequence_logps(ref_logits, labels)
    out = dpo_loss(sums[:1], counts[:1], sums[1:], counts[1:], ref[:1], ref[1:], beta=0.1)
    # By hand (Rafailov et al. 2023, eq. 7, summed log-probabilities): chosen reward
    # 0.1 * (ln 0.4 - ln 0.25) = 0.04700, rejected 0.1 * (ln 0.1 - ln 0.25) = -0.09163,
    # margin 0.1 * ln 4 = 0.13863, loss -ln sigmoid(0.13863) = 0.62623.
    margin = 0.1 * (math.log(0.4 / 0.25) - math.log(0.1 / 0.25))
    assert margin == pytest.approx(0.13863, abs=1e-5)
    assert math.log1p(math.exp(-margin)) == pytest.approx(0.62623, abs=1e-5)
    assert out.loss.item() == pytest.approx(math.log1p(math.exp(-margin)), rel=1e-6)
    assert out.stats()["reward_margin"] == pytest.approx(margin, rel=1e-6)
    # The policy equal to its reference: every reward 0, the loss ln 2.
    same = dpo_loss(sums[:1], counts[:1], sums[1:], counts[1:], sums[:1], sums[1:], beta=0.1)
    assert same.loss.item() == pytest.approx(math.log(2))
    assert same.stats()["reward_accuracy"] == 0.0


def test_the_losses_pull_chosen_up_and_rejected_down() -> None:
    logits, labels = rows(CHOSEN, REJECTED)
    ref, _ = sequence_logps(rows(REF_CHOSEN, REF_REJECTED)[0], labels)
    for loss in ("orpo", "dpo"):
        x = logits.clone().requires_grad_(True)
        sums, counts = sequence_logps(x, labels)
        if loss == "orpo":
            out = orpo_loss(sums[:1], counts[:1], sums[1:], counts[1:], lam=1.0)
        else:
            out = dpo_loss(sums[:1], counts[:1], sums[1:], counts[1:], ref[:1], ref[1:], 0.1)
        out.loss.backward()
        # Gradient descent raises the target token's logit in the chosen row, lowers it in the
        # rejected row.
        assert (x.grad[0, :2, 0] < 0).all() and (x.grad[1, :2, 0] > 0).all(), loss


def test_preference_shards_read_back_with_numpy_alone(tmp_path: Path) -> None:
    tok = write_tokenizer(tmp_path / "tok")
    out = write_pairs(tmp_path / "pairs", tok, pairs=20)
    shards = open_shards(out)
    assert shards.manifest.layout == "pairs" and shards.manifest.pairs == 20
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["layout"] == "pairs" and manifest["pairs"] == 20
    assert manifest["tokenizer"]["sha256"] == sha256_file(tok)
    script = textwrap.dedent(
        """
        import json, sys
        import numpy as np
        root = sys.argv[1]
        m = json.load(open(f"{root}/manifest.json"))
        L, dt = m["seq_len"], np.dtype(m["dtype"]).newbyteorder("<")
        out = []
        for shard in m["shards"]:
            n, f = shard["sequences"], shard["files"]
            tokens = np.fromfile(f"{root}/{f['tokens']['path']}", dtype=dt).reshape(n // 2, 2, L)
            mask = np.fromfile(f"{root}/{f['mask']['path']}", dtype=np.uint8).reshape(n // 2, 2, L)
            for pair_tokens, pair_mask in zip(tokens, mask):
                prompt = pair_tokens[0][: np.flatnonzero(pair_mask[0])[0]]
                chosen = pair_tokens[0][pair_mask[0] == 1]
                rejected = pair_tokens[1][pair_mask[1] == 1]
                out.append([prompt.tolist(), chosen.tolist(), rejected.tolist()])
        assert not any(name.startswith(("iptkit", "torch")) for name in sys.modules)
        print(json.dumps(out))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(out)], capture_output=True, text=True, check=True
    )
    pairs = json.loads(done.stdout)
    assert len(pairs) == 20
    for i, (prompt, chosen, rejected) in enumerate(pairs):
        c, r = shards[2 * i], shards[2 * i + 1]
        assert prompt == np.asarray(r.tokens)[: len(prompt)].tolist()  # one prompt, both rows
        assert chosen == np.asarray(c.tokens)[np.asarray(c.loss_mask) == 1].tolist()
        assert rejected == np.asarray(r.tokens)[np.asarray(r.loss_mask) == 1].tolist()
        assert chosen != rejected and chosen[-1] == rejected[-1] == 2  # each ends with EOS


def test_a_pairs_layout_keeps_pairs_whole(tmp_path: Path) -> None:
    tok = write_tokenizer(tmp_path / "tok")
    common = dict(seq_len=8, vocab_size=10, tokenizer_path=str(tok),
                  tokenizer_sha256=sha256_file(tok), special_tokens={"pad": 0}, spec_hash="t",
                  seed=0, layout="pairs")  # fmt: skip
    with pytest.raises(ShardError, match="even sequences_per_shard"):
        ShardWriter(tmp_path / "a", has_loss_mask=True, sequences_per_shard=3, **common)
    with pytest.raises(ShardError, match="has_loss_mask=True"):
        ShardWriter(tmp_path / "b", has_loss_mask=False, sequences_per_shard=2, **common)
    writer = ShardWriter(tmp_path / "c", has_loss_mask=True, sequences_per_shard=2, **common)
    writer.add(np.ones(8, int), np.ones(8, int))
    with pytest.raises(ShardError, match="odd number of rows"):
        writer.close()
    assert not (tmp_path / "c" / "manifest.json").exists()
