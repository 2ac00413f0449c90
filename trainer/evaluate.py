"""Validation while training: a stage's loss on its validation split, and answer lengths.

Every `eval.every_steps` optimizer steps and at the end of each stage, the stage's objective
(objective.py: the same loss it trains on, preference numbers included) is computed on the
first `eval.max_items` items of its validation split, in the shards' order, in eval mode
(no dropout) and without gradients, as nanoGPT's `estimate_loss` and torchtitan's validator
do. The mean is over items (sequences or pairs). Every rank evaluates the same items: under
ZeRO-3 each forward pass is a collective, so the ranks must run the same ones.

Answer length: the first `eval.generate` validation rows with a loss mask give fixed prompts
(the tokens before the first target token: for a pair, its prompt); the model answers each
greedily, up to `eval.max_new_tokens`, and the mean answer length in tokens (the end token
included) is reported, with the share cut at the limit. PLLuM saw answers grow longer after
alignment; this curve shows it while training. Nothing here draws random numbers, so an
evaluation changes nothing that a resumed run would have to reproduce.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from iptkit.shards import ShardSet
from iptkit.trainer.config import EvalConfig, StageConfig
from iptkit.trainer.data import item_rows, items, items_batch
from iptkit.trainer.objective import objective


def fixed_prompts(shards: ShardSet, count: int) -> list[list[int]]:
    """The tokens before the first target of the first `count` rows that have one (for
    pairs, the chosen rows): the same prompts at every evaluation."""
    if not shards.manifest.has_loss_mask or count == 0:
        return []
    prompts = []
    for item in range(items(shards)):
        row = shards[item_rows(shards, item)[0]]
        targets = np.flatnonzero(np.asarray(row.loss_mask))
        if targets.size and targets[0] > 0:
            prompts.append(np.asarray(row.tokens[: targets[0]], dtype=np.int64).tolist())
        if len(prompts) == count:
            break
    return prompts


class Evaluator:
    """One stage's validation: its shards, the fixed prompts, and how to score them."""

    def __init__(
        self, shards: ShardSet, stage: StageConfig, cfg: EvalConfig, micro_batch_size: int
    ) -> None:
        self.shards = shards
        self.stage = stage
        self.cfg = cfg
        self.micro_batch_size = micro_batch_size
        self.prompts = fixed_prompts(shards, cfg.generate)
        specials = shards.manifest.special_tokens
        self._eos, self._pad = specials.get("eos"), specials.get("pad", specials.get("eos"))

    def run(self, engine: Any, reference: Any = None) -> dict[str, float]:
        """val_loss (and val_<preference number>s), gen_length and gen_truncated."""
        model = engine.module
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                values = self._loss(model, engine.device, reference)
                if self.prompts:
                    values |= self._lengths(model, engine.device)
        finally:
            model.train(was_training)
        return values

    def _loss(self, model: Any, device: Any, reference: Any) -> dict[str, float]:
        n = min(items(self.shards), self.cfg.max_items)
        totals: dict[str, float] = {}
        for start in range(0, n, self.micro_batch_size):
            picked = list(range(start, min(n, start + self.micro_batch_size)))
            batch = {
                k: v.to(device)
                for k, v in items_batch(self.shards, picked, self.stage.mode).items()
            }
            loss, stats = objective(model, batch, self.stage, reference)
            for key, value in {"loss": loss.item(), **stats}.items():
                totals[key] = totals.get(key, 0.0) + value * len(picked)
        return {f"val_{key}": value / n for key, value in totals.items()}

    def _lengths(self, model: Any, device: Any) -> dict[str, float]:
        lengths = []
        for prompt in self.prompts:
            ids = torch.tensor([prompt], device=device)
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=self.cfg.max_new_tokens,
                do_sample=False,
                use_cache=True,
                eos_token_id=self._eos,
                pad_token_id=self._pad,
            )
            new = out[0, len(prompt) :].tolist()
            if self._eos is not None and self._eos in new:
                new = new[: new.index(self._eos) + 1]
            lengths.append(len(new))
        return {
            "gen_length": float(np.mean(lengths)),
            "gen_truncated": float(np.mean([n >= self.cfg.max_new_tokens for n in lengths])),
        }
