"""Model references are local paths unless the spec says `hub:` (issue 18, item 11).

On main before this, `model: some/name` that did not exist was taken as a Hub id: validate
passed, and the run made six Hub requests and died with a traceback after 28 s. Now it is a
spec error naming the key and the resolved path, exit code 2, with no network request.
"""

import socket
import textwrap

import pytest

from iptkit.errors import EvalError
from iptkit.eval.harness import model_location
from iptkit.pipelines.cli import main
from iptkit.transforms.inference.backend_vllm import VllmServer
from iptkit.transforms.inference.core import InferenceOptions
from iptkit.transforms.inference.model_files import is_hub, local_model_path


def write_spec(tmp_path, stage: str) -> str:
    (tmp_path / "a.jsonl").write_text('{"text": "hello"}\n')
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(
            f"""\
            seed: 1
            output: out
            sources:
              - {{name: web, format: jsonl, path: a.jsonl}}
            stages:
              - {stage}
            """
        )
    )
    return str(spec)


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test: a validate must not look anything up."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network connection attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("key", ["model", "tokenizer"])
def test_missing_model_path_is_a_validate_error_not_a_hub_lookup(tmp_path, capsys, no_network, key):
    extra = "" if key == "model" else "model: hub:org/real, "
    spec = write_spec(tmp_path, f"translate: {{{extra}{key}: some/name}}")
    assert main(["validate", spec]) == 2
    err = capsys.readouterr().err
    assert f"spec.yaml:6: stages.0.translate.{key}:" in err
    assert f"no such folder: {tmp_path / 'some' / 'name'}" in err
    assert "hub:some/name" in err and "Traceback" not in err


def test_hub_is_explicit_and_openai_model_is_a_name(tmp_path, capsys, no_network):
    spec = write_spec(tmp_path, "translate: {model: hub:Qwen/Qwen2.5-7B-Instruct}")
    assert main(["validate", spec]) == 0
    openai = write_spec(
        tmp_path, "respond: {backend: openai, base_url: 'http://127.0.0.1:1/v1', model: org/x}"
    )
    assert main(["validate", openai]) == 0
    capsys.readouterr()
    assert main(["validate", write_spec(tmp_path, "translate: {model: 'hub:'}")]) == 2
    assert "hub: needs a model id" in capsys.readouterr().err
    options = InferenceOptions(model="gs://bucket/model")
    assert options.model == "gs://bucket/model"  # a remote folder, copied at run time


def test_what_loads_a_reference(tmp_path, monkeypatch):
    assert is_hub("hub:org/name") and local_model_path("hub:org/name") == "org/name"
    assert not is_hub(str(tmp_path)) and local_model_path(str(tmp_path)) == str(tmp_path)
    # A vLLM server for local folders runs offline; one for a hub: model may download it.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    local = InferenceOptions(backend="vllm", model=str(tmp_path)).model_spec()
    assert VllmServer(local).env()["HF_HUB_OFFLINE"] == "1"
    hub = InferenceOptions(backend="vllm", model="hub:org/name").model_spec()
    assert "HF_HUB_OFFLINE" not in VllmServer(hub).env()


def test_eval_model_is_a_path_unless_hub(tmp_path, no_network):
    with pytest.raises(EvalError, match=r"some/name: no such directory .*hub:ORG/NAME"):
        model_location("some/name")
    with pytest.raises(EvalError, match="not a model in the local Hugging Face cache"):
        model_location("hub:no-such-org/no-such-model")


def test_synth_tokenizer_is_a_path_unless_hub(tmp_path, capsys, no_network):
    data = tmp_path / "task.jsonl"
    data.write_text("")
    args = ["synth", "tuning-data", str(data), "--out", str(tmp_path / "o.jsonl")]
    assert main([*args, "--tokenizer", "some/name"]) == 2
    err = capsys.readouterr().err
    assert "--tokenizer: no such folder" in err and "hub:some/name" in err
    assert "Traceback" not in err
