"""Shared fixtures: a small corpus with every format and every kind of broken record."""

import gzip
import json
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO_SPEC = REPO / "pipelines" / "examples" / "demo.yaml"


def files_under(root: Path) -> dict[str, bytes]:
    """Every file below `root`, by relative path, with its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A corpus in three formats: 7 good records, 4 broken at read, 1 with invalid UTF-8."""
    data = tmp_path / "data"
    (data / "docs").mkdir(parents=True)
    lines = [
        json.dumps({"text": "The first  document.", "url": "a"}),
        json.dumps({"text": "Ｆｕｌｌ－ｗｉｄｔｈ text", "url": "b"}),
        "{not json",
        json.dumps({"url": "no text"}),
        json.dumps({"text": ["a list"]}),
        json.dumps({"text": ""}),
        json.dumps({"text": "The third document."}),
    ]
    (data / "web.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    (data / "docs" / "a.txt").write_bytes(
        b"Para one.\n\nPara two has\xc2\xa0nbsp.\n\nBad \xff byte\n"
    )
    (data / "chats.jsonl").write_text(
        json.dumps(
            {
                "conversation_id": "c1",
                "conversation": [
                    {"role": "user", "content": "Hi  there"},
                    {"role": "assistant", "content": "Hello"},
                ],
                "openai_moderation": [],
                "language": "English",
                "redacted": False,
            }
        )
        + "\n"
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        seed: 3
        output: {tmp_path / "run"}
        sources:
          - {{name: web, format: jsonl, path: "data/*.jsonl.gz", lang: en}}
          - {{name: docs, format: text, path: "data/docs/*.txt"}}
          - {{name: chats, format: conversations, path: "data/chats.jsonl", id_field: conversation_id}}
        stages:
          - normalize: {{form: NFKC}}
        """)
    )
    return spec


def run_cli(*args: str) -> int:
    from iptkit.pipelines.cli import main

    return main([str(a) for a in args])


def spec_with_test_stage(corpus: Path, monkeypatch, stage_class) -> Path:
    """The corpus spec plus a stage defined by a test, registered for this test only (a test
    stage sets `type_name`, `config_class` and `summary` instead of registering for good)."""
    from iptkit.transforms import stage as stage_module

    name = stage_class.type_name
    monkeypatch.setitem(stage_module._REGISTRY, name, stage_class)
    spec = corpus.parent / f"{name}.yaml"
    spec.write_text(corpus.read_text() + f"  - {name}: {{}}\n")
    return spec


@pytest.fixture(scope="session")
def tiny_chat_models(tmp_path_factory) -> dict[str, Path]:
    """The tiny local chat models (scripts/make_tiny_models.py), built once per session."""
    from llm_helpers import tiny_models

    return tiny_models().make_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def xcit_example_run(tmp_path_factory, tiny_chat_models) -> Path:
    """pipelines/examples/xcit.yaml, run on the DirectRunner with the tiny constant chat model
    (translate's outputs pass the checks for short sources): read by the xcit and export tests."""
    run = tmp_path_factory.mktemp("xcit-example") / "run"
    spec = REPO / "pipelines" / "examples" / "xcit.yaml"
    model = tiny_chat_models["constant"]
    assert run_cli("run", spec, "--out", run, "--set", f"stages.translate.model={model}") == 0
    return run
