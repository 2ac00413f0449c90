"""The `openai` backend: any OpenAI-compatible endpoint (a hosted API, or a vLLM, SGLang or TGI
server a team runs), and the HTTP client the `vllm` backend's per-worker server shares.

The shared layer does what it does for every backend: the prompt is built by the stage, then
encoded and fitted with the model's tokenizer (when the spec names one; without it the prompt
goes as text, unfitted), and each request carries its own sampling seed. The client then sends
one HTTP request per prompt, `concurrency` at a time per worker process and stage (a thread
pool over the batch), each with:

- a timeout (`timeout_s`): a server that does not answer in time is retried like a failure and,
  when the retries are spent, the prompt's record is rejected with reason `request_timeout`;
- retries on 429, 5xx, connection errors and timeouts (`max_retries`), with exponential backoff
  from `retry_backoff_s` (a `Retry-After` header wins); other statuses fail at once. What still
  fails is a reject with reason `request_failed` and the status and message in its detail;
- the API key read on the worker from the environment variable `api_key_env` names: it goes in
  the Authorization header only, and is masked in anything a reject or log could show.

Nothing here imports the `openai` package: the standard library's `http.client` keeps one
keep-alive connection per thread, which is all the protocol needs. Counts of HTTP requests and
retries join the shared prompt and token counters in the stage's Beam metrics namespace.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import random
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from iptkit.transforms.inference.core import (
    REQUEST_FAILED,
    REQUEST_TIMEOUT,
    Generation,
    ModelSpec,
    SamplingSpec,
    spec_tokenizer,
    uses_chat,
)
from iptkit.transforms.inference.prompt_handler import Fitted, PromptHandler

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 60.0
# Where a server's base URL comes from and what to do when it stops answering: an endpoint has
# one fixed address; a vLLM server per worker moves to a new port when it is restarted.
Address = Callable[[], tuple[str, int]]  # -> (base URL, epoch)
Recover = Callable[[int], bool]  # (epoch that failed) -> whether it was restarted


class RequestError(Exception):
    """A request that failed: `retry` says whether another try may succeed."""

    def __init__(
        self,
        message: str,
        retry: bool,
        timeout: bool = False,
        connection: bool = False,
        wait: float | None = None,
    ):
        super().__init__(message)
        self.retry, self.timeout, self.connection, self.wait = retry, timeout, connection, wait


@dataclass
class Outcome:
    """One prompt's result and what it cost: HTTP requests sent, retries, server restarts."""

    generation: Generation
    requests: int = 0
    retries: int = 0
    restarts: int = 0


def api_key(spec: ModelSpec) -> str | None:
    """The key from the environment variable the spec names (on the worker), or None."""
    if spec.api_key_env is None:
        return None
    key = os.environ.get(spec.api_key_env)
    if not key:
        raise ValueError(
            f"api_key_env: the environment variable {spec.api_key_env} is not set on this worker"
        )
    return key


def request_body(spec: ModelSpec, fitted: Fitted) -> tuple[str, dict[str, Any]]:
    """The path and JSON body of one request. Parameters outside OpenAI's own API (top_k,
    repetition_penalty) are sent only when set: hosted APIs reject them, vLLM takes them."""
    sampling: SamplingSpec = spec.sampling
    request = fitted.request
    body: dict[str, Any] = {
        "model": spec.model,
        "max_tokens": sampling.max_new_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "seed": request.seed,
    }
    if spec.endpoint == "chat" or uses_chat(spec, request):
        if request.messages is None:
            raise RequestError(
                "endpoint chat: this stage's request has no chat messages; use endpoint "
                "completions",
                retry=False,
            )
        path = "/chat/completions"
        body["messages"] = [{"role": role, "content": text} for role, text in request.messages]
    else:
        path = "/completions"
        body["prompt"] = fitted.ids if fitted.ids is not None else request.prompt
    if sampling.top_k > 0:
        body["top_k"] = sampling.top_k
    if sampling.repetition_penalty != 1:
        body["repetition_penalty"] = sampling.repetition_penalty
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    if sampling.json_schema is not None:
        schema = json.loads(sampling.json_schema)
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema, "strict": True},
        }
    return path, body


def parse_answer(spec: ModelSpec, fitted: Fitted, answer: dict[str, Any]) -> Generation:
    """The Generation of a 200 answer: the text, and token counts from `usage` (the local
    prompt count when the server sends none)."""
    try:
        choice = answer["choices"][0]
        text = choice["message"]["content"] if "message" in choice else choice["text"]
    except (KeyError, IndexError, TypeError) as exc:
        raise RequestError(f"unexpected answer (no {exc}): {str(answer)[:300]}", False) from exc
    usage = answer.get("usage") or {}
    local = len(fitted.ids) if fitted.ids is not None else 0
    return Generation(
        text=text or "",
        prompt_tokens=int(usage.get("prompt_tokens") or local),
        new_tokens=int(usage.get("completion_tokens") or 0),
        truncated_tokens=fitted.truncated,
    )


