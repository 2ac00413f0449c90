"""Slim workers: the core install (`pip install iptkit`, no extras) runs the cleaning stages
without torch, and the worker images carry the launcher's Beam and Python.

The wheel goes into a fresh virtualenv whose dependencies are links to exactly the distributions
its core requirements install (the wheel's Requires-Dist without extras, and what those require
in turn, as installed here): the site-packages a plain `pip install iptkit` gives, without
downloading anything (tests/wheel_helpers.py). There torch, transformers, deepspeed, lm_eval and
matplotlib cannot be found, the demo's cleaning stages write byte for byte what they write in
the full environment, and a spec naming a model backend or an lm-eval benchmark set fails
validation with the extra to install.

The images (docker/) cannot be built here (no Docker, no network), so their versions are checked
offline: docker/build.sh passes the launcher's Beam and Python, inside setup.py's range and
python_requires, to Dockerfiles that take both from those arguments alone.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import DEMO_SPEC, REPO, files_under
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version
from wheel_helpers import (
    SOURCES,
    Venv,
    WheelMetadata,
    build_wheel,
    closure,
    core_dependencies,
    fresh_venv,
    wheel_metadata,
)

from iptkit.extras import require

# The libraries of the extras, which the core must run without.
HEAVY = ("torch", "transformers", "deepspeed", "lm_eval", "matplotlib", "accelerate", "vllm")
HEAVY_DISTRIBUTIONS = {canonicalize_name(m.replace("_", "-")) for m in HEAVY}
CLEANING = ("normalize", "langid", "filters", "dedup_exact", "dedup_near")

# Which of Beam, iptkit and the extras' libraries the interpreter can find.
FIND = f"""
import importlib.util
for name in ("apache_beam", "iptkit", *{HEAVY!r}):
    if importlib.util.find_spec(name) is not None:
        print(name)
"""

MODEL_SPEC = """\
seed: 1
output: run
sources:
  - {name: web, format: jsonl, path: web.jsonl, kind: raw}
stages:
  - synthesize: {backend: transformers, model: model}
  - respond: {backend: vllm, model: model}
  - decontaminate: {benchmarks: [{lm_eval_task: arc_easy}]}
"""


@dataclass(frozen=True)
class Slim:
    venv: Venv
    metadata: WheelMetadata
    core: set[str]  # the distributions it has


@pytest.fixture(scope="module")
def slim(tmp_path_factory: pytest.TempPathFactory) -> Slim:
    """The wheel in a fresh virtualenv with the core's distributions only."""
    tmp = tmp_path_factory.mktemp("core")
    venv = fresh_venv(tmp, build_wheel(tmp), tmp / "core-site")
    metadata = wheel_metadata(venv.site)
    core = closure(metadata.requires)
    core_dependencies(tmp / "core-site", core)
    return Slim(venv, metadata, core)


def cleaning_spec(folder: Path) -> Path:
    """The demo spec with its cleaning stages only (as the demo configures them), its sources
    named by absolute paths so that both runs read the same files."""
    demo = yaml.safe_load(DEMO_SPEC.read_text())
    for source in demo["sources"]:
        source["path"] = str(DEMO_SPEC.parent / source["path"])
    stages = [stage for stage in demo["stages"] if next(iter(stage)) in CLEANING]
    assert [next(iter(stage)) for stage in stages] == list(CLEANING)
    spec = {"seed": demo["seed"], "sources": demo["sources"], "stages": stages}
    path = folder / "cleaning.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_core_requires_no_model_library(slim: Slim) -> None:
    core, metadata = slim.core, slim.metadata
    assert {"apache-beam", "datasketch", "fasttext-predict", "jinja2", "tokenizers"} <= core
    assert core.isdisjoint(HEAVY_DISTRIBUTIONS), sorted(core & HEAVY_DISTRIBUTIONS)
    # `make install` ([all]) has every extra's library but vLLM's.
    with_all = closure(metadata.requires, ("all",))
    assert with_all >= HEAVY_DISTRIBUTIONS - {"vllm"} and "vllm" not in with_all
    # [gcp] is Beam's gcp extra over the core's Beam range.
    (gcp,) = metadata.of_extra("gcp")
    assert (gcp.name, gcp.extras) == ("apache-beam", {"gcp"})
    assert gcp.specifier == metadata.core("apache-beam").specifier
    # The virtualenv has none of them, as after `pip install iptkit`.
    found = slim.venv.run(slim.venv.python, "-c", FIND)
    assert found.returncode == 0, found.stderr[-2000:]
    assert found.stdout.split() == ["apache_beam", "iptkit"], found.stdout


