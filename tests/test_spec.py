"""Spec loading: errors name key and line, unknown keys suggest, --set overrides, resolved plan."""

import textwrap

import pytest
import yaml

from iptkit.errors import SpecError
from iptkit.pipelines.spec import load_plan


def write_spec(tmp_path, body: str, data: bool = True):
    if data:
        (tmp_path / "a.jsonl").write_text('{"text": "hello"}\n')
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(body))
    return str(path)


GOOD = """\
seed: 7
output: out
sources:
  - {name: web, format: jsonl, path: "*.jsonl"}
stages:
  - normalize: {form: NFKC}
"""


def problems(exc_info) -> list[tuple[str, int | None, str]]:
    return [(p.key, p.line, p.message) for p in exc_info.value.problems]


def test_good_spec_resolves_paths_defaults_and_hash(tmp_path):
    plan = load_plan(write_spec(tmp_path, GOOD))
    assert plan.spec.seed == 7
    assert [s.name for s in plan.stages] == ["normalize"]
    assert plan.stages[0].config.form == "NFKC"
    assert plan.resolved["sources"][0]["path"] == str(tmp_path / "*.jsonl")
    assert plan.resolved["sources"][0]["kind"] == "raw"
    assert plan.resolved["stages"][0]["normalize"]["invalid_utf8"] == "reject"
    assert [f.rel for f in plan.files["web"]] == ["a.jsonl"]
    assert plan.spec_hash.startswith("sha256:") and len(plan.spec_hash) == 71
    text = plan.resolved_yaml()
    assert plan.spec_hash in text
    assert yaml.safe_load(text)["stages"] == [
        {"normalize": plan.resolved["stages"][0]["normalize"]}
    ]


def test_hash_ignores_output_and_runner_but_not_data_settings(tmp_path):
    spec = write_spec(tmp_path, GOOD)
    base = load_plan(spec).spec_hash
    assert load_plan(spec, out="elsewhere").spec_hash == base
    assert load_plan(spec, ["pipeline_options.direct_num_workers=2"]).spec_hash == base
    assert load_plan(spec, ["seed=8"]).spec_hash != base
    assert load_plan(spec, ["stages.normalize.form=NFC"]).spec_hash != base


def test_errors_name_key_line_and_suggest(tmp_path):
    spec = write_spec(
        tmp_path,
        """\
        seed: x
        output: out
        sorces: []
        sources:
          - name: web
            format: jsnl
            path: "*.jsonl"
            txt_field: body
        stages:
          - normalise: {}
          - normalize: {form: NFX}
        """,
    )
    with pytest.raises(SpecError) as exc:
        load_plan(spec)
    found = problems(exc)
    keys = {key: (line, msg) for key, line, msg in found}
    assert keys["seed"][0] == 1 and "integer" in keys["seed"][1]
    assert keys["sorces"][0] == 3 and "did you mean 'sources'" in keys["sorces"][1]
    assert keys["sources.0.format"][0] == 6 and "'jsonl'" in keys["sources.0.format"][1]
    assert keys["sources.0.txt_field"][0] == 8 and "'text_field'" in keys["sources.0.txt_field"][1]
    assert (
        keys["stages.0.normalise"][0] == 10
        and "did you mean 'normalize'" in keys["stages.0.normalise"][1]
    )
    assert keys["stages.1.normalize.form"][0] == 11
    assert [line for _, line, _ in found] == sorted(line for _, line, _ in found)
    assert f"{spec}:3: sorces" in str(exc.value)


def test_missing_required_and_format_specific_options(tmp_path):
    spec = write_spec(
        tmp_path,
        """\
        output: out
        sources:
          - {name: web, path: "*.jsonl"}
          - {name: t, format: jsonl, path: "*.jsonl", split: file}
        """,
    )
    with pytest.raises(SpecError) as exc:
        load_plan(spec)
    found = problems(exc)
    assert ("sources.0.format", 3, "required key is missing") in found
    assert any(
        k == "sources.1" and line == 4 and "'split' applies only to format: text" in m
        for k, line, m in found
    )


def test_missing_files_and_duplicate_names(tmp_path):
    spec = write_spec(
        tmp_path,
        """\
        output: out
        sources:
          - {name: web, format: jsonl, path: "nothing/*.jsonl"}
          - {name: web, format: jsonl, path: "*.jsonl"}
        """,
    )
    with pytest.raises(SpecError) as exc:
        load_plan(spec)
    assert [(k, line) for k, line, _ in problems(exc)] == [("sources.1.name", 4)]
    spec = write_spec(
        tmp_path, "output: out\nsources:\n  - {name: web, format: jsonl, path: 'no/*.jsonl'}\n"
    )
    with pytest.raises(SpecError) as exc:
        load_plan(spec)
    ((key, line, message),) = problems(exc)
    assert key == "sources.0.path" and line == 3 and "no file matches" in message


def test_yaml_syntax_error_and_duplicate_key_have_lines(tmp_path):
    with pytest.raises(SpecError) as exc:
        load_plan(write_spec(tmp_path, "output: out\nsources: [\n  {name: a\n"))
    assert exc.value.problems[0].line is not None and "not valid YAML" in str(exc.value)
    with pytest.raises(SpecError) as exc:
        load_plan(write_spec(tmp_path, GOOD + "seed: 8\n"))
    assert problems(exc) == [("seed", 7, "duplicate key (YAML keeps only the last one)")]


