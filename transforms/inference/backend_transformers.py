"""The `transformers` backend: a causal LM on CPU or one GPU, batched `generate`.

Prompts of a batch are left-padded (so every row's new tokens start at the same column) and
only the new tokens are decoded. Greedy decoding is plain `generate`; sampling is greedy over
logits plus Gumbel noise drawn from a generator seeded per request (the Gumbel-max trick samples
exactly from the softmax), so a row's sample depends on its own seed, never on its batch-mates.
The repetition penalty looks at each row's own tokens (never its padding), and a row stops at
the first stop string in its decoded text, which is cut before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from iptkit.transforms.inference.core import SamplingSpec, spec_tokenizer
from iptkit.transforms.inference.model_files import is_hub, local_model_path
from iptkit.transforms.inference.prompt_handler import PromptHandler

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    device: torch.device


class SeededGumbel:
    """A logits processor that adds Gumbel(0, 1) noise per row from that row's own generator.

    Placed after the temperature / top-k / top-p warpers, the argmax of its output is a sample
    from the warped distribution; masked (-inf) tokens stay impossible.
    """

    def __init__(self, seeds: Sequence[int], device: torch.device):
        self._generators = []
        for seed in seeds:
            g = torch.Generator(device=device)
            g.manual_seed(seed)
            self._generators.append(g)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        noise = torch.stack(
            [
                torch.rand(scores.shape[1], generator=g, device=scores.device, dtype=torch.float32)
                for g in self._generators
            ]
        )
        gumbel = -torch.log(-torch.log(noise.clamp(1e-20, 1.0)))
        return scores.float() + gumbel


class RowRepetitionPenalty:
    """The CTRL repetition penalty (as HF's and vLLM's): a score of a token already in the row
    is divided by `penalty` when positive, multiplied when negative. Each row looks at its own
    tokens from `starts[row]` on, so left padding never counts as a repeat."""

    def __init__(self, penalty: float, starts: Sequence[int]):
        self._penalty, self._starts = penalty, list(starts)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.clone()
        for row, start in enumerate(self._starts):
            seen = torch.unique(input_ids[row, start:])
            picked = scores[row, seen]
            scores[row, seen] = torch.where(
                picked > 0, picked / self._penalty, picked * self._penalty
            )
        return scores


class StopStrings:
    """A stopping criterion: a row is done once its new text contains a stop string. Only the
    tail of each row is decoded (a stop string of n characters spans at most 4n byte-level
    tokens); `done_at[row]` is the number of new tokens when it stopped."""

    def __init__(self, stops: Sequence[str], tokenizer: Any, width: int, rows: int):
        self._stops, self._tokenizer, self._width = list(stops), tokenizer, width
        self._tail = 4 * max(len(s) for s in self._stops) + 4
        self.done_at: list[int | None] = [None] * rows

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        n_new = input_ids.shape[1] - self._width
        done = []
        for row in range(input_ids.shape[0]):
            if self.done_at[row] is None:
                tail = input_ids[row, max(self._width, input_ids.shape[1] - self._tail) :]
                text = self._tokenizer.decode(tail.tolist(), skip_special_tokens=True)
                if any(s in text for s in self._stops):
                    self.done_at[row] = n_new
            done.append(self.done_at[row] is not None)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """`text` up to the earliest stop string (OpenAI's and vLLM's rule: the stop is not kept)."""
    at = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    return text if at < 0 else text[:at]


class TransformersHandler(PromptHandler):
    """RunInference handler for a Hugging Face causal LM."""

    def load_model(self) -> LoadedModel:
        from transformers import AutoModelForCausalLM

        spec = self.spec
        if spec.device == "auto":
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            device = torch.device(spec.device)
        model = AutoModelForCausalLM.from_pretrained(
            local_model_path(spec.model),
            dtype=_DTYPES.get(spec.dtype, "auto"),
            trust_remote_code=spec.trust_remote_code,
            local_files_only=not is_hub(spec.model),
        )
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit is not None and spec.max_model_len > limit:
            raise ValueError(
                f"max_model_len {spec.max_model_len} exceeds the model's max_position_embeddings "
                f"{limit} ({spec.model}); set max_model_len to at most {limit}"
            )
        model.to(device).eval()
        return LoadedModel(model, spec_tokenizer(spec), device)

    def tokenizer_of(self, model: LoadedModel) -> Any:
        return model.tokenizer

    def _eos_ids(self, loaded: LoadedModel) -> list[int]:
        eos = loaded.model.generation_config.eos_token_id
        if eos is None:
            eos = loaded.tokenizer.eos_token_id
        return [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))

    def _processors(
        self, sampling: SamplingSpec, seeds: Sequence[int], starts: Sequence[int], device: Any
    ) -> list[Any]:
        from transformers.generation.logits_process import (
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        penalty = []
        if sampling.repetition_penalty != 1:
            penalty = [RowRepetitionPenalty(sampling.repetition_penalty, starts)]
        if sampling.greedy:
            return penalty
        warpers: list[Any] = [*penalty, TemperatureLogitsWarper(sampling.temperature)]
        if sampling.top_k > 0:
            warpers.append(TopKLogitsWarper(sampling.top_k))
        if sampling.top_p < 1:
            warpers.append(TopPLogitsWarper(sampling.top_p))
        return [*warpers, SeededGumbel(seeds, device)]

    @torch.inference_mode()
    def generate_ids(
        self,
        model: LoadedModel,
        prompts: Sequence[list[int]],
        seeds: Sequence[int],
        sampling: SamplingSpec | None = None,
    ) -> list[tuple[str, int]]:
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        sampling = sampling or self.spec.sampling
        tokenizer, device = model.tokenizer, model.device
        eos_ids = self._eos_ids(model)
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = eos_ids[0] if eos_ids else 0
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[row, width - len(ids) :] = 1
        config = GenerationConfig(
            max_new_tokens=sampling.max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=eos_ids or None,
        )
        starts = [width - len(ids) for ids in prompts]
        stops = (
            StopStrings(sampling.stop, tokenizer, width, len(prompts)) if sampling.stop else None
        )
        out = model.model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            generation_config=config,
            logits_processor=LogitsProcessorList(self._processors(sampling, seeds, starts, device)),
            stopping_criteria=StoppingCriteriaList([stops] if stops else []),
        )
        results = []
        for r, row in enumerate(out[:, width:].tolist()):
            n_new = next((i + 1 for i, t in enumerate(row) if t in eos_ids), len(row))
            if stops and stops.done_at[r] is not None:
                n_new = min(n_new, stops.done_at[r])
            text = tokenizer.decode(row[:n_new], skip_special_tokens=True)
            results.append((cut_at_stop(text, sampling.stop) if sampling.stop else text, n_new))
        return results
