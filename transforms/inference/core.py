"""The inference layer every model stage shares (synthesize now; translate, respond, judge next).

Three pieces, each with one job:

- `InferenceOptions`: the spec options of a model (backend, model path, dtype, context length,
  sampling, batch size, the too-long-prompt policy). A stage's options model derives from it,
  so every model stage spells these keys the same way. `model_spec()` turns them into the plain
  `ModelSpec` the handlers take (handlers know nothing of pydantic or stages).
- `PromptHandler` (in `prompt_handler`, which alone imports Beam's torch-loading `ml` package):
  a Beam `ModelHandler` taking `GenerationRequest`s (a prompt and its sampling
  seed) and giving `Generation`s. It tokenizes, applies the length policy, generates, and isolates
  failures: when a batch raises, its elements are retried one by one and only those that still
  fail come back as `Generation(error=...)`. Backends (`inference_transformers`,
  `inference_vllm`) write only loading and `generate_ids`.
- `Generate`: `(key, GenerationRequest) -> (key, Generation)` through Beam's `RunInference` with
  a `KeyedModelHandler`, so a stage keeps its record (or group of records) as the key. Failures
  that escape a handler (a crash in the whole call) reach RunInference's dead-letter output and
  are turned into `Generation(error="inference_failed")`, so a stage turns them into rejects and
  the pipeline goes on.

Prompt building stays in the stages: a handler generates from whatever text it is given.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

import apache_beam as beam
from pydantic import Field, ValidationInfo, field_validator, model_validator

from iptkit.hashing import seeded_int
from iptkit.transforms.record import _JsonCoder, shallow_dict
from iptkit.transforms.stage_config import BASE_DIR, StageConfig

if TYPE_CHECKING:  # Beam's ml package imports torch: loaded only when a model stage runs
    from apache_beam.ml.inference.base import ModelHandler

MODEL_BACKENDS = ("transformers", "vllm")
PROMPT_TOO_LONG = "prompt_too_long"
INFERENCE_FAILED = "inference_failed"


@dataclass(frozen=True)
class SamplingSpec:
    """How to pick tokens. temperature 0 is greedy (the paper's and LMOps' default)."""

    max_new_tokens: int = 400
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class ModelSpec:
    """Everything a handler needs to load and run one model; plain data, pickles to workers."""

    backend: str
    model: str
    tokenizer: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    trust_remote_code: bool = False
    max_model_len: int = 4096
    add_special_tokens: bool = True
    batch_size: int = 16
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    prompt_too_long: str = "truncate"
    sampling: SamplingSpec = SamplingSpec()

    @property
    def prompt_budget(self) -> int:
        """Most prompt tokens that leave room for `max_new_tokens` within `max_model_len`."""
        return self.max_model_len - self.sampling.max_new_tokens


def _model_location(value: str | None, info: ValidationInfo) -> str | None:
    """A local folder (relative to the spec's folder) made absolute, else a hub id as given.

    A value that looks like a path (./, ../, /, ~) must exist, so a typo is a spec error rather
    than a failed download on a worker.
    """
    if value is None:
        return None
    base = (info.context or {}).get(BASE_DIR, os.getcwd())
    local = os.path.normpath(os.path.join(base, os.path.expanduser(value)))
    if os.path.exists(local):
        return local
    if value.startswith((".", "/", "~")):
        raise ValueError(f"no such folder: {local} (paths are relative to the spec's folder)")
    return value


class InferenceOptions(StageConfig):
    """Model options shared by every model stage; a stage's options model derives from this."""

    backend: Literal["transformers", "vllm"] = Field(
        "transformers",
        description="transformers (CPU or one GPU) or vllm (GPU worker, pip install iptkit[vllm])",
    )
    model: str | None = Field(
        None,
        description="model folder (relative to the spec's folder) or hub id; trust_remote_code "
        "stays off unless set",
    )
    tokenizer: str | None = Field(None, description="tokenizer folder or hub id; default: model")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights dtype; auto: the checkpoint's own"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="transformers only: auto picks cuda when available"
    )
    trust_remote_code: bool = Field(False, description="run the model repository's own code")
    max_model_len: int = Field(
        4096,
        ge=16,
        description="context length in tokens: prompt + new tokens (LMOps: the target LM's "
        "max length)",
    )
    max_new_tokens: int = Field(400, ge=1, description="most tokens generated per prompt")
    temperature: float = Field(0.0, ge=0, description="0: greedy; > 0: sampling")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling (temperature > 0)")
    top_k: int = Field(0, ge=0, description="top-k sampling, 0 for off (temperature > 0)")
    batch_size: int = Field(16, ge=1, description="prompts per generate call")
    tensor_parallel_size: int = Field(1, ge=1, description="vllm: GPUs one engine spans")
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="vllm: share of GPU memory for weights and KV cache"
    )
    add_special_tokens: bool = Field(
        True,
        description="let the tokenizer add its special tokens (BOS) to each prompt, as vLLM's "
        "generate does by default",
    )
    prompt_too_long: Literal["truncate", "reject"] = Field(
        "truncate",
        description="a prompt over max_model_len - max_new_tokens tokens: truncate drops its "
        "earliest tokens, reject makes the record a reject with reason prompt_too_long",
    )

    cache: bool | str = Field(
        True,
        description="keep every finished generation and reuse it on a rerun (RUN/cache/STAGE/); "
        "a folder (relative to the spec's, or gs://...) to share one cache between runs; false "
        "to turn it off",
    )

    _location = field_validator("model", "tokenizer")(_model_location)

    @field_validator("cache")
    @classmethod
    def _cache_folder(cls, value: bool | str, info: ValidationInfo) -> bool | str:
        if isinstance(value, bool) or "://" in value:
            return value
        base = (info.context or {}).get(BASE_DIR, os.getcwd())
        return os.path.normpath(os.path.join(base, os.path.expanduser(value)))

    @model_validator(mode="after")
    def _model_needed(self) -> InferenceOptions:
        if self.backend not in MODEL_BACKENDS and self.model is not None:
            raise ValueError(f"backend {self.backend} runs no model; drop model or change backend")
        if self.backend in MODEL_BACKENDS:
            if self.model is None:
                raise ValueError(f"backend {self.backend} needs a model (a folder or hub id)")
            if self.max_new_tokens >= self.max_model_len:
                raise ValueError(
                    f"max_new_tokens {self.max_new_tokens} leaves no room for a prompt in "
                    f"max_model_len {self.max_model_len}"
                )
        return self

    def model_spec(self) -> ModelSpec:
        """The handler-side view of these options."""
        if self.backend not in MODEL_BACKENDS or self.model is None:
            raise ValueError(f"backend {self.backend} runs no model")
        return ModelSpec(
            backend=self.backend,
            model=self.model,
            tokenizer=self.tokenizer,
            dtype=self.dtype,
            device=self.device,
            trust_remote_code=self.trust_remote_code,
            max_model_len=self.max_model_len,
            add_special_tokens=self.add_special_tokens,
            batch_size=self.batch_size,
            tensor_parallel_size=self.tensor_parallel_size,
            gpu_memory_utilization=self.gpu_memory_utilization,
            prompt_too_long=self.prompt_too_long,
            sampling=SamplingSpec(self.max_new_tokens, self.temperature, self.top_p, self.top_k),
        )