def test_set_overrides_by_name_index_and_reports_origin(tmp_path):
    spec = write_spec(tmp_path, GOOD)
    plan = load_plan(
        spec,
        [
            "seed=11",
            "stages.normalize.form=NFD",
            "sources.web.lang=en",
            "stages.0.normalize.save=true",
            "output_shards=3",
        ],
    )
    assert plan.spec.seed == 11 and plan.spec.output_shards == 3
    assert plan.stages[0].config.form == "NFD" and plan.stages[0].config.save is True
    assert plan.spec.sources[0].lang == "en"
    with pytest.raises(SpecError) as exc:
        load_plan(spec, ["stages.normalize.bogus=1"])
    (problem,) = exc.value.problems
    assert problem.origin == "--set stages.normalize.bogus=1" and "unknown key" in problem.message
    with pytest.raises(SpecError, match="no item named 'nope'"):
        load_plan(spec, ["sources.nope.lang=en"])
    with pytest.raises(SpecError, match="not KEY=VALUE"):
        load_plan(spec, ["seed"])


def test_repeated_stage_gets_unique_name(tmp_path):
    spec = write_spec(tmp_path, GOOD + "  - normalize: {form: NFC}\n  - normalize\n")
    assert [s.name for s in load_plan(spec).stages] == ["normalize", "normalize_2", "normalize_3"]


def test_cli_validate_prints_plan_and_exit_code_2_on_bad_spec(tmp_path, capsys):
    from iptkit.pipelines.cli import main

    assert main(["validate", write_spec(tmp_path, GOOD)]) == 0
    out = capsys.readouterr().out
    assert "sources (1):" in out and "1. normalize" in out and "output/part-*" in out
    bad = write_spec(tmp_path, GOOD.replace("seed: 7", "sed: 7"))
    assert main(["validate", bad]) == 2
    err = capsys.readouterr().err
    assert "spec.yaml:1: sed: unknown key; did you mean 'seed'?" in err
    assert "Traceback" not in err


def test_stage_source_selection_must_name_real_sources(tmp_path):
    spec = write_spec(tmp_path, GOOD + "  - normalize: {sources: [web, nope]}\n")
    with pytest.raises(SpecError) as exc:
        load_plan(spec)
    assert problems(exc) == [
        ("stages.1.normalize.sources.1", 7, "no source named 'nope' (sources: web)")
    ]


def test_nonsense_numbers_and_pipeline_options_fail_at_validate(tmp_path):
    """NaN and infinite option values, unknown Beam options and runners are spec errors, not a
    failure hours into a run (issue 18, item 9)."""
    spec = write_spec(
        tmp_path,
        GOOD
        + "  - mix: {ratios: {raw: .nan, augmented: 1.0}}\n"
        + "  - pack: {tokenizer: ., seq_len: .inf}\n"
        + "pipeline_options: {direct_num_worker: 2, runner: FlinkRuner}\n"
        + "max_exception_share: .nan\n",
    )
    with pytest.raises(SpecError) as exc_info:
        load_plan(spec)
    found = {key: (line, message) for key, line, message in problems(exc_info)}
    assert "share nan is not a finite" in found["stages.1.mix"][1]
    assert found["stages.2.pack.seq_len"][0] == 8
    line, message = found["pipeline_options"]
    assert line == 9 and "did you mean 'direct_num_workers'?" in message
    assert "Unexpected pipeline runner: FlinkRuner" in message
    assert "finite number" in found["max_exception_share"][1]


def test_every_path_of_a_list_must_match_a_file_and_none_may_be_a_folder(tmp_path):
    """Issue 18, item 3: one missing file or empty glob inside a list of paths was skipped."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "x.jsonl").write_text('{"text": "x"}\n')
    spec = write_spec(
        tmp_path,
        """\
        output: out
        sources:
          - name: web
            format: jsonl
            path:
              - a.jsonl
              - missing.jsonl
              - "none/*.jsonl"
          - {name: folder, format: jsonl, path: dir}
        """,
    )
    with pytest.raises(SpecError) as err:
        load_plan(spec)
    found = problems(err)
    assert [(key, line) for key, line, _ in found] == [
        ("sources.0.path.1", 7),
        ("sources.0.path.2", 8),
        ("sources.1.path", 9),
    ]
    assert found[0][2].startswith(f"no file matches {tmp_path / 'missing.jsonl'} (source 'web', ")
    assert "path 'missing.jsonl'; paths are relative to the spec's folder" in found[0][2]
    assert "path 'none/*.jsonl'" in found[1][2]
    assert found[2][2] == (
        f"{tmp_path / 'dir'} is a folder, not a file: name its files with a glob, e.g. "
        f"{tmp_path / 'dir'}/*.jsonl (source 'folder', path 'dir')"
    )
    # The glob that names the folder's files is fine, and so is the list without the misses.
    fixed = write_spec(
        tmp_path,
        """\
        output: out
        sources:
          - {name: web, format: jsonl, path: [a.jsonl, "dir/*.jsonl"]}
        """,
    )
    assert [f.rel for f in load_plan(fixed).files["web"]] == ["a.jsonl", "x.jsonl"]


def test_two_files_giving_one_name_in_ids_is_a_spec_error(tmp_path):
    for folder in ("p", "q"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.jsonl").write_text('{"text": "x"}\n')
    spec = write_spec(
        tmp_path,
        """\
        output: out
        sources:
          - {name: web, format: jsonl, path: ["p/*.jsonl", "q/*.jsonl"]}
        """,
    )
    with pytest.raises(SpecError, match="would both be 'x.jsonl' in record ids"):
        load_plan(spec)
