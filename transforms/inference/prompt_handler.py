"""`PromptHandler`: the Beam ModelHandler every inference backend derives from.

Kept apart from `inference` because Beam's `apache_beam.ml.inference` imports torch (about two
seconds): stages that never run a model (and `iptkit validate`) should not pay for it, so this
module is imported only when a pipeline with a model stage is built.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from apache_beam.ml.inference.base import ModelHandler

from iptkit.transforms.inference.core import (
    MODEL_BACKENDS,
    PROMPT_TOO_LONG,
    Generation,
    GenerationRequest,
    ModelSpec,
    encode,
    fit_ids,
    isolated,
)


class PromptHandler(ModelHandler):
    """The shared handler logic: tokenize, apply the length policy, generate, isolate failures.

    Subclasses load the model and implement `tokenizer_of` and `generate_ids`; results never
    depend on which other prompts share a batch (sampling is seeded per request).
    """

    def __init__(self, spec: ModelSpec):
        # Full batches (a bundle's last one may be short): BatchElements' adaptive sizing would
        # start at 1 and waste the first generate calls, which dominate on a GPU.
        super().__init__(min_batch_size=spec.batch_size, max_batch_size=spec.batch_size)
        self.spec = spec

    @abstractmethod
    def tokenizer_of(self, model: Any) -> Any:
        """The tokenizer that encodes prompts and decodes outputs for `model`."""

    @abstractmethod
    def generate_ids(
        self, model: Any, prompts: Sequence[list[int]], seeds: Sequence[int]
    ) -> list[tuple[str, int]]:
        """For each prompt (token ids), the decoded new text and the number of new tokens."""

    def run_inference(
        self,
        batch: Sequence[GenerationRequest],
        model: Any,
        inference_args: dict[str, Any] | None = None,
    ) -> list[Generation]:
        spec = self.spec
        tokenizer = self.tokenizer_of(model)
        results: list[Generation | None] = [None] * len(batch)
        todo: list[tuple[int, list[int], int]] = []  # (position, ids, truncated)
        for i, request in enumerate(batch):
            ids = encode(tokenizer, request.prompt, spec.add_special_tokens)
            fitted = fit_ids(ids, spec.prompt_budget, spec.prompt_too_long)
            if fitted is None:
                results[i] = Generation(
                    prompt_tokens=len(ids),
                    error=PROMPT_TOO_LONG,
                    detail=f"{len(ids)} prompt tokens > budget {spec.prompt_budget} "
                    f"(max_model_len {spec.max_model_len} - max_new_tokens "
                    f"{spec.sampling.max_new_tokens})",
                )
            else:
                todo.append((i, *fitted))

        def run(items: Sequence[tuple[int, list[int], int]]) -> list[Generation]:
            outs = self.generate_ids(
                model, [ids for _, ids, _ in items], [batch[i].seed for i, _, _ in items]
            )
            return [
                Generation(text, len(ids), n_new, truncated)
                for (_, ids, truncated), (text, n_new) in zip(items, outs, strict=True)
            ]

        if todo:
            for (i, _, _), generation in zip(todo, isolated(todo, run), strict=True):
                results[i] = generation
        return results  # type: ignore[return-value]

    def get_num_bytes(self, batch: Sequence[GenerationRequest]) -> int:
        # Beam's default pickles the batch for a metric; the prompt bytes say the same for less.
        return sum(len(r.prompt.encode("utf-8", "surrogatepass")) for r in batch)

    def get_metrics_namespace(self) -> str:
        return f"iptkit.inference.{self.spec.backend}"


class StoringHandler(ModelHandler):
    """Keeps each generation in the cache as soon as its batch is done, inside RunInference's
    own step (a step after RunInference may run only once the whole stage has, which would keep
    nothing from a run killed half way). Requests arrive as `(cache key, request)`."""

    def __init__(self, inner: PromptHandler, root: str):
        spec = inner.spec
        super().__init__(min_batch_size=spec.batch_size, max_batch_size=spec.batch_size)
        self.inner, self.root = inner, root

    def load_model(self) -> Any:
        return self.inner.load_model()

    def share_model_across_processes(self) -> bool:
        return self.inner.share_model_across_processes()

    def run_inference(
        self,
        batch: Sequence[tuple[str, GenerationRequest]],
        model: Any,
        inference_args: dict[str, Any] | None = None,
    ) -> list[Generation]:
        from iptkit.transforms.inference.cache import store

        generations = self.inner.run_inference([r for _, r in batch], model, inference_args)
        for (key, _), generation in zip(batch, generations, strict=True):
            if generation.error is None:  # a failure is worth asking again on a rerun
                store(self.root, key, generation)
        return generations

    def get_num_bytes(self, batch: Sequence[tuple[str, GenerationRequest]]) -> int:
        return self.inner.get_num_bytes([r for _, r in batch])

    def get_metrics_namespace(self) -> str:
        return self.inner.get_metrics_namespace()


def make_handler(spec: ModelSpec) -> PromptHandler:
    """The handler of `spec.backend`; vLLM is imported only when chosen."""
    if spec.backend == "transformers":
        from iptkit.transforms.inference.backend_transformers import TransformersHandler

        return TransformersHandler(spec)
    if spec.backend == "vllm":
        from iptkit.transforms.inference.backend_vllm import VllmHandler

        return VllmHandler(spec)
    raise ValueError(f"unknown inference backend {spec.backend!r}; use one of {MODEL_BACKENDS}")
