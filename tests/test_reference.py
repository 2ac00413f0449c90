"""`iptkit reference`: the whole reference, one stage's section, and regenerating the page."""

import re

from conftest import run_cli

from iptkit.pipelines.reference import reference_page, spec_reference
from iptkit.transforms.stage import stage_types


def test_reference_prints_the_whole_reference(capsys):
    assert run_cli("reference") == 0
    assert capsys.readouterr().out == spec_reference()


def test_stage_prints_that_stage_only(capsys):
    assert run_cli("reference", "--stage", "dedup_near") == 0
    out = capsys.readouterr().out
    assert out.startswith("### `stages[]`: `dedup_near`\n\n" + stage_types()["dedup_near"].summary)
    assert re.findall(r"^### .*$", out, re.M) == ["### `stages[]`: `dedup_near`"]
    for key in stage_types()["dedup_near"].config_class.model_fields:
        assert f"| `{key}` |" in out
    assert out in spec_reference()  # the same section the whole reference holds


def test_unknown_stage_exits_2_with_the_names_and_the_nearest(capsys):
    assert run_cli("reference", "--stage", "langd") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "unknown stage 'langd'; nearest: 'langid'" in captured.err
    assert "stages: " + ", ".join(stage_types()) in captured.err


def test_write_regenerates_the_page(tmp_path, capsys):
    page = tmp_path / "spec-reference.md"
    assert run_cli("reference", "--write", page) == 0
    assert page.read_text(encoding="utf-8") == reference_page()
    assert f"wrote {page}" in capsys.readouterr().out
