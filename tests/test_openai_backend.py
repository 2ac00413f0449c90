"""backend openai and the vllm server path, over real HTTP: tests/openai_server.py serves a tiny
Llama built here (scripts/make_tiny_models.py) through iptkit's transformers backend, in its
own process on 127.0.0.1, and can be told to fail, hang or die.

Same seed, same output as backend transformers (greedy, seeded sampling, stop strings,
repetition penalty, the chat endpoint); a hung request is a reject with its reason; a 429 is
retried; the API key reaches neither the run directory nor an error; a whole `iptkit run`
through an endpoint; the vllm backend's server per worker, shared by stages, copied from a
remote folder and restarted when it dies, with the same output.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
import textwrap
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.localfilesystem import LocalFileSystem
from apache_beam.metrics.metric import MetricsFilter
from conftest import REPO, run_cli
from llm_helpers import tiny_models
from openai_server import CONTROL_DIR_ENV, ServerProcess, command, logged_requests, prompt_key

from iptkit.transforms.inference import backend_vllm
from iptkit.transforms.inference.chat_prompt import chat_prompt, chat_request
from iptkit.transforms.inference.core import (
    REQUEST_FAILED,
    REQUEST_TIMEOUT,
    Generate,
    Generation,
    GenerationRequest,
    InferenceOptions,
    load_tokenizer,
    sampling_seed,
)
from iptkit.transforms.inference.model_files import local_model_path
from iptkit.transforms.record import Record
from iptkit.transforms.stage import StageContext
from iptkit.transforms.stages.respond import Respond, RespondConfig

TEXTS = ["hello world", "what is the capital of France?", "write a poem", "two plus two"]
PROMPTS = [
    "hello world, how are you today",
    "the capital of France is",
    "write a short poem about the sea",
    "two plus two equals",
    "a",
    "tell me about cats and dogs and birds",
]
KEY = "sk-test-DO-NOT-LEAK-7f3a9c"
SHAREGPT = REPO / "pipelines" / "examples" / "data" / "chats_sharegpt.jsonl"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    tools = tiny_models()
    root = tmp_path_factory.mktemp("chat-model")
    tokenizer = tools.build_tokenizer(TEXTS + PROMPTS, vocab_size=300)
    tools.tiny_llama(tokenizer, seed=3).save_pretrained(root)
    tokenizer.save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def constant_server(tmp_path_factory):
    """A server for a whole run: a tiny chat model tuned (5 s) to answer every ShareGPT fixture
    instruction with make_tiny_models' constant sentence, so respond keeps its answers."""
    tools = tiny_models()
    rows = [json.loads(line) for line in SHAREGPT.read_text(encoding="utf-8").splitlines()]
    questions = [row["conversations"][0]["value"][:300] for row in rows]
    tokenizer = tools.build_tokenizer([*questions, tools.CONSTANT_ANSWER], vocab_size=400)
    model = tools.tiny_llama(tokenizer, seed=0)
    prompts = [chat_prompt(tokenizer, q) for q in questions]
    tools.train_constant(model, tokenizer, prompts, steps=120, seed=0)
    root = tmp_path_factory.mktemp("constant")
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    process = ServerProcess(root, tmp_path_factory.mktemp("constant-server"), name="constant")
    yield process, root
    process.stop()


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    process = ServerProcess(model_dir, tmp_path_factory.mktemp("server"), name="tiny")
    yield process
    process.stop()


@pytest.fixture
def fresh(server):
    server.reset()
    return server


def options(model, **kw) -> InferenceOptions:
    """A model's options for these tests (a folder, or a served model's name)."""
    base = {"max_model_len": 256, "max_new_tokens": 10, "batch_size": 4}
    return InferenceOptions(**{**base, "model": str(model), **kw})


def endpoint(server, model_dir, **kw) -> InferenceOptions:
    """backend openai at the test server, with the model's tokenizer for token-id prompts."""
    fixed = {"backend": "openai", "base_url": server.base_url, "tokenizer": str(model_dir)}
    return options(server.name, **{"retry_backoff_s": 0.01, "concurrency": 3, **fixed, **kw})


