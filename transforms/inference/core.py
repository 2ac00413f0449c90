"""The inference layer every model stage shares (synthesize now; translate, respond, judge next).

Three pieces, each with one job:

- `InferenceOptions`: the spec options of a model (backend, model path, dtype, context length,
  sampling, batch size, the too-long-prompt policy). A stage's options model derives from it,
  so every model stage spells these keys the same way. `model_spec()` turns them into the plain
  `ModelSpec` the handlers take (handlers know nothing of pydantic or stages).
- `PromptHandler` (in `prompt_handler`, which alone imports Beam's torch-loading `ml` package):
  a Beam `ModelHandler` taking `GenerationRequest`s (a prompt, its sampling seed and, for chat
  endpoints, its messages) and giving `Generation`s. It tokenizes, applies the length policy,
  generates, and isolates failures: when a batch raises, its elements are retried one by one
  and only those that still fail come back as `Generation(error=...)`. Backends
  (`backend_transformers`, `backend_vllm`: a vLLM server per worker, `backend_openai`: any
  OpenAI-compatible endpoint) write only loading and generating.
- `Generate`: `(key, GenerationRequest) -> (key, Generation)` through Beam's `RunInference` with
  a `KeyedModelHandler`, so a stage keeps its record (or group of records) as the key. Failures
  that escape a handler (a crash in the whole call) reach RunInference's dead-letter output and
  are turned into `Generation(error="inference_failed")`, so a stage turns them into rejects and
  the pipeline goes on.

Prompt building stays in the stages: a handler generates from whatever text it is given.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import apache_beam as beam
from pydantic import Field, ValidationInfo, field_validator, model_validator

from iptkit.extras import require
from iptkit.hashing import seeded_int
from iptkit.transforms.inference.model_files import HUB_PREFIX, is_hub, local_model_path
from iptkit.transforms.record import _JsonCoder, shallow_dict
from iptkit.transforms.stage_config import BASE_DIR, StageConfig

if TYPE_CHECKING:  # Beam's ml package imports torch: loaded only when a model stage runs
    from apache_beam.ml.inference.base import ModelHandler

MODEL_BACKENDS = ("transformers", "vllm", "openai")
# Backends that talk to an OpenAI-compatible server (an endpoint, or a vLLM server per worker).
SERVER_BACKENDS = ("vllm", "openai")
PROMPT_TOO_LONG = "prompt_too_long"
INFERENCE_FAILED = "inference_failed"
# A server that did not answer within `timeout_s` (after `max_retries`), or kept failing.
REQUEST_TIMEOUT = "request_timeout"
REQUEST_FAILED = "request_failed"
# Beam counters a model handler adds in its stage's metrics namespace (`model.<name>`); the
# runner copies them into stats.json (`stages.STAGE.model`).
MODEL_COUNTER_PREFIX = "model."
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


@dataclass(frozen=True)
class SamplingSpec:
    """How to pick tokens. temperature 0 is greedy (the paper's and LMOps' default)."""

    max_new_tokens: int = 400
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    # Strings that end the output (not included in it).
    stop: tuple[str, ...] = ()
    repetition_penalty: float = 1.0
    # A JSON Schema the output must follow, as canonical JSON (servers constrain decoding).
    json_schema: str | None = None

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
    # Servers (backend openai: an endpoint; vllm: a server per worker started by iptkit).
    base_url: str | None = None
    api_key_env: str | None = None
    endpoint: str = "auto"
    concurrency: int = 8
    timeout_s: float = 600.0
    max_retries: int = 4
    retry_backoff_s: float = 1.0
    vllm_args: tuple[str, ...] = ()

    @property
    def prompt_budget(self) -> int:
        """Most prompt tokens that leave room for `max_new_tokens` within `max_model_len`."""
        return self.max_model_len - self.sampling.max_new_tokens


def _model_location(value: str | None, info: ValidationInfo) -> str | None:
    """A local folder (relative to the spec's folder) made absolute; `hub:ORG/NAME` (the
    Hugging Face Hub, only when the spec says so) and remote folders (gs://, s3://) as given;
    for backend openai, `model` is the served model's name.

    Anything else is a local path and must exist, so a typo is a spec error naming the key and
    the resolved path, never a Hub lookup (issue 18: a missing `some/name` went to the Hub).
    """
    if value is None or "://" in value:
        return value
    if info.field_name == "model" and info.data.get("backend") == "openai":
        return value
    if value.startswith(HUB_PREFIX):
        if not value[len(HUB_PREFIX) :].strip():
            raise ValueError(f"{HUB_PREFIX} needs a model id, as in {HUB_PREFIX}ORG/NAME")
        return value
    base = (info.context or {}).get(BASE_DIR, os.getcwd())
    local = os.path.normpath(os.path.join(base, os.path.expanduser(value)))
    if not os.path.exists(local):
        raise ValueError(
            f"no such folder: {local} (paths are relative to the spec's folder; a model on the "
            f"Hugging Face Hub is written {HUB_PREFIX}{value})"
        )
    return local


class InferenceOptions(StageConfig):
    """Model options shared by every model stage; a stage's options model derives from this."""

    backend: Literal["transformers", "vllm", "openai"] = Field(
        "transformers",
        description="transformers (CPU or one GPU), vllm (a vLLM server per GPU worker, pip "
        "install iptkit[vllm]) or openai (any OpenAI-compatible endpoint at base_url)",
    )
    model: str | None = Field(
        None,
        description="model folder (relative to the spec's folder; it must exist; gs:// or "
        "s3:// folders are copied once per worker) or hub:ORG/NAME for the Hugging Face Hub; "
        "backend openai: the served model's name; trust_remote_code stays off unless set",
    )
    tokenizer: str | None = Field(
        None,
        description="tokenizer folder or hub:ORG/NAME; default: model. Backend openai: optional, the "
        "served model's tokenizer for length fitting and token-id prompts (without it, prompts "
        "go as text and are not fitted)",
    )
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
    stop: list[str] = Field(
        [], description="strings that end a generation; the output stops before the first one"
    )
    repetition_penalty: float = Field(
        1.0,
        gt=0,
        description="divide the scores of tokens already in the prompt or output by this "
        "(> 1 discourages repeats; 1: off); openai: sent only when not 1 (a vLLM extension)",
    )
    json_schema: dict[str, Any] | None = Field(
        None,
        description="a JSON Schema the output must follow: vllm and openai send it as "
        "response_format json_schema (constrained decoding); transformers cannot",
    )
    batch_size: int = Field(
        16,
        ge=1,
        description="prompts per generate call; openai, vllm: prompts handed to the HTTP "
        "client at once, at least 8 x concurrency",
    )
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
        "earliest tokens, reject makes the record a reject with reason prompt_too_long "
        "(endpoint chat: always reject, messages are not cut)",
    )
    base_url: str | None = Field(
        None,
        description="openai: the endpoint's base URL, e.g. https://api.openai.com/v1 or "
        "http://HOST:8000/v1 (a vLLM, SGLang or TGI server); with no backend key, it sets "
        "backend openai",
    )
    api_key_env: str | None = Field(
        None,
        description="openai: the NAME of the environment variable holding the API key, read on "
        "each worker (the key never enters the spec, the run directory or logs); null: no key",
    )
    endpoint: Literal["auto", "completions", "chat"] = Field(
        "auto",
        description="openai, vllm: /v1/completions (the prompt as built here, token ids when "
        "there is a tokenizer) or /v1/chat/completions (the messages; the server applies the "
        "chat template); auto: chat for a chat stage's requests on an endpoint named without a "
        "tokenizer (its template is the server's), else completions",
    )
    concurrency: int = Field(
        8, ge=1, description="openai, vllm: requests in flight per worker process and stage"
    )
    timeout_s: float = Field(
        600.0,
        gt=0,
        description="openai, vllm: seconds to wait for a server's answer; a request that "
        "times out is retried, then rejected with reason request_timeout",
    )
    max_retries: int = Field(
        4,
        ge=0,
        description="openai, vllm: retries of a request after a 429, a 5xx, a connection error "
        "or a timeout, with exponential backoff (Retry-After honoured)",
    )
    retry_backoff_s: float = Field(
        1.0, ge=0, description="openai, vllm: the first retry's wait in seconds, doubled each time"
    )
    vllm_args: list[str] = Field(
        [],
        description="vllm: extra command-line arguments of the server, e.g. "
        "[--max-num-seqs, '256']",
    )

    cache: bool | str = Field(
        True,
        description="keep every finished generation and reuse it on a rerun (RUN/cache/STAGE/); "
        "a folder (relative to the spec's, or gs://...) to share one cache between runs; false "
        "to turn it off",
    )

    # Stages whose prompts are not chat turns (synthesize) set this to False.
    chat_endpoint: ClassVar[bool] = True

    _location = field_validator("model", "tokenizer")(_model_location)

    @model_validator(mode="before")
    @classmethod
    def _endpoint_means_openai(cls, data: Any) -> Any:
        # Naming an endpoint is choosing it: a stage with base_url and no backend is openai, so
        # one changed line (backend: vllm -> base_url: ...) moves a stage onto an endpoint.
        if isinstance(data, dict) and data.get("base_url") and "backend" not in data:
            return {**data, "backend": "openai"}
        return data

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        # The value is never echoed: a key pasted here must not reach an error message.
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError(
                "api_key_env names an environment variable (upper case, e.g. OPENAI_API_KEY), "
                "not the key itself"
            )
        return value

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
                what = (
                    "the served model's name"
                    if self.backend == "openai"
                    else "a folder or hub:ORG/NAME"
                )
                raise ValueError(f"backend {self.backend} needs a model ({what})")
            if self.max_new_tokens >= self.max_model_len:
                raise ValueError(
                    f"max_new_tokens {self.max_new_tokens} leaves no room for a prompt in "
                    f"max_model_len {self.max_model_len}"
                )
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend openai needs base_url (e.g. http://HOST:8000/v1)")
        if self.backend != "openai":
            for key in ("base_url", "api_key_env"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key} is for backend openai (backend is {self.backend})")
        if self.json_schema is not None and self.backend == "transformers":
            raise ValueError(
                "json_schema: backend transformers cannot constrain its output; use vllm or openai"
            )
        if self.endpoint == "chat" and not self.chat_endpoint:
            raise ValueError(
                "endpoint chat: this stage's prompts are not chat turns; use completions"
            )
        # What this process imports for the backend (vLLM itself runs as the worker's server).
        if self.backend == "transformers":
            require("models", "backend transformers", "torch", "transformers")
        elif self.backend == "vllm":
            require("vllm", "backend vllm (the prompts' tokenizer)", "transformers")
        elif self.backend == "openai" and self.tokenizer is not None:
            require("models", "backend openai with a tokenizer", "transformers")
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
            sampling=SamplingSpec(
                self.max_new_tokens,
                self.temperature,
                self.top_p,
                self.top_k,
                tuple(self.stop),
                self.repetition_penalty,
                None if self.json_schema is None else canonical_json(self.json_schema),
            ),
            base_url=self.base_url,
            api_key_env=self.api_key_env,
            endpoint=self.endpoint,
            concurrency=self.concurrency,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
            retry_backoff_s=self.retry_backoff_s,
            vllm_args=tuple(self.vllm_args),
        )


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sampling_seed(seed: int, record_id: str) -> int:
    """A record's sampling seed from the spec seed and its id: the same on every runner."""
    return seeded_int(seed, record_id) >> 1  # fits a signed 64-bit int


