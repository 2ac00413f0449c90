"""Build iptkit's wheel offline and install it into fresh virtualenvs (tests/test_wheel.py,
tests/test_core_install.py).

A fresh virtualenv gets the wheel alone (`--no-deps`, `--no-index`: nothing is downloaded, and
no build isolation: this environment's setuptools builds). Its dependencies come from this
interpreter's site-packages through a `.pth` line: either the whole folder (`all_dependencies`)
or a folder of links to only the distributions the wheel's core requires and what they require
(`core_dependencies`), the site-packages a plain `pip install iptkit` would give. A `.pth` line
adds a folder to sys.path without running that folder's `.pth` files, so the editable install's
finder never loads there.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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
JUNK = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", ".tmp-*")
PURELIB = Path(sysconfig.get_path("purelib"))


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def clean_env() -> dict[str, str]:
    """This environment without PYTHONPATH or the user's site-packages."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONNOUSERSITE"] = "1"
    return env


PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]


def build_wheel(tmp: Path) -> Path:
    """iptkit's wheel, built into `tmp` from a copy of the sources (an in-tree build would leave
    build/ in the checkout)."""
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=JUNK)
        else:
            shutil.copy2(REPO / name, src / name)
    cmd = [*PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp)]
    built = run([*cmd, str(src)], tmp, clean_env())
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = tmp.glob("iptkit-*.whl")
    return wheel


@dataclass(frozen=True)
class Venv:
    """A fresh virtualenv holding the wheel; `cwd` is a folder outside the source tree."""

    root: Path
    site: Path
    cwd: Path
    env: dict[str, str]

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def iptkit(self) -> Path:
        return self.root / "bin" / "iptkit"

    def run(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return run([str(a) for a in args], self.cwd, self.env)


def fresh_venv(tmp: Path, wheel: Path, dependencies: Path) -> Venv:
    """A virtualenv in `tmp` with the wheel installed and `dependencies` on its path."""
    env = clean_env()
    root = tmp / "venv"
    made = run([sys.executable, "-m", "venv", "--without-pip", str(root)], tmp, env)
    assert made.returncode == 0, made.stderr
    python = root / "bin" / "python"
    install = [*PIP, "--python", str(python), "install", "--no-deps", "--no-index"]
    added = run([*install, str(wheel)], tmp, env)
    assert added.returncode == 0, added.stdout[-3000:] + added.stderr[-3000:]
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(subprocess.check_output([str(python), "-c", purelib], text=True).strip())
    (site / "zz_iptkit_test_dependencies.pth").write_text(f"{dependencies}\n")
    cwd = tmp / "elsewhere"
    cwd.mkdir()
    return Venv(root, site, cwd, env)


def all_dependencies() -> Path:
    """This interpreter's site-packages: every extra's packages."""
    return PURELIB


@dataclass(frozen=True)
class WheelMetadata:
    """What the installed wheel declares: Requires-Dist, Requires-Python, Provides-Extra."""

    requires: list[Requirement]
    python_requires: str
    extras: list[str]

    def core(self, name: str) -> Requirement:
        """The requirement on `name` outside every extra."""
        (found,) = [r for r in self.requires if r.name == name and r.marker is None]
        return found

    def of_extra(self, extra: str) -> list[Requirement]:
        """The requirements `extra` adds."""
        return [r for r in self.requires if r.marker and r.marker.evaluate({"extra": extra})]


def wheel_metadata(site: Path) -> WheelMetadata:
    """The metadata of the wheel installed in `site`."""
    (dist,) = importlib.metadata.distributions(name="iptkit", path=[str(site)])
    return WheelMetadata(
        requires=[Requirement(r) for r in dist.requires or []],
        python_requires=dist.metadata["Requires-Python"],
        extras=dist.metadata.get_all("Provides-Extra") or [],
    )


def closure(requirements: list[Requirement], extras: tuple[str, ...] = ("",)) -> set[str]:
    """The distributions `requirements` install (for `extras` of the requiring package; "" is
    none), each with what it requires in turn, as installed in this environment."""
    found: set[str] = set()
    todo = [r for r in requirements if _applies(r, extras)]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        found.add(name)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise AssertionError(f"{req} is not installed here: run `make install`") from None
        own = [Requirement(r) for r in dist.requires or []]
        todo += [r for r in own if _applies(r, ("", *req.extras))]
    return found


def _applies(req: Requirement, extras: tuple[str, ...]) -> bool:
    return req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras)


def core_dependencies(folder: Path, distributions: set[str]) -> Path:
    """A folder of links to the files of `distributions` in this site-packages, and nothing of
    the others: a folder two distributions share (a namespace such as google/) is made and
    filled one level down, so only the files of the named ones appear."""
    tree: dict = {}
    for dist in importlib.metadata.distributions(path=[str(PURELIB)]):
        owner = canonicalize_name(dist.metadata["Name"])
        for file in dist.files or []:
            if file.parts[0] == "..":  # scripts in bin/
                continue
            node = tree
            for part in file.parts:
                node = node.setdefault(part, {"": set()})
                node[""].add(owner)
    folder.mkdir()
    _link(tree, PURELIB, folder, distributions)
    return folder


def _link(tree: dict, source: Path, target: Path, keep: set[str]) -> None:
    for name, node in tree.items():
        if not name:
            continue
        owners = node[""]
        if owners <= keep:
            (target / name).symlink_to(source / name)
        elif owners & keep:
            (target / name).mkdir()
            _link(node, source / name, target / name, keep)
