"""iptkit installs anywhere: built as a wheel and installed (not editable) into a fresh
virtualenv, it runs from a folder outside the source tree with everything it ships, the trainer's
presets (`mistral-500m`, `zero2`), the example specs with their data and tokenizer, and the eval
suites, found inside the installed package.

The fresh virtualenv gets the wheel alone (`--no-deps`); its dependencies (Beam, torch, ...) come
from this interpreter's site-packages through a `.pth` line, which adds that folder to sys.path
without running its `.pth` files, so the editable install's finder there never loads. The test
asserts it: every iptkit package imports from the fresh virtualenv's site-packages. Nothing is
downloaded (`--no-index`, no build isolation: the setuptools of this environment builds).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import REPO

# What setup.py needs to build: the code folders, configs/, setup.py and the README it reads.
SOURCES = (
    "setup.py",
    "README.md",
    "iptkit",
    "pipelines",
    "transforms",
    "trainer",
    "eval",
    "configs",
)
CODE = {"iptkit": "", "pipelines": "pipelines", "transforms": "transforms", "trainer": "trainer"}
CODE |= {"eval": "eval", "configs": "configs"}
# Folders whose every file is package data, by source folder -> folder under iptkit/ installed.
DATA = {
    "configs": "configs",
    "pipelines/examples": "pipelines/examples",
    "eval/suites": "eval/suites",
    "eval/prompts": "eval/prompts",
    "eval/questions": "eval/questions",
    "eval/tasks": "eval/tasks",
    "transforms/synth/patterns": "transforms/synth/patterns",
}
JUNK = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", ".tmp-*")

IMPORTS = """
import json, sys
import iptkit, iptkit.configs, iptkit.pipelines.cli, iptkit.trainer.config, iptkit.eval.suites
print(json.dumps({
    "files": {m.__name__: m.__file__ for m in (
        iptkit, iptkit.configs, iptkit.pipelines.cli, iptkit.trainer.config, iptkit.eval.suites
    )},
    "finders": [type(f).__name__ if not isinstance(f, type) else f.__name__ for f in sys.meta_path],
}))
"""

SUITE = """
from iptkit.eval.suites import load_suite
suite = load_suite("smoke")
print(suite.path); print(suite.task_dir_path); print(suite.prompts_path)
"""

RUN_CONFIG = """\
run_dir: runs/wheel-test
model: {config: mistral-500m}
deepspeed: zero2
stages:
  - {name: pt, data: runs/nothing-yet/shards/train, steps: 10, lr: 3.0e-4}