class Collect(beam.PTransform):
    """Writes each element's JSON (`to_json(element)`) as a line of a file, to read back after
    the pipeline (the DirectRunner runs copies of the functions it is given, not the test's)."""

    def __init__(self, path: Path, to_json=lambda x: x):
        super().__init__()
        self._path, self._to_json = str(path), to_json

    def expand(self, pcoll):
        path, to_json = self._path, self._to_json

        def write(element):
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(to_json(element), ensure_ascii=False) + "\n")

        open(path, "w").close()
        return pcoll | beam.Map(write)


def collected(path: Path) -> list:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def generate(opts: InferenceOptions, requests: list[GenerationRequest], ns: str = "test"):
    """{index: Generation} through Generate in a DirectRunner pipeline, and the model counters
    of namespace `ns`."""
    fd, name = tempfile.mkstemp(suffix=".jsonl")
    os.close(fd)
    path = Path(name)
    p = beam.Pipeline()
    (
        p
        | beam.Create(list(enumerate(requests)))
        | Generate(opts.model_spec(), namespace=ns)
        | Collect(path, lambda kv: [kv[0], kv[1].to_dict()])
    )
    result = p.run()
    result.wait_until_finish()
    counters = {
        m.key.metric.name: m.committed
        for m in result.metrics().query(MetricsFilter().with_namespace(ns))["counters"]
    }
    out = {i: Generation(**g) for i, g in collected(path)}
    path.unlink()
    return out, counters


def requests_for(seed: int = 5) -> list[GenerationRequest]:
    return [GenerationRequest(q, sampling_seed(seed, str(i))) for i, q in enumerate(PROMPTS)]


def texts(generations) -> list[tuple[str, int, int]]:
    return [(g.text, g.prompt_tokens, g.new_tokens) for _, g in sorted(generations.items())]


@pytest.mark.parametrize(
    "sampling",
    [
        {},
        {"temperature": 1.0, "top_k": 20},
        {"temperature": 0.8, "top_p": 0.9, "repetition_penalty": 1.3},
    ],
    ids=["greedy", "seeded-sampling", "top-p-and-penalty"],
)
def test_same_seed_same_output_as_transformers(fresh, model_dir, sampling):
    local, _ = generate(options(model_dir, **sampling), requests_for())
    served, counters = generate(endpoint(fresh, model_dir, **sampling), requests_for())
    assert texts(served) == texts(local)
    assert all(g.error is None for g in served.values())
    assert len({t for t, _, _ in texts(local)}) > 1
    # Each prompt went once, as token ids; the counts are in the namespace Generate was given.
    counts = fresh.counts()
    bodies = fresh.bodies()[-len(PROMPTS) :]
    assert all(isinstance(b["prompt"], list) for b in bodies)
    assert all(counts[prompt_key(b)] >= 1 for b in bodies)
    assert counters["model.http_requests"] == counters["model.prompts"] == len(PROMPTS)
    assert counters["model.new_tokens"] == sum(n for _, _, n in texts(served))
    assert "model.http_retries" not in counters