class _Connections:
    """Keep-alive HTTP connections to one host, reused by any thread (one per request in
    flight); a connection that failed is closed, never reused."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str, int], queue.LifoQueue] = {}
        self._lock = threading.Lock()

    def _pool(self, key: tuple[str, str, int]) -> queue.LifoQueue:
        with self._lock:
            return self._idle.setdefault(key, queue.LifoQueue())

    def post(
        self, url: str, body: bytes, headers: dict[str, str], timeout: float
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        key = (parts.scheme, parts.hostname or "", port)
        pool = self._pool(key)
        try:
            conn = pool.get_nowait()
        except queue.Empty:
            cls = (
                http.client.HTTPSConnection
                if parts.scheme == "https"
                else http.client.HTTPConnection
            )
            conn = cls(key[1], port, timeout=timeout)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except BaseException:
            conn.close()
            raise
        if response.will_close:
            conn.close()
        else:
            pool.put(conn)
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def close(self) -> None:
        with self._lock:
            pools, self._idle = list(self._idle.values()), {}
        for pool in pools:
            while not pool.empty():
                pool.get_nowait().close()


def _retry_after(headers: dict[str, str]) -> float | None:
    try:
        return max(0.0, float(headers["retry-after"]))
    except (KeyError, ValueError):
        return None


class EndpointClient:
    """Sends fitted requests to an OpenAI-compatible server: concurrency, timeouts, retries
    with backoff, key masking. `address()` gives the base URL (and an epoch that changes when a
    managed server restarts); `recover(epoch)` may restart a server that stopped answering."""

    def __init__(
        self,
        spec: ModelSpec,
        address: Address,
        key: str | None = None,
        recover: Recover | None = None,
    ):
        self.spec, self._address, self._key, self._recover = spec, address, key, recover
        self._connections = _Connections()
        self._pool = ThreadPoolExecutor(spec.concurrency, thread_name_prefix="iptkit-http")

    def masked(self, text: str) -> str:
        """`text` with the API key replaced: a server may echo it in an error message."""
        return text.replace(self._key, "***") if self._key else text

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        return headers

    def _once(self, base_url: str, path: str, payload: bytes) -> dict[str, Any]:
        try:
            status, headers, data = self._connections.post(
                base_url.rstrip("/") + path, payload, self._headers(), self.spec.timeout_s
            )
        except TimeoutError as exc:
            raise RequestError(
                f"no answer within timeout_s {self.spec.timeout_s:g}", retry=True, timeout=True
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise RequestError(
                f"connection error: {type(exc).__name__}: {exc}", retry=True, connection=True
            ) from exc
        if status != 200:
            message = data.decode("utf-8", "replace")[:500]
            raise RequestError(
                f"HTTP {status}: {message}",
                retry=status in RETRY_STATUSES or status >= 500,
                wait=_retry_after(headers),
            )
        try:
            return json.loads(data)
        except ValueError as exc:
            raise RequestError(f"answer is not JSON: {data[:200]!r}", retry=False) from exc

    def send(self, fitted: Fitted) -> Outcome:
        """One prompt to its Generation, retrying what may succeed on another try."""
        outcome = Outcome(Generation())
        try:
            path, body = request_body(self.spec, fitted)
        except RequestError as exc:
            outcome.generation = Generation(error=REQUEST_FAILED, detail=str(exc))
            return outcome
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        attempt = 0
        while True:
            base_url, epoch = self._address()
            outcome.requests += 1
            try:
                answer = self._once(base_url, path, payload)
                outcome.generation = parse_answer(self.spec, fitted, answer)
                return outcome
            except RequestError as exc:
                error = exc
            if self._recover is not None and (error.timeout or error.connection):
                outcome.restarts += int(self._recover(epoch))
            if not error.retry or attempt >= self.spec.max_retries:
                reason = REQUEST_TIMEOUT if error.timeout else REQUEST_FAILED
                tries = f"after {attempt + 1} attempt(s)"
                outcome.generation = Generation(
                    prompt_tokens=len(fitted.ids) if fitted.ids is not None else 0,
                    truncated_tokens=fitted.truncated,
                    error=reason,
                    detail=self.masked(f"{error} ({tries})")[:2000],
                )
                return outcome
            wait = error.wait
            if wait is None:
                wait = self.spec.retry_backoff_s * 2**attempt * (0.5 + random.random() / 2)
            time.sleep(min(wait, MAX_BACKOFF_S))
            attempt += 1
            outcome.retries += 1

    def send_all(self, items: Sequence[Fitted]) -> list[Outcome]:
        """Every prompt of a batch, `concurrency` in flight; results in order."""
        if len(items) == 1:
            return [self.send(items[0])]
        return list(self._pool.map(self.send, items))

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._connections.close()


# A batch's requests are all answered before the next batch starts (RunInference's contract),
# so in-flight requests drain at each batch's end: a batch of at least this many times the
# concurrency keeps that drain rare (measured in benchmarks/bench_openai.py).
BATCH_PER_CONCURRENCY = 8


class OpenAIHandler(PromptHandler):
    """RunInference handler for an OpenAI-compatible endpoint at `base_url`."""

    @staticmethod
    def batch_size(spec: ModelSpec) -> int:
        return max(spec.batch_size, BATCH_PER_CONCURRENCY * spec.concurrency)

    def load_model(self) -> EndpointClient:
        spec = self.spec
        base_url = spec.base_url or ""
        return EndpointClient(spec, lambda: (base_url, 0), api_key(spec))

    def tokenizer_of(self, model: Any) -> Any:
        return spec_tokenizer(self.spec)

    def generate_fitted(self, model: EndpointClient, items: Sequence[Fitted]) -> list[Generation]:
        outcomes = model.send_all(items)
        costs = self.__dict__.setdefault("_costs", Counter())
        for o in outcomes:
            costs.update(
                http_requests=o.requests, http_retries=o.retries, server_restarts=o.restarts
            )
        return [o.generation for o in outcomes]

    def count(self, results: Sequence[Generation], prompts: int, **more: int) -> None:
        # What this batch's requests cost (generate_fitted may run more than once per batch).
        costs = self.__dict__.pop("_costs", Counter())
        super().count(results, prompts, **costs, **more)

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        return sum(len(r.prompt.encode("utf-8", "surrogatepass")) for r in batch)