# Chat turns as (role, content) pairs: hashable, and the same in every process.
Messages = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt and the seed its sampling uses (ignored when greedy). `messages` are the chat
    turns the prompt was rendered from (`chat_prompt.chat_request`), sent instead of the prompt
    to a chat endpoint; None for prompts that are not chat turns."""

    prompt: str
    seed: int = 0
    messages: Messages | None = None


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

    return AutoTokenizer.from_pretrained(
        local_model_path(location),
        trust_remote_code=trust_remote_code,
        local_files_only=not is_hub(location),
    )


class NoTokenizer:
    """Backend openai without a `tokenizer`: prompts go as text, unfitted, and chat prompts use
    the plain layout (a chat endpoint applies the server's template to the messages). Anything
    that needs token counts fails with a message naming the spec key."""

    chat_template = None
    bos_token = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError(
            "this stage counts tokens, and backend openai has no tokenizer: set tokenizer: to "
            "the served model's tokenizer folder or hub:ORG/NAME"
        )

    encode = __call__
    apply_chat_template = __call__


NO_TOKENIZER = NoTokenizer()


def spec_tokenizer(spec: ModelSpec) -> Any:
    """The tokenizer prompts are built, fitted and counted with; `NO_TOKENIZER` for an endpoint
    named without one. An endpoint whose served name is an absolute path to a local model
    folder (what `vllm serve /models/x` serves it as) counts tokens with that folder's
    tokenizer, so moving a local stage onto such a server is one line (`base_url:`)."""
    if spec.backend == "openai" and spec.tokenizer is None:
        if not (os.path.isabs(spec.model) and os.path.isdir(spec.model)):
            return NO_TOKENIZER
    return load_tokenizer(spec.tokenizer or spec.model, spec.trust_remote_code)


def uses_chat(spec: ModelSpec, request: GenerationRequest) -> bool:
    """Whether `request` goes to the chat endpoint. With `endpoint: auto`, a chat stage's request
    (one with messages) to an endpoint named without a tokenizer does: iptkit cannot render the
    model's chat template, the server can. So one line (`base_url:`) moves a local chat stage
    onto a server and it still prompts the model in its own chat format."""
    if request.messages is None:
        return False
    if spec.endpoint == "auto":
        return spec.backend == "openai" and spec.tokenizer is None
    return spec.endpoint == "chat"


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

        handler = self._handler or make_handler(self._spec, self._namespace)
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