def test_stop_strings_and_the_chat_endpoint_match_transformers(fresh, model_dir):
    tokenizer = load_tokenizer(str(model_dir))
    greedy, _ = generate(options(model_dir), requests_for())
    # A stop string the greedy output of the first prompt writes after its start.
    first = greedy[0].text
    stop = first[len(first) // 2 :][:3]
    local, _ = generate(options(model_dir, stop=[stop]), requests_for())
    served, _ = generate(endpoint(fresh, model_dir, stop=[stop]), requests_for())
    assert texts(served) == texts(local) and stop not in local[0].text
    assert local[0].text == first[: first.index(stop)]
    # Chat: the server renders the messages with the tokenizer's template; the transformers
    # backend gets the same turns rendered here.
    chats = [chat_request(tokenizer, q, 7, system="be brief") for q in PROMPTS[:3]]
    assert chats[0].messages == (("system", "be brief"), ("user", PROMPTS[0]))
    local, _ = generate(options(model_dir), chats)
    served, _ = generate(endpoint(fresh, model_dir, endpoint="chat"), chats)
    assert [t for t, _, _ in texts(served)] == [t for t, _, _ in texts(local)]
    assert "messages" in fresh.bodies()[-1] and "prompt" not in fresh.bodies()[-1]


def test_without_a_tokenizer_prompts_go_as_text(fresh, model_dir):
    opts = InferenceOptions(
        backend="openai", base_url=fresh.base_url, model="tiny", max_new_tokens=6,
        json_schema={"type": "object"},
    )  # fmt: skip
    served, _ = generate(opts, [GenerationRequest("two plus two equals", 1)])
    body = fresh.bodies()[-1]
    assert body["prompt"] == "two plus two equals" and served[0].error is None
    assert served[0].prompt_tokens > 0  # from the server's usage
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert "top_k" not in body and "repetition_penalty" not in body  # not OpenAI's own keys


def test_a_429_is_retried_and_succeeds(fresh, model_dir):
    expected, _ = generate(options(model_dir), requests_for()[:1])
    fresh.control(fail={"status": 429, "times": 2, "retry_after": 0})
    served, counters = generate(endpoint(fresh, model_dir, concurrency=1), requests_for()[:1])
    assert texts(served) == texts(expected)
    key = prompt_key(fresh.bodies()[-1])
    assert fresh.counts()[key] >= 3  # two 429s, then the answer
    assert counters["model.http_retries"] == 2 and counters["model.http_requests"] == 3


def test_failures_past_the_retries_are_rejects_with_their_reason(fresh, model_dir):
    fresh.control(fail={"status": 503, "times": 3})
    served, counters = generate(
        endpoint(fresh, model_dir, concurrency=1, max_retries=2), requests_for()[:1]
    )
    assert served[0].error == REQUEST_FAILED and "HTTP 503" in served[0].detail
    assert "after 3 attempt(s)" in served[0].detail and counters["model.failed"] == 1
    fresh.control(fail={"status": 400, "times": 1})  # not retried
    served, counters = generate(endpoint(fresh, model_dir, concurrency=1), requests_for()[:1])
    assert served[0].error == REQUEST_FAILED and "after 1 attempt(s)" in served[0].detail


def _instructions(n: int) -> list[Record]:
    return [Record(f"r{i}", "chats", PROMPTS[i], kind="instruction", lang="en") for i in range(n)]


def test_a_hung_request_is_a_reject_with_its_reason(fresh, model_dir, tmp_path):
    """The server sleeps past the client's timeout on the first request and its retry: that
    record is rejected with reason request_timeout; the others are answered."""
    fresh.control(hang={"times": 2, "seconds": 4})
    config = RespondConfig(
        backend="openai", base_url=fresh.base_url, model="tiny", tokenizer=str(model_dir),
        max_new_tokens=8, max_response_tokens=6, max_model_len=256, timeout_s=1,
        max_retries=1, retry_backoff_s=0.01, concurrency=1, batch_size=2,
    )  # fmt: skip
    stage = Respond(config, StageContext("respond", seed=3))
    with beam.Pipeline() as p:
        out = p | beam.Create(_instructions(4)) | stage
        out["kept"] | "K" >> Collect(tmp_path / "kept", lambda r: r.id)
        out["rejects"] | "R" >> Collect(tmp_path / "rejects", lambda r: r.to_dict())
    rejects = collected(tmp_path / "rejects")
    # The tiny random model may answer with nothing (empty_response): answered all the same.
    (hung,) = [r for r in rejects if r["reason"] != "empty_response"]
    assert hung["reason"] == REQUEST_TIMEOUT
    assert "no answer within timeout_s 1" in hung["detail"]
    assert "after 2 attempt(s)" in hung["detail"]
    assert len(collected(tmp_path / "kept")) + len(rejects) == 4


def _files_bytes(root: Path) -> dict[str, bytes]:
    found = {}
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found[str(path)] = gzip.decompress(data) if path.suffix == ".gz" else data
    return found


def test_a_run_through_an_endpoint_never_writes_the_key(
    constant_server, tmp_path, monkeypatch, capsys, caplog
):
    """A whole `iptkit run` with respond through backend openai: the key is in the environment
    only; the server echoes it in one failure, which the reject shows masked."""
    server, model_dir = constant_server
    monkeypatch.setenv("IPTKIT_TEST_API_KEY", KEY)
    server.control(fail={"status": 400, "times": 1}, echo_auth=True)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        seed: 5
        output: {tmp_path / "run"}
        sources:
          - {{name: chats, format: conversations, path: {SHAREGPT}, id_field: id}}
        stages:
          - extract: {{turns: first}}
          - respond:
              backend: openai
              base_url: {server.base_url}
              api_key_env: IPTKIT_TEST_API_KEY
              model: constant
              tokenizer: {model_dir}
              max_model_len: 2048
              max_new_tokens: 48
              max_response_tokens: 40
              concurrency: 1
              retry_backoff_s: 0.01
        """)
    )
    assert run_cli("run", spec) == 0
    run = tmp_path / "run"
    stats = json.loads((run / "stats.json").read_text())
    respond = stats["stages"]["respond"]
    assert respond["dropped"] == {REQUEST_FAILED: 1}
    assert respond["out"] == respond["in"] - 1 >= 5
    assert respond["model"]["http_requests"] == respond["in"]
    assert respond["model"]["prompts"] == respond["in"]
    assert respond["model"]["new_tokens"] > 0
    assert "<td>respond</td>" in (run / "report.html").read_text()
    (reject,) = [
        json.loads(line)
        for line in (run / "rejects" / "respond")
        .glob("*.jsonl")
        .__next__()
        .read_text()
        .splitlines()
    ]
    assert "Bearer ***" in reject["detail"] and "HTTP 400" in reject["detail"]
    written = _files_bytes(run)
    assert len(written) > 5
    assert not [path for path, data in written.items() if KEY.encode() in data]
    assert "IPTKIT_TEST_API_KEY" in (run / "spec.resolved.yaml").read_text()
    printed = capsys.readouterr()
    assert KEY not in printed.out + printed.err + caplog.text
    output = [
        json.loads(line)
        for path in sorted((run / "output").glob("*.jsonl.gz"))
        for line in gzip.decompress(path.read_bytes()).splitlines()
    ]
    assert len(output) == respond["out"]
    assert {r["pairs"][0]["response"] for r in output} == {tiny_models().CONSTANT_ANSWER}


def test_a_key_that_is_missing_or_pasted_into_the_spec_is_an_error_without_it(
    fresh, model_dir, tmp_path, capsys
):
    from iptkit.transforms.inference.backend_openai import OpenAIHandler

    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        output: {tmp_path / "run"}
        sources:
          - {{name: chats, format: conversations, path: {SHAREGPT}, id_field: id}}
        stages:
          - extract: {{}}
          - respond: {{backend: openai, base_url: {fresh.base_url}, model: tiny, api_key_env: {KEY}}}
        """)
    )
    assert run_cli("validate", spec) != 0
    printed = capsys.readouterr()
    assert "names an environment variable" in printed.err + printed.out
    assert KEY not in printed.err + printed.out
    handler = OpenAIHandler(endpoint(fresh, model_dir, api_key_env="IPTKIT_NO_SUCH").model_spec())
    with pytest.raises(ValueError, match="api_key_env: the environment variable IPTKIT_NO_SUCH"):
        handler.load_model()


