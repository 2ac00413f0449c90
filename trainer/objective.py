"""What a stage's mode minimises on one batch: the link from a mode to its loss function.

The training step and the validation pass both call `objective`, so the validation loss of a
stage is exactly its training loss on held-out data (in eval mode: no dropout).
"""

from __future__ import annotations

from typing import Any

import torch

from iptkit.trainer.config import PREFERENCE_MODES, StageConfig
from iptkit.trainer.losses import causal_lm_loss, dpo_loss, orpo_loss, sequence_logps


def forward(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    # No attention mask: transformers then reads document boundaries from the position ids and
    # confines attention to each packed document (a pair's row is one document).
    return model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits


def objective(
    model: Any, batch: dict[str, torch.Tensor], stage: StageConfig, reference: Any = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of `batch` under the stage's mode, and the preference numbers of its pairs
    (empty for token modes). A preference batch holds its chosen rows, then its rejected rows
    (data.items_batch); mode dpo needs the frozen `reference` model."""
    logits = forward(model, batch)
    if stage.mode not in PREFERENCE_MODES:
        return causal_lm_loss(logits, batch["labels"]), {}
    sums, counts = sequence_logps(logits, batch["labels"])
    half = len(sums) // 2
    chosen, rejected = (sums[:half], counts[:half]), (sums[half:], counts[half:])
    if stage.mode == "orpo":
        out = orpo_loss(*chosen, *rejected, stage.orpo_lambda)
    else:
        if reference is None:
            raise ValueError("mode dpo needs its reference model")
        with torch.no_grad():
            ref_sums, _ = sequence_logps(forward(reference, batch), batch["labels"])
        out = dpo_loss(*chosen, *rejected, ref_sums[:half], ref_sums[half:], stage.dpo_beta)
    return out.loss, out.stats()
