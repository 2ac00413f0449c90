"""iptkit.config_file, the one loader of the spec, the run config and the eval suites: YAML
with line marks, --set overrides, and every validation problem located at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from iptkit.config_file import ConfigFile, model_at
from iptkit.errors import ConfigError, SpecProblem


class Part(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    size: int = Field(ge=1)


class Whole(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str
    parts: list[Part]
    main: Part | None = None


class WholeError(ConfigError):
    what = "whole"


TEXT = """\
title: t
parts:
  - {name: a, size: 1}
  - name: b
    size: 0
    colour: red
main: {name: m, sise: 2}
"""


def read(tmp_path: Path, text: str, sets: list[str] = ()) -> ConfigFile:
    path = tmp_path / "whole.yaml"
    path.write_text(text)
    return ConfigFile.read(path, what="whole", error=WholeError, sets=sets)


def test_every_problem_at_once_with_file_line_and_suggestion(tmp_path: Path) -> None:
    source = read(tmp_path, TEXT, ["parts.a.size=-1"])
    with pytest.raises(WholeError) as err:
        source.validate(Whole)
    where = str(tmp_path / "whole.yaml")
    assert [(p.key, p.line, p.origin) for p in err.value.problems] == [
        ("parts.1.size", 5, where),
        ("parts.1.colour", 6, where),
        ("main.size", 7, where),
        ("main.sise", 7, where),
        ("parts.0.size", None, "--set parts.a.size=-1"),
    ]
    message = str(err.value)
    assert message.startswith("invalid whole (5 problems):\n")
    assert f"{where}:7: main.sise: unknown key; did you mean 'size'? (valid: name, size)" in message
    assert err.value.exit_code == 2


def test_yaml_errors_duplicates_and_shape_have_lines(tmp_path: Path) -> None:
    with pytest.raises(WholeError) as err:
        read(tmp_path, "title: t\nparts: [\n")
    assert "not valid YAML" in str(err.value) and err.value.problems[0].line is not None
    with pytest.raises(WholeError) as err:
        read(tmp_path, "title: t\ntitle: u\n")
    assert err.value.problems == [
        SpecProblem(
            "title", 2, "duplicate key (YAML keeps only the last one)", str(tmp_path / "whole.yaml")
        )
    ]
    with pytest.raises(WholeError, match="whole.yaml:1: a whole is a YAML mapping"):
        read(tmp_path, "- 1\n")
    with pytest.raises(WholeError, match="cannot read the whole: No such file"):
        ConfigFile.read(tmp_path / "nope.yaml", what="whole", error=WholeError)


def test_overrides_by_index_and_name_and_their_errors(tmp_path: Path) -> None:
    source = read(tmp_path, TEXT.replace("    colour: red\n", "").replace("size: 0", "size: 2"))
    source.data["main"]["size"] = source.data["main"].pop("sise")
    assert source.validate(Whole).parts[1].size == 2
    source = read(tmp_path, TEXT.replace("    colour: red\n", "").replace("sise", "size"), [
        "parts.b.size=3", "parts.0.name=z", "main=null"
    ])  # fmt: skip
    whole = source.validate(Whole)
    assert [(p.name, p.size) for p in whole.parts] == [("z", 1), ("b", 3)] and whole.main is None
    with pytest.raises(WholeError, match="no item named 'c' here; items are: a, b"):
        read(tmp_path, TEXT, ["parts.c.size=1"])
    with pytest.raises(WholeError, match="index out of range"):
        read(tmp_path, TEXT, ["parts.5.size=1"])
    with pytest.raises(WholeError, match="'title' is not KEY=VALUE"):
        read(tmp_path, TEXT, ["title"])


def test_model_at_walks_models_lists_and_optionals() -> None:
    assert model_at(Whole, ()) is Whole
    assert model_at(Whole, ("parts", 3)) is Part
    assert model_at(Whole, ("main",)) is Part
    assert model_at(Whole, ("title",)) is None and model_at(Whole, ("nope",)) is None


BOMB = "".join(
    f"{a}: &{a} [{', '.join([f'*{b}'] * 9) if b else ', '.join(['lol'] * 9)}]\n"
    for a, b in zip("abcdefghi", [None, *"abcdefgh"], strict=True)
)  # 9**9 strings once expanded: the "billion laughs"


def test_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    """Issue 18, item 8: every YAML iptkit reads expanded aliases without bound."""
    import time

    start = time.perf_counter()
    with pytest.raises(WholeError) as err:
        read(tmp_path, "title: t\n" + BOMB)
    assert time.perf_counter() - start < 2
    (problem,) = err.value.problems
    assert problem.line is not None
    assert "expands to more than 100,000 nodes through aliases" in problem.message
    # The same through a spec: `iptkit validate` says so and exits 2.
    from conftest import run_cli

    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "output: out\nsources: []\nbomb:\n" + "".join("  " + x + "\n" for x in BOMB.splitlines())
    )
    assert run_cli("validate", spec) == 2
    # A few aliases, as specs use them, are fine.
    ok = read(tmp_path, "title: t\nparts: [&p {name: x, size: 1}, *p]\n")
    assert [p.name for p in ok.validate(Whole).parts] == ["x", "x"]


def test_recursive_alias_and_deep_nesting_are_clean_errors(tmp_path: Path) -> None:
    with pytest.raises(WholeError) as err:
        read(tmp_path, "title: t\nparts: &p [*p]\n")
    (problem,) = err.value.problems
    assert problem.line == 2 and "recursive alias" in problem.message
    with pytest.raises(WholeError, match="nested too deeply"):
        read(tmp_path, "title: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(WholeError, match="nested more than 100 levels"):
        read(tmp_path, "title: " + "[" * 150 + "]" * 150 + "\n")
    with pytest.raises(
        WholeError, match=r"--set: title: the value .&x \[\*x\].: a recursive alias"
    ):
        read(tmp_path, TEXT, ["title=&x [*x]"])