# ---------------------------------------------------------------------------------------------
# The vllm backend: a server per worker (the test server standing in for vLLM's)


class FakeRemote(LocalFileSystem):
    """A file system under the scheme iptkitfake:// that reads local files, as an object store
    is read: through Beam's FileSystems, by prefix."""

    PREFIX = "iptkitfake://"
    opened: list[str] = []

    @classmethod
    def scheme(cls) -> str:
        return "iptkitfake"

    def has_dirs(self) -> bool:
        return False

    def _list(self, prefix):
        local = prefix[len(self.PREFIX) :]
        for root, _, files in os.walk(os.path.dirname(local) or "/"):
            for name in files:
                path = os.path.join(root, name)
                if path.startswith(local):
                    yield FileMetadata(self.PREFIX + path, os.path.getsize(path))

    def open(self, path, mime_type="application/octet-stream", compression_type=None):
        FakeRemote.opened.append(path)
        return super().open(path[len(self.PREFIX) :], mime_type, compression_type)


@pytest.fixture
def vllm_with_test_server(tmp_path, monkeypatch):
    """The vllm backend starting tests/openai_server.py; its servers log to tmp_path."""
    monkeypatch.setattr(backend_vllm, "SERVER_COMMAND", command())
    monkeypatch.setenv(CONTROL_DIR_ENV, str(tmp_path / "control"))
    monkeypatch.setenv("IPTKIT_MODEL_CACHE", str(tmp_path / "cache"))
    (tmp_path / "control").mkdir()
    yield tmp_path / "control"
    backend_vllm.stop_servers()