def test_cleaning_stages_run_without_torch(slim: Slim, tmp_path: Path) -> None:
    venv = slim.venv
    spec = cleaning_spec(tmp_path)
    slim_run, full_run = tmp_path / "slim", tmp_path / "full"
    full_iptkit = Path(sys.executable).parent / "iptkit"
    # Both at once: the slim run from outside the source tree, the full one as `make` runs it.
    runs = [
        subprocess.Popen(
            [str(iptkit), "run", str(spec), "--out", str(out)],
            cwd=cwd,
            env=venv.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for iptkit, out, cwd in ((venv.iptkit, slim_run, venv.cwd), (full_iptkit, full_run, REPO))
    ]
    for process in runs:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output[-3000:]
    assert "ledger balanced for every stage" in output
    for part in ("output", "rejects", "dedup_near"):
        slim_files, full_files = files_under(slim_run / part), files_under(full_run / part)
        assert slim_files and slim_files.keys() == full_files.keys(), part
        for name, data in slim_files.items():
            assert data == full_files[name], f"{part}/{name} differs between the installs"


def test_model_options_name_the_extra_to_install(slim: Slim) -> None:
    venv = slim.venv
    (venv.cwd / "model").mkdir()
    (venv.cwd / "web.jsonl").write_text('{"text": "a page"}\n')
    (venv.cwd / "model.yaml").write_text(MODEL_SPEC)
    done = venv.run(venv.iptkit, "validate", "model.yaml")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert (
        "model.yaml:6: stages.0.synthesize: backend transformers needs torch and transformers, "
        "not installed here: pip install 'iptkit[models]'" in done.stderr
    )
    assert (
        "model.yaml:7: stages.1.respond: backend vllm (the prompts' tokenizer) needs "
        "transformers, not installed here: pip install 'iptkit[vllm]'" in done.stderr
    )
    assert (
        "model.yaml:8: stages.2.decontaminate.benchmarks.0: lm_eval_task needs lm_eval, "
        "not installed here: pip install 'iptkit[eval]'" in done.stderr
    )


def test_require_passes_installed_modules_and_names_the_extra_of_missing_ones() -> None:
    require("models", "backend transformers", "torch", "transformers")  # installed here
    message = r"^x needs no_such_module_iptkit, not installed here: pip install 'iptkit\[eval\]'$"
    with pytest.raises(ValueError, match=message):
        require("eval", "x", "json", "no_such_module_iptkit")


# --- worker images ---------------------------------------------------------------------------

DOCKER = REPO / "docker"


def build_commands(kind: str) -> list[str]:
    """What docker/build.sh runs for `kind` (its --dry-run lines), with this interpreter as the
    launcher."""
    done = subprocess.run(
        ["bash", str(DOCKER / "build.sh"), kind, "registry.example/iptkit:test", "--dry-run"],
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def build_arg(line: str, name: str) -> str:
    (value,) = re.findall(rf"--build-arg {name}=(\S+)", line)
    return value


def dockerfile_extras(kind: str) -> set[str]:
    (extras,) = re.findall(r"^ARG EXTRAS=(\S*)$", (DOCKER / f"Dockerfile.{kind}").read_text(), re.M)
    return set(extras.split(","))


@pytest.mark.parametrize("kind", ["cpu", "cuda"])
def test_images_have_the_launchers_beam_and_python(slim: Slim, kind: str) -> None:
    import apache_beam

    lines = build_commands(kind)
    (build,) = [line for line in lines if line.startswith("+ docker build")]
    beam, python = build_arg(build, "BEAM_VERSION"), build_arg(build, "PYTHON_VERSION")
    assert beam == apache_beam.__version__
    assert Version(beam) in slim.metadata.core("apache-beam").specifier
    assert python == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert Version(python) in SpecifierSet(slim.metadata.python_requires)
    assert f"--file docker/Dockerfile.{kind}" in build
    # The wheel is built from the sources test_wheel.py builds from.
    (copy,) = [line for line in lines if line.startswith("+ cp -r ")]
    assert copy.split()[3:-1] == list(SOURCES)

    # The Dockerfile takes both from those arguments alone (no defaults to drift), starts from
    # (or copies boot from) the SDK image of those versions, and keeps that image's Beam.
    text = (DOCKER / f"Dockerfile.{kind}").read_text()
    args = re.findall(r"^ARG (BEAM_VERSION|PYTHON_VERSION)(.*)$", text, re.M)
    assert sorted(args) == [("BEAM_VERSION", "")] * 2 + [("PYTHON_VERSION", "")] * 2
    sdk = re.escape("apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}")
    assert '"apache-beam[gcp]==${BEAM_VERSION}"' in text
    if kind == "cpu":
        assert re.search(rf"^FROM {sdk}$", text, re.M)
    else:
        assert re.search(rf"^FROM {sdk} AS beam$", text, re.M)
        assert "COPY --from=beam /opt/apache/beam /opt/apache/beam" in text
        assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in text
        assert 'uv venv --seed --python "${PYTHON_VERSION}"' in text
        assert "ENV RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1" in text  # boot uses that venv


def test_images_install_the_right_extras(slim: Slim) -> None:
    cpu, cuda = dockerfile_extras("cpu"), dockerfile_extras("cuda")
    assert cpu | cuda <= set(slim.metadata.extras)
    # CPU workers: the core (and gs://), no model library; GPU workers: both model backends.
    assert cpu == {"gcp"}
    assert closure(slim.metadata.requires, tuple(cpu)).isdisjoint(HEAVY_DISTRIBUTIONS)
    assert {"models", "vllm", "gcp"} <= cuda


def test_build_script_refuses_unknown_kinds_and_a_launcher_without_beam() -> None:
    script = str(DOCKER / "build.sh")
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run(["bash", script, "gpu", "x"], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("usage: docker/build.sh cpu|cuda")
    env["PYTHON"] = "/usr/bin/false"
    done = subprocess.run(["bash", script, "cpu", "x"], env=env, capture_output=True, text=True)
    assert done.returncode == 2
    assert "/usr/bin/false has no apache-beam installed: run `make install`" in done.stderr