def sampling_seed(seed: int, record_id: str) -> int:
    """A record's sampling seed from the spec seed and its id: the same on every runner."""
    return seeded_int(seed, record_id) >> 1  # fits a signed 64-bit int


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt and the seed its sampling uses (ignored when greedy)."""

    prompt: str
    seed: int = 0


@dataclass(frozen=True)
class Generation:
    """What a handler gives back for one request. `error` is a reject reason (prompt_too_long,
    inference_failed) with `detail`; then `text` is empty."""

    text: str = ""
    prompt_tokens: int = 0
    new_tokens: int = 0
    truncated_tokens: int = 0
    error: str | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return shallow_dict(self)


class GenerationCoder(_JsonCoder):
    type_ = Generation


beam.coders.registry.register_coder(Generation, GenerationCoder)


@lru_cache(maxsize=4)
def load_tokenizer(location: str, trust_remote_code: bool = False) -> Any:
    """The model's tokenizer, loaded once per process (prompt builders and handlers share it)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)


def spec_tokenizer(spec: ModelSpec) -> Any:
    return load_tokenizer(spec.tokenizer or spec.model, spec.trust_remote_code)


def encode(tokenizer: Any, text: str, add_special_tokens: bool) -> list[int]:
    """Token ids of a prompt exactly as the handlers feed them to the model."""
    return tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]