def test_remote_model_folders_are_copied_once_per_worker(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("IPTKIT_MODEL_CACHE", str(tmp_path / "cache"))
    FakeRemote.opened.clear()
    remote = FakeRemote.PREFIX + str(model_dir)
    local = local_model_path(remote)
    assert Path(local).parent == tmp_path / "cache"
    files = sorted(p.name for p in Path(model_dir).iterdir())
    assert sorted(p.name for p in Path(local).iterdir()) == files
    assert (Path(local) / "config.json").read_bytes() == (model_dir / "config.json").read_bytes()
    assert local_model_path(remote) == local and len(FakeRemote.opened) == len(files)
    assert local_model_path(str(model_dir)) == str(model_dir)


def test_a_killed_vllm_server_is_restarted_and_the_output_is_the_same(
    model_dir, vllm_with_test_server
):
    """The server dies on the 3rd request; the requests that fail on it restart it and are
    retried, and the output equals the transformers backend's."""
    control = vllm_with_test_server
    expected, _ = generate(options(model_dir, temperature=1.0), requests_for())
    (control / "control.json").write_text(json.dumps({"die_after": 3}))
    remote = FakeRemote.PREFIX + str(model_dir)  # copied to local disk before the start
    opts = options(remote, backend="vllm", temperature=1.0, concurrency=2, retry_backoff_s=0.01)
    served, counters = generate(opts, requests_for())
    assert texts(served) == texts(expected)
    log = logged_requests(control)
    assert len({row["pid"] for row in log}) == 2  # the first server died, a second answered
    assert [row["status"] for row in log].count(-1) == 1
    answered = [row["key"] for row in log if row["status"] == 200]
    assert len(answered) == len(set(answered)) == len(PROMPTS)
    assert counters["model.server_restarts"] == 1 and counters["model.http_retries"] >= 1
    (server,) = backend_vllm._SERVERS.values()
    assert server.restarts == 1 and server.epoch == 2
    assert str(Path(os.environ["IPTKIT_MODEL_CACHE"])) in server.command(1)[len(command()) + 1]


def test_stages_naming_the_same_model_share_one_server(model_dir, vllm_with_test_server):
    control = vllm_with_test_server
    records = _instructions(3)
    config = RespondConfig(
        backend="vllm", model=str(model_dir), max_new_tokens=8, max_response_tokens=6,
        max_model_len=256,
    )  # fmt: skip
    with beam.Pipeline() as p:
        both = p | beam.Create(records)
        both | "A" >> Respond(config, StageContext("respond_a"))
        both | "B" >> Respond(config, StageContext("respond_b"))
    log = logged_requests(control)
    assert len(log) == 6 and {row["status"] for row in log} == {200}
    assert len({row["pid"] for row in log}) == 1 and len(backend_vllm._SERVERS) == 1


def test_swallow_ja_moves_a_stage_onto_an_endpoint_with_one_line(tmp_path, tiny_chat_models):
    """The issue's promise: swallow_ja.yaml's respond goes to an OpenAI-compatible server
    serving the same model by adding one line (`base_url`); with no tokenizer named, respond's
    chat requests go to the chat endpoint (the server applies the model's template), and the
    output is byte for byte the local run's."""
    model = tiny_chat_models["constant"]
    server = ServerProcess(model, tmp_path / "server", name=str(model))
    try:
        spec = REPO / "pipelines" / "examples" / "swallow_ja.yaml"
        models = [f"stages.{s}.model={model}" for s in ("translate", "respond", "judge")]
        runs = {}
        for name, extra in (
            ("local", []),
            ("endpoint", [f"stages.respond.base_url={server.base_url}"]),
        ):
            args = ["run", spec, "--out", tmp_path / name]
            for item in models + extra:
                args += ["--set", item]
            assert run_cli(*args) == 0
            out = tmp_path / name / "output"
            runs[name] = {Path(k).relative_to(out): v for k, v in _files_bytes(out).items()}
        stats = json.loads((tmp_path / "endpoint" / "stats.json").read_text())
        respond = stats["stages"]["respond"]["model"]
        assert respond["http_requests"] == respond["prompts"] > 0
        assert {body.get("messages") is not None for body in server.bodies()} == {True}
        assert runs["endpoint"] and runs["endpoint"] == runs["local"]
    finally:
        server.stop()
