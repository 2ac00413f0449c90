"""Resumable generation: keys, entries, and a run killed with SIGKILL half way and rerun."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import files_under, run_cli
from llm_helpers import tiny_models

from iptkit.transforms.inference.cache import (
    entry_path,
    folder_fingerprint,
    load,
    model_identity,
    request_key,
    store,
)
from iptkit.transforms.inference.core import Generation, GenerationRequest, ModelSpec, SamplingSpec

PROMPTS = 60


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """The tiny chat model tuned to answer with one short sentence (so responses are kept and
    land in the output), built locally."""
    return tiny_models().make_tiny_models(tmp_path_factory.mktemp("tiny-models"))["constant"]


def test_keys_cover_what_decides_an_output_and_nothing_else(model):
    spec = ModelSpec(backend="transformers", model=str(model))
    identity = model_identity(spec)
    request = GenerationRequest("Hello", 7)
    key = request_key(identity, request)
    assert key == request_key(model_identity(ModelSpec("transformers", str(model))), request)
    # The batch size never changes an output, so it is not in the key.
    assert key == request_key(model_identity(ModelSpec("transformers", str(model), batch_size=3)), request)  # fmt: skip
    others = [
        request_key(identity, GenerationRequest("Hello", 8)),
        request_key(identity, GenerationRequest("Hello!", 7)),
        request_key(
            model_identity(
                ModelSpec("transformers", str(model), sampling=SamplingSpec(temperature=0.7))
            ),
            request,
        ),  # fmt: skip
        request_key(
            model_identity(ModelSpec("transformers", str(model), max_model_len=2048)), request
        ),  # fmt: skip
    ]
    assert key not in others and len(set(others)) == len(others)


def test_a_changed_model_folder_changes_the_identity(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text('{"hidden_size": 64}')
    (folder / "model.safetensors").write_bytes(b"x" * 100)
    before = folder_fingerprint(str(folder))
    (folder / "config.json").write_text('{"hidden_size": 65}')
    assert folder_fingerprint(str(folder)) != before
    after = folder_fingerprint(str(folder))
    (folder / "model.safetensors").write_bytes(b"x" * 101)
    assert folder_fingerprint(str(folder)) != after
    assert folder_fingerprint("org/hub-model") == ""


def test_entries_round_trip_and_a_broken_entry_is_a_miss(tmp_path):
    root = str(tmp_path / "cache")
    generation = Generation("答え\udcff", prompt_tokens=5, new_tokens=3)
    store(root, "ab" * 16, generation)
    assert load(root, "ab" * 16) == generation
    assert load(root, "cd" * 16) is None
    Path(entry_path(root, "ab" * 16)).write_text('{"format": "iptkit-generation/1", "ke')
    assert load(root, "ab" * 16) is None  # a write cut short is asked again, not trusted
    # No temporary file is left behind by a finished write.
    assert [p.name for p in Path(entry_path(root, "ab" * 16)).parent.iterdir()] == [
        f"{'ab' * 16}.json"
    ]


def _spec(tmp_path: Path, model: Path, cache: str = "true") -> Path:
    data = tmp_path / "instructions.jsonl"
    rows = [{"text": f"Tell me something about cats, number {i}.", "lang": "en"} for i in range(PROMPTS)]  # fmt: skip
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        seed: 5
        output: {tmp_path / "run"}
        sources:
          - {{name: asks, format: jsonl, path: {data}, kind: instruction}}
        stages:
          - respond: {{model: {model}, batch_size: 1, temperature: 0.8, max_model_len: 256,
                       max_new_tokens: 24, max_response_tokens: 20, cache: {cache}}}
        """)
    )
    return spec


def _cached(run: Path) -> int:
    return sum(1 for _ in (run / "cache" / "respond").rglob("*.json"))


def _outputs(run: Path) -> dict[str, bytes]:
    return {k: v for k, v in files_under(run).items() if k.startswith(("output/", "rejects/"))}


