"""A pipeline run killed with SIGKILL at random points (seeded), rerun into the same run
directory, leaves the same bytes as a run never interrupted (issue 18, "Prove it"): outputs,
saved stage data, rejects, side files and shards. Nothing is lost: the ledger balances and every
record read is in the output or in one reject file, each strict UTF-8 JSON Lines.

The spec is the demo's shape without its slow parts: three of its sources (JSONL, text files,
conversations), record stages, the rule-based synthesizer and pack into two shard splits.
"""

import random
import textwrap
import time
from pathlib import Path

import pytest
from conftest import run_cli
from killing import check_nothing_lost, files, run_killed

EXAMPLES = Path(__file__).resolve().parents[2] / "pipelines" / "examples"


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    data = EXAMPLES / "data"
    path = root / "spec.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            seed: 7
            output: run
            output_shards: 2
            sources:
              - {{name: web_en, format: jsonl, path: {data / "web_en.jsonl.gz"}}}
              - {{name: docs, format: text, path: "{data / "docs"}/*.txt", split: paragraph}}
              - name: chats
                format: conversations
                path: {data / "chats_lmsys.jsonl"}
                id_field: conversation_id
            stages:
              - normalize: {{save: true}}
              - dedup_exact: {{}}
              - synthesize: {{backend: rules, rounds: 2, fraction: 0.5, kinds: [raw]}}
              - pack: {{tokenizer: {EXAMPLES / "tokenizer"}, seq_len: 128, validation: 0.1}}
            """
        )
    )
    return path


def test_killed_runs_rerun_to_the_same_bytes(spec, tmp_path):
    reference = tmp_path / "reference"
    started = time.monotonic()
    assert run_cli("run", spec, "--out", reference) == 0  # in this process: no start-up cost
    span = time.monotonic() - started  # about a subprocess's time after its run dir is made
    expected = files(reference)
    assert any(name.startswith("shards/validation/") for name in expected)
    read = check_nothing_lost(reference)

    rng = random.Random(18)
    run = tmp_path / "run"
    kills = [run_killed(spec, run, rng.uniform(0.05, 0.5) * span) for _ in range(2)]
    assert kills == [True, True], "a run finished before its kill: the kill points are too late"
    # Reruns into the same directory: no --force, nothing of the killed runs is kept.
    assert run_cli("run", spec, "--out", run) == 0
    assert files(run) == expected
    assert check_nothing_lost(run) == read
