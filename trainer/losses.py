"""The training objectives: next-token cross-entropy, and the preference losses ORPO and DPO.

Pure functions of logits and labels (positions outside the loss mask hold IGNORE_INDEX), so
each is checked against hand-computed values (tests/test_preference_losses.py).

- `causal_lm_loss`: the mean cross-entropy of the target tokens (modes pretrain, sft,
  synth_tune).
- `orpo_loss` (Hong et al. 2024, "ORPO: Monolithic Preference Optimization without Reference
  Model", eq. 2-7): L = L_SFT + lambda * L_OR, with L_SFT the mean NLL of the chosen
  response's tokens and L_OR = -log sigmoid(log(odds(y_w|x) / odds(y_l|x))), where
  odds(y|x) = P(y|x) / (1 - P(y|x)) and log P(y|x) is the *mean* token log-probability of the
  response (the paper's length normalisation). No reference model.
- `dpo_loss` (Rafailov et al. 2023, "Direct Preference Optimization", eq. 7):
  L = -log sigmoid(beta * ((log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x)))),
  with *summed* response log-probabilities and a frozen reference model.

Both return the per-pair numbers the trainer reports: the chosen and rejected mean token
log-probabilities, the reward margin (ORPO: the log odds ratio; DPO: the difference of the
implicit rewards beta * log(pi / ref)) and whether it is positive (reward accuracy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
"""Label value that the losses skip: positions outside the loss mask."""


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each target token given the tokens before it.

    Summed and divided by the target count (at least 1), so a micro-batch whose
    mask selects nothing adds 0 instead of NaN.
    """
    targets = labels[:, 1:]
    summed = F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    return summed / (targets != IGNORE_INDEX).sum().clamp(min=1)


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the summed log-probability of its target tokens and how many there are."""
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1), mask.sum(-1)


@dataclass
class PreferenceLoss:
    """A preference loss over a batch of pairs and what it says about each pair."""

    loss: torch.Tensor
    """The scalar to back-propagate."""
    chosen_logp: torch.Tensor
    """[pairs] mean token log-probability of the chosen response."""
    rejected_logp: torch.Tensor
    """[pairs] mean token log-probability of the rejected response."""
    margin: torch.Tensor
    """[pairs] reward of the chosen minus reward of the rejected response."""

    def stats(self) -> dict[str, float]:
        """Batch means: what metrics.jsonl reports for the step."""
        return {
            "chosen_logp": self.chosen_logp.mean().item(),
            "rejected_logp": self.rejected_logp.mean().item(),
            "reward_margin": self.margin.mean().item(),
            "reward_accuracy": (self.margin > 0).float().mean().item(),
        }


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, stable at both ends (Maechler 2012); x is capped just below 0
    so a response predicted with probability 1 gives a large finite odds, not inf."""
    x = x.clamp(max=-1e-6)
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def orpo_loss(
    chosen_sum: torch.Tensor,
    chosen_count: torch.Tensor,
    rejected_sum: torch.Tensor,
    rejected_count: torch.Tensor,
    lam: float,
) -> PreferenceLoss:
    """ORPO (Hong et al. 2024): SFT NLL on the chosen tokens + lam * the odds-ratio term."""
    chosen = chosen_sum / chosen_count.clamp(min=1)
    rejected = rejected_sum / rejected_count.clamp(min=1)
    nll = -chosen_sum.sum() / chosen_count.sum().clamp(min=1)
    log_odds = (chosen - _log1mexp(chosen)) - (rejected - _log1mexp(rejected))
    ratio = -F.logsigmoid(log_odds)
    return PreferenceLoss(nll + lam * ratio.mean(), chosen.detach(), rejected.detach(),
                          log_odds.detach())  # fmt: skip


def dpo_loss(
    chosen_sum: torch.Tensor,
    chosen_count: torch.Tensor,
    rejected_sum: torch.Tensor,
    rejected_count: torch.Tensor,
    ref_chosen_sum: torch.Tensor,
    ref_rejected_sum: torch.Tensor,
    beta: float,
) -> PreferenceLoss:
    """DPO (Rafailov et al. 2023) on summed log-probabilities against a frozen reference."""
    chosen_reward = beta * (chosen_sum - ref_chosen_sum)
    rejected_reward = beta * (rejected_sum - ref_rejected_sum)
    margin = chosen_reward - rejected_reward
    loss = -F.logsigmoid(margin).mean()
    return PreferenceLoss(
        loss,
        (chosen_sum / chosen_count.clamp(min=1)).detach(),
        (rejected_sum / rejected_count.clamp(min=1)).detach(),
        margin.detach(),
    )