def fit_ids(ids: list[int], budget: int, policy: str) -> tuple[list[int], int] | None:
    """The prompt ids within `budget` and how many were cut, or None when `policy` is reject.

    Truncation keeps the end of the prompt: the earliest context goes first, and whatever the
    prompt ends with (the text to work on, a chat template's assistant turn) survives.
    """
    if len(ids) <= budget:
        return ids, 0
    if policy == "reject" or budget <= 0:
        return None
    return ids[len(ids) - budget :], len(ids) - budget


def _failure(reason: str, exc: BaseException) -> Generation:
    return Generation(error=reason, detail=f"{type(exc).__name__}: {exc}"[:2000])


def isolated(
    items: Sequence[Any], run: Callable[[Sequence[Any]], list[Generation]]
) -> list[Generation]:
    """`run(items)`, or, when the batch raises, `run([item])` one at a time: only the items
    that fail alone become failed Generations (LMOps replaces the whole batch with dummies)."""
    try:
        results = run(items)
        if len(results) != len(items):
            raise ValueError(f"{len(results)} generations for {len(items)} prompts")
        return results
    except Exception as exc:  # noqa: BLE001 (one bad prompt must not fail the others)
        if len(items) == 1:
            return [_failure(INFERENCE_FAILED, exc)]
        return [isolated([item], run)[0] for item in items]


class Generate(beam.PTransform):
    """`(key, GenerationRequest) -> (key, Generation)` through RunInference.

    Keys travel untouched (a record, or a stage's whole working state), so no join is needed
    after inference. A batch whose handler call raises past the handler's own isolation goes
    to RunInference's dead-letter output and comes back here as failed Generations. With a
    `cache` folder, requests answered before are looked up there and skip the model, and each
    new generation is stored there as its batch completes (`inference/cache.py`).
    """

    def __init__(
        self,
        spec: ModelSpec,
        handler: ModelHandler | None = None,
        label: str = "",
        namespace: str | None = None,
        cache: str | None = None,
    ):
        super().__init__(label=label or None)
        self._spec = spec
        self._handler = handler
        self._cache = cache
        # RunInference's metrics (batch latency, counts) go to the stage's namespace, so the
        # stage's time includes its inference.
        self._namespace = namespace or f"iptkit.inference.{spec.backend}"

    def expand(self, requests):
        from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

        from iptkit.transforms.inference.cache import HITS, Lookup
        from iptkit.transforms.inference.prompt_handler import StoringHandler, make_handler

        handler = self._handler or make_handler(self._spec)
        hits = None
        if self._cache is not None:
            looked = requests | "Cache lookup" >> beam.ParDo(
                Lookup(self._cache, self._spec, self._namespace)
            ).with_outputs(HITS, main="misses")
            requests, hits = looked["misses"], looked[HITS]
            handler = StoringHandler(handler, self._cache)
        results, dead = (
            requests
            | "RunInference"
            >> RunInference(
                KeyedModelHandler(handler), metrics_namespace=self._namespace
            ).with_exception_handling()
        )

        def failed(item):
            batch, (exc_type, exc_repr, _) = item
            detail = f"{getattr(exc_type, '__name__', exc_type)}: {exc_repr}"[:2000]
            for key, _ in batch:
                yield key, Generation(error=INFERENCE_FAILED, detail=detail)

        lost = dead.failed_inferences | "Failed" >> beam.FlatMap(failed)
        answered = (results, lost) if hits is None else (results, lost, hits)
        return answered | "Join" >> beam.Flatten()
