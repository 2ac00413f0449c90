"""An OpenAI-compatible server for the tests: a real HTTP server (the standard library's
ThreadingHTTPServer) serving a tiny local model through iptkit's transformers backend
(`TransformersHandler.generate_ids`, seeded per request), so the same seed gives the same
tokens as `backend: transformers`.

    python tests/openai_server.py --model DIR [--port P] [--served-model-name NAME]
                                  [--control-dir DIR]

It takes (and ignores) vLLM's other arguments, so the vllm backend can start it in place of
`python -m vllm.entrypoints.openai.api_server`. Endpoints:

- `POST /v1/completions`: `prompt` as text or token ids, `max_tokens`, `temperature`,
  `top_p`, `top_k`, `seed`, `stop`, `repetition_penalty`; answers `choices[0].text`, `usage`.
- `POST /v1/chat/completions`: `messages`, rendered with the tokenizer's chat template.
- `GET /v1/models`, `GET /health`; `GET /stats`: requests counted per prompt.
- `POST /control`: what the next requests do: `{"fail": {"status": 429, "times": 2,
  "retry_after": 0}}`, `{"hang": {"times": 1, "seconds": 30}}` (answers after the client gave
  up), `{"die_after": 3}` (the process exits on receiving the 3rd generation request from now),
  `{"echo_auth": true}` (failures echo the Authorization header, as careless servers do),
  `{"replies": [["SUBSTRING", "TEXT"], ...]}` (a request whose prompt or messages contain
  SUBSTRING is answered TEXT, the first rule that matches, instead of the model: fixed judge
  verdicts for the chat benchmark tests).

With a control dir (`--control-dir` or `$IPTKIT_TEST_SERVER_DIR`, inherited by a server the
vllm backend starts), every generation request is appended to `requests.jsonl` there (so counts
survive a restart), and a `control.json` written there is applied, then removed, on the next
request (how a test steers a server whose port it does not know).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CONTROL_DIR_ENV = "IPTKIT_TEST_SERVER_DIR"
HERE = Path(__file__).resolve()


def prompt_key(body: dict[str, Any]) -> str:
    """What identifies a request's prompt in the counts: a hash of its prompt or messages."""
    what = body.get("messages") if "messages" in body else body.get("prompt")
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


class Model:
    """The tiny model behind the server: one generate call at a time (a lock), since the
    server answers requests on many threads."""

    def __init__(self, folder: str):
        from transformers import AutoConfig

        from iptkit.transforms.inference.backend_transformers import TransformersHandler
        from iptkit.transforms.inference.core import ModelSpec

        limit = AutoConfig.from_pretrained(folder).max_position_embeddings
        spec = ModelSpec("transformers", folder, device="cpu", max_model_len=limit)
        self.handler = TransformersHandler(spec)
        self.loaded = self.handler.load_model()
        self.tokenizer = self.loaded.tokenizer
        self.lock = threading.Lock()

    def generate(self, ids: list[int], body: dict[str, Any]) -> tuple[str, int]:
        from iptkit.transforms.inference.core import SamplingSpec

        stop = body.get("stop") or ()
        sampling = SamplingSpec(
            max_new_tokens=int(body.get("max_tokens") or 16),
            temperature=float(body.get("temperature", 1.0)),
            top_p=float(body.get("top_p", 1.0)),
            top_k=max(0, int(body.get("top_k") or 0)),
            stop=(stop,) if isinstance(stop, str) else tuple(stop),
            repetition_penalty=float(body.get("repetition_penalty") or 1.0),
        )
        seed = int(body.get("seed") or 0)
        with self.lock:
            ((text, n_new),) = self.handler.generate_ids(self.loaded, [ids], [seed], sampling)
        return text, n_new


