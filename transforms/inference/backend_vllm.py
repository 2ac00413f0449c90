"""The `vllm` backend: one OpenAI-compatible vLLM server per worker, as Beam's own vLLM handler
does (apache_beam.ml.inference.vllm_inference), with iptkit's request logic on top.

Why a server rather than an in-process `vllm.LLM`: the engine is not thread-safe (every DoFn
thread of a worker would call it at once), has no timeout and no restart, and two model stages
would start two engines on one GPU. A server schedules concurrent requests itself (continuous
batching), runs in its own process (a crash does not take the worker down) and is shared:

- **one server per model per worker process**: a module-level registry, keyed by what the
  server is started with (model, tokenizer, dtype, context, parallelism, memory share, extra
  arguments), so stages naming the same model talk to the same server;
- **started on first use**: `SERVER_COMMAND` (`python -m vllm.entrypoints.openai.api_server`, a
  module-level setting the tests replace with their own server) on a free port of 127.0.0.1,
  ready once `GET /health` answers 200;
- **restarted when it dies**: before each request when its process has exited, and when a
  request fails to connect or times out while its `/health` does not answer (a hung server is
  killed first); requests then go on with the shared retry policy;
- **model folders on object stores** (gs://, s3://) are copied once per worker to local disk
  (`model_files.local_model_path`) before the server starts.

Requests go through the `openai` backend's client: token-id prompts fitted by the shared layer,
a seed per request, `concurrency` in flight, timeouts and retries. vLLM is imported by the
server process only, so CPU installs never need it (`pip install iptkit[vllm]` on GPU workers).
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any

from iptkit.transforms.inference.backend_openai import EndpointClient, OpenAIHandler
from iptkit.transforms.inference.core import ModelSpec
from iptkit.transforms.inference.model_files import is_hub, local_model_path

# The server's command before iptkit's arguments (--model, --port, ...); tests substitute theirs.
SERVER_COMMAND: list[str] = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
START_TIMEOUT_S = 1800.0  # loading a large model from local disk can take many minutes
HEALTH_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_key(spec: ModelSpec) -> tuple[Any, ...]:
    """What a server is started with: stages whose specs agree on it share one server."""
    return (
        spec.model, spec.tokenizer, spec.dtype, spec.max_model_len, spec.tensor_parallel_size,
        spec.gpu_memory_utilization, spec.trust_remote_code, spec.vllm_args,
    )  # fmt: skip


class VllmServer:
    """One vLLM server process and its address; restarts it when it dies."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.epoch = 0  # +1 on each (re)start: a failed request says which server failed
        self.restarts = 0
        self.port = 0
        self.log_path = ""
        self._process: subprocess.Popen | None = None
        self._lock = threading.RLock()

    def command(self, port: int) -> list[str]:
        spec = self.spec
        cmd = [
            *SERVER_COMMAND,
            "--model", local_model_path(spec.model),
            "--served-model-name", spec.model,
            "--host", "127.0.0.1",
            "--port", str(port),
            "--max-model-len", str(spec.max_model_len),
            "--dtype", spec.dtype,
            "--tensor-parallel-size", str(spec.tensor_parallel_size),
            "--gpu-memory-utilization", str(spec.gpu_memory_utilization),
        ]  # fmt: skip
        if spec.tokenizer:
            cmd += ["--tokenizer", local_model_path(spec.tokenizer)]
        if spec.trust_remote_code:
            cmd.append("--trust-remote-code")
        return cmd + list(spec.vllm_args)

    def env(self) -> dict[str, str]:
        """The server's environment: offline unless the spec names a `hub:` model or tokenizer,
        so a local folder never turns into a Hub request."""
        hub = any(is_hub(p) for p in (self.spec.model, self.spec.tokenizer) if p)
        return dict(os.environ) if hub else {**os.environ, "HF_HUB_OFFLINE": "1"}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def healthy(self, timeout: float = HEALTH_TIMEOUT_S) -> bool:
        try:
            url = f"http://127.0.0.1:{self.port}/health"
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return response.status == 200
        except OSError:
            return False

    def _log_tail(self, n: int = 3000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, os.path.getsize(self.log_path) - n))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _start(self) -> None:
        self.stop()
        self.port = free_port()
        fd, self.log_path = tempfile.mkstemp(prefix=f"iptkit-vllm-{self.port}-", suffix=".log")
        with os.fdopen(fd, "wb") as log:
            self._process = subprocess.Popen(
                self.command(self.port), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=self.env(),
            )  # fmt: skip
        self.epoch += 1
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(
                    f"the vLLM server for {self.spec.model} exited with code "
                    f"{self._process.returncode} while starting; its log ({self.log_path}) "
                    f"ends:\n{self._log_tail()}"
                )
            if self.healthy(timeout=2):
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(
            f"the vLLM server for {self.spec.model} did not answer /health within "
            f"{START_TIMEOUT_S:g} s; its log ({self.log_path}) ends:\n{self._log_tail()}"
        )

    def address(self) -> tuple[str, int]:
        """The base URL and epoch of a running server, starting (or restarting) it if its
        process is not running."""
        with self._lock:
            if not self.alive():
                if self._process is not None:
                    self.restarts += 1
                self._start()
            return self.base_url, self.epoch

    def recover(self, epoch: int) -> bool:
        """After a request to server `epoch` failed to connect or timed out: restart the server
        if it is still that one and is dead or does not answer /health. True if restarted (by
        this call or by another thread since)."""
        with self._lock:
            if epoch != self.epoch:
                return False  # already restarted: the caller's retry goes to the new one
            if self.alive() and self.healthy():
                return False
            self.restarts += 1
            self._start()
            return True

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


_SERVERS: dict[tuple[Any, ...], VllmServer] = {}
_REGISTRY_LOCK = threading.Lock()


def shared_server(spec: ModelSpec) -> VllmServer:
    """This worker process's server for `spec`'s model, started on first use."""
    with _REGISTRY_LOCK:
        server = _SERVERS.get(server_key(spec))
        if server is None:
            server = _SERVERS[server_key(spec)] = VllmServer(spec)
    server.address()
    return server


@atexit.register
def stop_servers() -> None:
    """Stops every server this process started (at exit, and in tests)."""
    with _REGISTRY_LOCK:
        servers = list(_SERVERS.values())
        _SERVERS.clear()
    for server in servers:
        server.stop()


class VllmHandler(OpenAIHandler):
    """RunInference handler that sends requests to this worker's vLLM server for the model."""

    def load_model(self) -> EndpointClient:
        server = shared_server(self.spec)
        return EndpointClient(self.spec, server.address, None, server.recover)
