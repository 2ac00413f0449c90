"""iptkit installs anywhere: built as a wheel and installed (not editable) into a fresh
virtualenv, it runs from a folder outside the source tree with everything it ships, the trainer's
presets (`mistral-500m`, `zero2`), the example specs with their data and tokenizer, and the eval
suites, found inside the installed package.

The fresh virtualenv gets the wheel alone, with this interpreter's whole site-packages as its
dependencies (tests/wheel_helpers.py); the test asserts that every iptkit package imports from
the fresh virtualenv's site-packages, not from the checkout or through the editable finder.
tests/test_core_install.py installs the same wheel with the core dependencies only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO
from wheel_helpers import Venv, all_dependencies, build_wheel, fresh_venv

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


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """The wheel in a fresh virtualenv, with every dependency of this environment."""
    tmp = tmp_path_factory.mktemp("wheel")
    return fresh_venv(tmp, build_wheel(tmp), all_dependencies())


def test_wheel_ships_every_module_and_data_file(installed: Venv) -> None:
    package = installed.site / "iptkit"
    for source, target in CODE.items():
        missing = _files(REPO / source, ".py") - _files(package / target, ".py")
        assert not missing, f"modules of {source}/ not in the wheel: {sorted(missing)}"
    for source, target in DATA.items():
        missing = _files(REPO / source) - _files(package / target)
        assert not missing, f"files of {source}/ not in the wheel: {sorted(missing)}"


def test_installed_package_runs_from_outside_the_source_tree(installed: Venv) -> None:
    python, site, cwd = installed.python, installed.site, installed.cwd
    assert REPO not in cwd.parents and REPO not in site.parents
    # iptkit is the installed copy: not the source tree, not through the editable finder.
    done = installed.run(python, "-c", IMPORTS)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout)
    for module, file in found["files"].items():
        assert Path(file).is_relative_to(site / "iptkit"), (module, file)
    assert not any("Editable" in finder for finder in found["finders"]), found["finders"]

    # The demo spec as shipped: its sources, benchmarks and tokenizer resolve in the package.
    examples = site / "iptkit" / "pipelines" / "examples"
    done = installed.run(installed.iptkit, "validate", "demo")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"spec     {examples / 'demo.yaml'}" in done.stdout
    assert str(examples / "data" / "web_en.jsonl.gz") in done.stdout
    assert str(examples / "tokenizer") in done.stdout

    # A trainer config naming the presets mistral-500m and zero2, validated without training.
    (cwd / "run.yaml").write_text(RUN_CONFIG)
    trainer = [python, "-m", "iptkit.trainer"]
    done = installed.run(*trainer, "run.yaml", "--validate")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    configs = site / "iptkit" / "configs"
    assert f"({configs / 'models' / 'mistral-500m.yaml'})" in done.stdout
    assert "MistralConfig: 16 layers, hidden 1536" in done.stdout
    assert f"({configs / 'deepspeed' / 'zero2.json'}) (ZeRO stage 2)" in done.stdout
    # A preset that is not shipped: exit 2, the line, and the shipped names (from the wheel).
    (cwd / "typo.yaml").write_text(RUN_CONFIG.replace("mistral-500m", "mistral-50m"))
    done = installed.run(*trainer, "typo.yaml", "--validate")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "typo.yaml:2: model.config: 'mistral-50m' is neither a file nor a name in " in (
        done.stderr
    )
    assert "(shipped: llama-tiny, llama3-8b, mistral-1.3b, mistral-500m, mistral-7b)" in done.stderr
    # A run config shipped in configs/train, by name.
    done = installed.run(*trainer, "demo", "--validate")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"run config {configs / 'train' / 'demo.yaml'}: valid" in done.stdout

    # The eval suites, with their local tasks and prompt set.
    done = installed.run(python, "-c", SUITE)
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