class State:
    """Counts and the behaviour the tests ask for; shared by the request threads."""

    def __init__(self, model: Model, name: str, control_dir: str | None):
        self.model, self.name, self.control_dir = model, name, control_dir
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.fail: dict[str, Any] = {}
        self.hang: dict[str, Any] = {}
        self.die_after: int | None = None
        self.echo_auth = False
        self.replies: list[tuple[str, str]] = []

    def apply(self, control: dict[str, Any]) -> None:
        with self.lock:
            if "fail" in control:
                self.fail = dict(control["fail"] or {})
            if "hang" in control:
                self.hang = dict(control["hang"] or {})
            if "die_after" in control:
                self.die_after = control["die_after"]
            if "echo_auth" in control:
                self.echo_auth = bool(control["echo_auth"])
            if "replies" in control:
                self.replies = [(str(a), str(b)) for a, b in control["replies"] or []]

    def reply(self, body: dict[str, Any]) -> str | None:
        """The fixed answer of the first `replies` rule whose substring the request holds."""
        what = json.dumps(body.get("messages") or body.get("prompt"), ensure_ascii=False)
        with self.lock:
            return next((text for part, text in self.replies if part in what), None)

    def read_control_file(self) -> None:
        if not self.control_dir:
            return
        path = os.path.join(self.control_dir, "control.json")
        taken = f"{path}.{os.getpid()}"
        try:
            os.rename(path, taken)  # one server takes it, once
        except OSError:
            return
        with open(taken, encoding="utf-8") as f:
            self.apply(json.load(f))
        os.remove(taken)

    def log(self, key: str, path: str, status: int) -> None:
        with self.lock:
            self.counts[key] += 1
            self.statuses[str(status)] += 1
        if self.control_dir:
            row = {"pid": os.getpid(), "key": key, "path": path, "status": status}
            with open(os.path.join(self.control_dir, "requests.jsonl"), "a") as f:
                f.write(json.dumps(row) + "\n")

    def decide(self) -> tuple[str, Any]:
        """What to do with the next generation request: die, fail, hang or answer."""
        with self.lock:
            if self.die_after is not None:
                self.die_after -= 1
                if self.die_after <= 0:
                    return "die", None
            if self.fail.get("times", 0) > 0:
                self.fail["times"] -= 1
                return "fail", dict(self.fail)
            if self.hang.get("times", 0) > 0:
                self.hang["times"] -= 1
                return "hang", dict(self.hang)
        return "answer", None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers
    state: State

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        state = self.state
        if self.path == "/health":
            self._send(200, {})
        elif self.path == "/v1/models":
            root = state.model.handler.spec.model
            self._send(200, {"object": "list", "data": [{"id": state.name, "root": root}]})
        elif self.path == "/stats":
            with state.lock:
                self._send(200, {"counts": state.counts, "statuses": state.statuses})
        elif self.path == "/bodies":
            with state.lock:
                self._send(200, state.bodies)
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        state = self.state
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/control":
            state.apply(body)
            self._send(200, {"ok": True})
            return
        if self.path not in ("/v1/completions", "/v1/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        state.read_control_file()
        key = prompt_key(body)
        with state.lock:
            state.bodies.append(body)
        action, arg = state.decide()
        if action == "die":
            state.log(key, self.path, -1)
            os._exit(3)
        if action == "fail":
            status = int(arg.get("status", 500))
            state.log(key, self.path, status)
            message = "injected failure"
            if state.echo_auth:
                message += f"; you sent {self.headers.get('Authorization')}"
            headers = {}
            if arg.get("retry_after") is not None:
                headers["Retry-After"] = str(arg["retry_after"])
            self._send(status, {"error": {"message": message}}, headers)
            return
        if action == "hang":
            state.log(key, self.path, 0)
            time.sleep(float(arg.get("seconds", 30)))
        if body.get("model") != state.name:
            state.log(key, self.path, 404)
            self._send(404, {"error": {"message": f"model {body.get('model')!r} not served"}})
            return
        try:
            self._answer(body)
            if action != "hang":
                state.log(key, self.path, 200)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _answer(self, body: dict[str, Any]) -> None:
        model = self.state.model
        tokenizer = model.tokenizer
        fixed = self.state.reply(body)
        if fixed is not None:
            ids, (text, n_new) = [], (fixed, len(tokenizer(fixed)["input_ids"]))
        elif self.path == "/v1/chat/completions":
            text = tokenizer.apply_chat_template(
                body["messages"], tokenize=False, add_generation_prompt=True
            )
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        elif isinstance(body.get("prompt"), list):
            ids = [int(t) for t in body["prompt"]]
        else:
            ids = tokenizer(body.get("prompt", ""), add_special_tokens=True)["input_ids"]
        if fixed is None:
            text, n_new = model.generate(ids, body)
        finish = "length" if n_new >= int(body.get("max_tokens") or 16) else "stop"
        usage = {"prompt_tokens": len(ids), "completion_tokens": n_new}
        usage["total_tokens"] = len(ids) + n_new
        if self.path == "/v1/chat/completions":
            choice = {"index": 0, "message": {"role": "assistant", "content": text}}
        else:
            choice = {"index": 0, "text": text}
        choice["finish_reason"] = finish
        self._send(200, {"object": "text_completion", "choices": [choice], "usage": usage})


def serve(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--served-model-name", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--control-dir", default=os.environ.get(CONTROL_DIR_ENV))
    parser.add_argument("--port-file", default=None, help="write the bound port here")
    args, _ = parser.parse_known_args(argv)  # vLLM's other arguments are ignored
    model = Model(args.model)
    Handler.state = State(model, args.served_model_name or args.model, args.control_dir)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    if args.port_file:
        Path(args.port_file + ".tmp").write_text(str(server.server_address[1]))
        os.replace(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


# ---------------------------------------------------------------------------------------------
# The tests' side


def command() -> list[str]:
    """The command that starts this server (before --model ...), for the vllm backend."""
    return [sys.executable, str(HERE)]


class ServerProcess:
    """This server in a subprocess on a free port of 127.0.0.1."""

    def __init__(self, model: str | Path, workdir: Path, name: str = "tiny", env: Any = None):
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir, self.name = workdir, name
        port_file = workdir / "port"
        port_file.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [*command(), "--model", str(model), "--served-model-name", name,
             "--control-dir", str(workdir), "--port-file", str(port_file)],
            env=env, stdout=subprocess.DEVNULL, stderr=open(workdir / "server.log", "ab"),
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not port_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"test server did not start: {(workdir / 'server.log').read_text()}"
                )
            time.sleep(0.1)
        self.port = int(port_file.read_text())
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.url}/v1"

    def _call(self, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method="POST" if data else "GET"
        )
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def control(self, **what: Any) -> None:
        self._call("/control", what)

    def reset(self) -> None:
        self.control(fail={}, hang={}, die_after=None, echo_auth=False, replies=[])

    def counts(self) -> dict[str, int]:
        return self._call("/stats")["counts"]

    def statuses(self) -> dict[str, int]:
        return self._call("/stats")["statuses"]

    def bodies(self) -> list[dict[str, Any]]:
        return self._call("/bodies")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def logged_requests(workdir: Path) -> list[dict[str, Any]]:
    """Every generation request servers with this control dir received, across restarts."""
    path = Path(workdir) / "requests.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


if __name__ == "__main__":
    serve()