def _generation(run: Path) -> dict[str, int]:
    counts = json.loads((run / "stats.json").read_text())["stages"]["respond"]["model"]
    return {name: counts[name] for name in ("cache_hits", "cache_misses")}


def test_a_killed_run_resumes_sending_only_what_has_no_answer(tmp_path, model, capsys):
    spec = _spec(tmp_path, model)
    whole = tmp_path / "whole"
    assert run_cli("run", spec, "--out", whole) == 0
    assert _generation(whole) == {"cache_hits": 0, "cache_misses": PROMPTS}
    assert len(_outputs(whole)["output/part-00000-of-00001.jsonl.gz"]) > 200  # answers kept
    answered = _cached(whole)
    assert answered == PROMPTS  # every finished generation was kept

    # The same spec into another RUN, killed with SIGKILL once some answers are kept.
    killed = tmp_path / "killed"
    cli = [sys.executable, "-m", "iptkit.pipelines.cli", "run", str(spec), "--out", str(killed)]
    process = subprocess.Popen(cli, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while (killed / "cache").exists() is False or _cached(killed) < 5:
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no generation was kept within two minutes"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    kept = _cached(killed)
    assert 5 <= kept < PROMPTS, "kill the run half way"
    assert not (killed / "stats.json").exists()

    # The rerun asks the model only for the prompts without a kept answer...
    assert run_cli("run", spec, "--out", killed) == 0
    assert _generation(killed) == {"cache_hits": kept, "cache_misses": PROMPTS - kept}
    # ...and writes the same bytes as the run that was never interrupted.
    assert _outputs(killed) == _outputs(whole)
    # A third run generates nothing, and says so.
    capsys.readouterr()
    assert run_cli("run", spec, "--out", killed) == 0
    assert f"respond: 0 generated, {PROMPTS} from the cache" in capsys.readouterr().out
    assert _generation(killed) == {"cache_hits": PROMPTS, "cache_misses": 0}
    assert _outputs(killed) == _outputs(whole)


def test_cache_false_keeps_nothing_and_a_shared_folder_serves_other_runs(tmp_path, model):
    off = tmp_path / "off"
    assert run_cli("run", _spec(tmp_path, model, "false"), "--out", off) == 0
    assert not (off / "cache").exists()
    counts = json.loads((off / "stats.json").read_text())["stages"]["respond"]["model"]
    assert "cache_hits" not in counts and "cache_misses" not in counts

    shared = tmp_path / "shared-cache"
    spec = _spec(tmp_path, model, str(shared))
    assert run_cli("run", spec, "--out", tmp_path / "a") == 0
    assert run_cli("run", spec, "--out", tmp_path / "b") == 0
    assert _generation(tmp_path / "b") == {"cache_hits": PROMPTS, "cache_misses": 0}
    assert _outputs(tmp_path / "a") == _outputs(tmp_path / "b")


def test_a_stage_outside_a_run_keeps_no_cache_in_the_working_directory(model, tmp_path):
    """A model stage built without a run directory (a library call, a unit test) must not write
    `cache/STAGE/` into whatever folder it runs from; a named cache folder is still used."""
    from iptkit.rundir import RunDir
    from iptkit.transforms.stage import StageContext, generation_step
    from iptkit.transforms.stages.respond import Respond, RespondConfig

    options = {
        "model": str(model),
        "max_model_len": 256,
        "max_new_tokens": 8,
        "max_response_tokens": 4,
    }
    loose = Respond(RespondConfig(**options), StageContext("respond", seed=1))
    assert generation_step(loose, loose.model_spec())._inner._cache is None
    named = Respond(RespondConfig(**options, cache=str(tmp_path / "c")), StageContext("respond"))
    assert generation_step(named, named.model_spec())._inner._cache == str(tmp_path / "c")
    in_run = Respond(RespondConfig(**options), StageContext("respond", run=RunDir(str(tmp_path))))
    assert generation_step(in_run, in_run.model_spec())._inner._cache == str(
        tmp_path / "cache" / "respond"
    )