"""


def _files(root: Path, suffix: str = "") -> set[str]:
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob(f"*{suffix}")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Build the wheel from a copy of the sources, install it into a fresh virtualenv."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:  # a copy: an in-tree build would leave build/ in the checkout
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=JUNK)
        else:
            shutil.copy2(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONNOUSERSITE"] = "1"
    built = _run(
        [
            *pip,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(tmp),
            str(src),
        ],
        tmp,
        env,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = tmp.glob("iptkit-*.whl")

    venv = tmp / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp, env)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    added = _run(
        [*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], tmp, env
    )
    assert added.returncode == 0, added.stdout[-3000:] + added.stderr[-3000:]
    site = Path(
        subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            text=True,
        ).strip()
    )
    # The dependencies: this environment's site-packages, as a plain path (no .pth run there).
    (site / "zz_iptkit_test_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    elsewhere = tmp / "elsewhere"  # the working directory: outside the source tree
    elsewhere.mkdir()
    return {"venv": venv, "python": python, "site": site, "cwd": elsewhere, "env": env}


def test_wheel_ships_every_module_and_data_file(installed: dict) -> None:
    package = installed["site"] / "iptkit"
    for source, target in CODE.items():
        missing = _files(REPO / source, ".py") - _files(package / target, ".py")
        assert not missing, f"modules of {source}/ not in the wheel: {sorted(missing)}"
    for source, target in DATA.items():
        missing = _files(REPO / source) - _files(package / target)
        assert not missing, f"files of {source}/ not in the wheel: {sorted(missing)}"


def test_installed_package_runs_from_outside_the_source_tree(installed: dict) -> None:
    python, site, cwd, env = (installed[k] for k in ("python", "site", "cwd", "env"))
    assert REPO not in cwd.parents and REPO not in site.parents
    # iptkit is the installed copy: not the source tree, not through the editable finder.
    done = _run([str(python), "-c", IMPORTS], cwd, env)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout)
    for module, file in found["files"].items():
        assert Path(file).is_relative_to(site / "iptkit"), (module, file)
    assert not any("Editable" in finder for finder in found["finders"]), found["finders"]

    # The demo spec as shipped: its sources, benchmarks and tokenizer resolve in the package.
    examples = site / "iptkit" / "pipelines" / "examples"
    done = _run([str(installed["venv"] / "bin" / "iptkit"), "validate", "demo"], cwd, env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"spec     {examples / 'demo.yaml'}" in done.stdout
    assert str(examples / "data" / "web_en.jsonl.gz") in done.stdout
    assert str(examples / "tokenizer") in done.stdout

    # A trainer config naming the presets mistral-500m and zero2, validated without training.
    (cwd / "run.yaml").write_text(RUN_CONFIG)
    trainer = [str(python), "-m", "iptkit.trainer"]
    done = _run([*trainer, "run.yaml", "--validate"], cwd, env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    configs = site / "iptkit" / "configs"
    assert f"({configs / 'models' / 'mistral-500m.yaml'})" in done.stdout
    assert "MistralConfig: 16 layers, hidden 1536" in done.stdout
    assert f"({configs / 'deepspeed' / 'zero2.json'}) (ZeRO stage 2)" in done.stdout
    # A preset that is not shipped: exit 2, the line, and the shipped names (from the wheel).
    (cwd / "typo.yaml").write_text(RUN_CONFIG.replace("mistral-500m", "mistral-50m"))
    done = _run([*trainer, "typo.yaml", "--validate"], cwd, env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "typo.yaml:2: model.config: 'mistral-50m' is neither a file nor a name in " in (
        done.stderr
    )
    assert "(shipped: llama-tiny, llama3-8b, mistral-1.3b, mistral-500m, mistral-7b)" in done.stderr
    # A run config shipped in configs/train, by name.
    done = _run([*trainer, "demo", "--validate"], cwd, env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"run config {configs / 'train' / 'demo.yaml'}: valid" in done.stdout

    # The eval suites, with their local tasks and prompt set.
    done = _run([str(python), "-c", SUITE], cwd, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [
        str(site / "iptkit" / "eval" / "suites" / "smoke.yaml"),
        str(site / "iptkit" / "eval" / "tasks" / "smoke"),
        str(site / "iptkit" / "eval" / "prompts" / "smoke.jsonl"),
    ]


def test_shipped_files_resolve_in_the_source_tree_too(tmp_path: Path, monkeypatch) -> None:
    """The editable install (make install) finds the same files in the checkout."""
    from iptkit.errors import SpecError
    from iptkit.eval.suites import SUITES_DIR
    from iptkit.pipelines.cli import main, spec_file
    from iptkit.trainer.config import CONFIGS_DIR

    assert CONFIGS_DIR.resolve() == REPO / "configs"
    assert SUITES_DIR.resolve() == REPO / "eval" / "suites"
    monkeypatch.chdir(tmp_path)
    assert Path(spec_file("demo")).resolve() == REPO / "pipelines" / "examples" / "demo.yaml"
    assert spec_file("my/spec.yaml") == "my/spec.yaml"  # a path stays a path
    with pytest.raises(SpecError, match="dem: no such file, nor an example of that name \\(demo, "):
        spec_file("dem")
    assert main(["validate", "demo", "--out", str(tmp_path / "run")]) == 0
