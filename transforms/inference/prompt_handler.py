"""`PromptHandler`: the Beam ModelHandler every inference backend derives from.

Kept apart from `inference` because Beam's `apache_beam.ml.inference` imports torch (about two
seconds): stages that never run a model (and `iptkit validate`) should not pay for it, so this
module is imported only when a pipeline with a model stage is built.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler

from iptkit.transforms.inference.core import (
    MODEL_BACKENDS,
    MODEL_COUNTER_PREFIX,
    PROMPT_TOO_LONG,
    Generation,
    GenerationRequest,
    ModelSpec,
    NoTokenizer,
    SamplingSpec,
    encode,
    fit_ids,
    isolated,
    uses_chat,
)


@dataclass(frozen=True)
class Fitted:
    """A request ready for the model: its prompt ids after the length policy (None when the
    backend sends text: an endpoint without a tokenizer) and how many tokens were cut."""

    request: GenerationRequest
    ids: list[int] | None
    truncated: int = 0


class PromptHandler(ModelHandler):
    """The shared handler logic: tokenize, apply the length policy, generate, isolate failures.

    Subclasses load the model and implement `tokenizer_of` and `generate_ids` (or, for backends
    whose requests fail one by one, `generate_fitted`); results never depend on which other
    prompts share a batch (sampling is seeded per request). Counts of prompts and tokens go to
    Beam counters in `namespace` (the stage's, given by `Generate`).
    """

    def __init__(self, spec: ModelSpec, namespace: str | None = None):
        # Full batches (a bundle's last one may be short): BatchElements' adaptive sizing would
        # start at 1 and waste the first generate calls, which dominate on a GPU.
        size = self.batch_size(spec)
        super().__init__(min_batch_size=size, max_batch_size=size)
        self.spec = spec
        self.namespace = namespace

    @staticmethod
    def batch_size(spec: ModelSpec) -> int:
        """Prompts per `run_inference` call."""
        return spec.batch_size

    @abstractmethod
    def tokenizer_of(self, model: Any) -> Any:
        """The tokenizer that encodes prompts and decodes outputs for `model`."""

    def generate_ids(
        self,
        model: Any,
        prompts: Sequence[list[int]],
        seeds: Sequence[int],
        sampling: SamplingSpec | None = None,
    ) -> list[tuple[str, int]]:
        """For each prompt (token ids), the decoded new text and the number of new tokens,
        sampled as `sampling` says (default: the spec's)."""
        raise NotImplementedError(f"{type(self).__name__} generates through generate_fitted")

    def generate_fitted(self, model: Any, items: Sequence[Fitted]) -> list[Generation]:
        """A Generation per fitted request; a backend whose requests fail one at a time (a
        server) returns those as `Generation(error=...)` and the others as usual."""
        outs = self.generate_ids(
            model, [f.ids or [] for f in items], [f.request.seed for f in items]
        )
        return [
            Generation(text, len(f.ids or []), n_new, f.truncated)
            for f, (text, n_new) in zip(items, outs, strict=True)
        ]

    def fit(self, request: GenerationRequest, tokenizer: Any) -> Fitted | Generation:
        """The request within the prompt budget, or the Generation that rejects it."""
        spec = self.spec
        if isinstance(tokenizer, NoTokenizer):
            return Fitted(request, None)
        ids = encode(tokenizer, request.prompt, spec.add_special_tokens)
        # Chat messages cannot be cut token by token: an over-long chat prompt is rejected.
        chat = uses_chat(spec, request)
        fitted = fit_ids(ids, spec.prompt_budget, "reject" if chat else spec.prompt_too_long)
        if fitted is None:
            return Generation(
                prompt_tokens=len(ids),
                error=PROMPT_TOO_LONG,
                detail=f"{len(ids)} prompt tokens > budget {spec.prompt_budget} "
                f"(max_model_len {spec.max_model_len} - max_new_tokens "
                f"{spec.sampling.max_new_tokens})",
            )
        return Fitted(request, *fitted)

    def run_inference(
        self,
        batch: Sequence[GenerationRequest],
        model: Any,
        inference_args: dict[str, Any] | None = None,
    ) -> list[Generation]:
        tokenizer = self.tokenizer_of(model)
        results: list[Generation | None] = [None] * len(batch)
        todo: list[tuple[int, Fitted]] = []
        for i, request in enumerate(batch):
            fitted = self.fit(request, tokenizer)
            if isinstance(fitted, Generation):
                results[i] = fitted
            else:
                todo.append((i, fitted))
        if todo:

            def run(items: Sequence[tuple[int, Fitted]]) -> list[Generation]:
                return self.generate_fitted(model, [f for _, f in items])

            for (i, _), generation in zip(todo, isolated(todo, run), strict=True):
                results[i] = generation
        self.count(results, prompts=len(todo))  # type: ignore[arg-type]
        return results  # type: ignore[return-value]

    def count(self, results: Sequence[Generation], prompts: int, **more: int) -> None:
        """Adds this batch's counts to the stage's Beam counters (`model.<name>`): prompts sent,
        their tokens, failed generations, and what a backend adds (HTTP requests, retries)."""
        counts: Counter[str] = Counter(more)
        counts["prompts"] += prompts
        for g in results:
            if g.error:
                counts["failed"] += 1
            else:
                counts["prompt_tokens"] += g.prompt_tokens
                counts["new_tokens"] += g.new_tokens
        namespace = self.namespace or self.get_metrics_namespace()
        for name, value in counts.items():
            if value:
                Metrics.counter(namespace, MODEL_COUNTER_PREFIX + name).inc(value)

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
        size = inner.batch_size(inner.spec)
        super().__init__(min_batch_size=size, max_batch_size=size)
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


def make_handler(spec: ModelSpec, namespace: str | None = None) -> PromptHandler:
    """The handler of `spec.backend`, counting in `namespace`; torch is imported only for
    transformers."""
    if spec.backend == "transformers":
        from iptkit.transforms.inference.backend_transformers import TransformersHandler

        return TransformersHandler(spec, namespace)
    if spec.backend == "vllm":
        from iptkit.transforms.inference.backend_vllm import VllmHandler

        return VllmHandler(spec, namespace)
    if spec.backend == "openai":
        from iptkit.transforms.inference.backend_openai import OpenAIHandler

        return OpenAIHandler(spec, namespace)
    raise ValueError(f"unknown inference backend {spec.backend!r}; use one of {MODEL_BACKENDS}")
