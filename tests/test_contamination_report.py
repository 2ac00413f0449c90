"""The contamination report: Table 9 from the stage summaries, Markdown and self-contained HTML
with every text escaped, written by a real run (DirectRunner) and again by `iptkit report`."""

import json
import re
import textwrap
from pathlib import Path

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline as BeamPipeline
from conftest import files_under, run_cli

from iptkit.eval.contamination_report import combine, render_html, render_markdown
from iptkit.pipelines.reports import write_contamination_report
from iptkit.rundir import RunDir
from iptkit.transforms.record import Record
from iptkit.transforms.stage import StageContext
from iptkit.transforms.stages.decontaminate import Decontaminate, DecontaminateConfig

DATA = Path(__file__).resolve().parents[1] / "pipelines" / "examples" / "data"
BENCH = DATA / "bench"
PAYLOAD = "<script>alert('x')</script>"


def arc_questions() -> list[str]:
    return [json.loads(line)["question"] for line in (BENCH / "arc_mini_en.jsonl").open()]


def summary(stage: str, contaminated: dict, evidence=()) -> dict:
    return {
        "stage": stage,
        "action": "report",
        "detectors": ["ngram"],
        "params": {},
        "benchmarks": {"arc": {"examples": 10, "source": "arc.jsonl"}},
        "records": {"raw": {"checked": 5, "flagged": 1}},
        "contaminated": {"arc": contaminated},
        "evidence": list(evidence),
    }


def test_table9_rows_combine_every_stage():
    before = summary("decont", {"raw": {"ngram": ["1", "2"]}})
    after = summary(
        "decont_2",
        {
            "raw": {"substring": ["3"]},
            "augmented": {"ngram": ["2", "4"]},
            "pairs": {"exact": ["5"], "ngram": ["2"]},
            "instruction": {"ngram": ["9"]},
        },
    )
    (row,) = combine([before, after])["table"]
    assert (row["examples"], row["raw"], row["ins_aug"], row["introduced"]) == (10, 3, 5, 2)
    assert row["example_ids"]["introduced"] == ["4", "5"] and row["instruction"] == 1
    assert row["by_detector"] == {"exact": 1, "ngram": 4, "substring": 1}


def test_the_papers_substring_method_has_its_own_columns():
    """Table 9 of Cheng et al. counts the GPT-4 substring match alone: those counts stand in
    their own columns, beside the union of the detectors, so a run compares with the paper."""
    both = summary(
        "decont",
        {"raw": {"ngram": ["1", "2"], "substring": ["2"]}, "pairs": {"substring": ["7"]}},
    )
    both["detectors"] = ["ngram", "substring", "exact"]
    report = combine([both])
    (row,) = report["table"]
    assert row["paper"] == {"raw": 1, "ins_aug": 2, "introduced": 1, "instruction": 0}
    assert (row["raw"], row["ins_aug"], row["introduced"]) == (2, 3, 1)
    assert row["paper_example_ids"]["ins_aug"] == ["2", "7"]
    text = render_markdown(report)
    assert "Contam in raw corpora: substring (paper) | Contam in raw corpora: all detectors" in text
    assert "| arc | 10 | 1 | 2 | 2 | 3 | 1 | 1 | 0 | 0 |" in text
    assert '<td class="n">1</td><td class="n">2</td><td class="n">2</td><td class="n">3</td>' in (
        render_html(report)
    )
    # No stage ran the paper's method: its columns say so rather than show zeros.
    (ngram_only,) = combine([summary("decont", {"raw": {"ngram": ["1"]}})])["table"]
    assert ngram_only["paper"] is None
    assert "| arc | 10 | n/a | 1 | n/a | 1 |" in render_markdown(
        combine([summary("decont", {"raw": {"ngram": ["1"]}})])
    )


def test_every_text_is_escaped_and_nothing_is_fetched():
    item = {
        "benchmark": "arc",
        "example": f"id{PAYLOAD}",
        "record": f"r{PAYLOAD}",
        "source": PAYLOAD,
        "checked": "raw",
        "field": "text",
        "detector": "ngram",
        "start": 0,
        "end": 5,
        "before": f"before {PAYLOAD} & <b>",
        "match": f"match {PAYLOAD}",
        "after": f"after {PAYLOAD}",
        "question": f"question {PAYLOAD}",
    }
    evil = summary("decont", {"raw": {"ngram": ["1"]}}, [item])
    evil["benchmarks"] = {PAYLOAD: evil["benchmarks"]["arc"]}
    evil["contaminated"] = {PAYLOAD: evil["contaminated"]["arc"]}
    item["benchmark"] = PAYLOAD
    page = render_html(combine([evil]))
    assert "<script" not in page and "&lt;script&gt;" in page
    assert "&amp; &lt;b&gt;<mark>" in page  # corpus markup shows as text
    assert not re.search(r"(src|href)\s*=|url\(|@import|https?://(?!www\.w3\.org/2000/svg)", page)
    assert "<mark>match &lt;script&gt;" in page and "<svg" in page
    markdown = render_markdown(combine([evil]))
    assert "<script" not in markdown and "&lt;script&gt;" in markdown


def test_run_writes_the_three_files_and_iptkit_report_rewrites_them(tmp_path):
    questions = arc_questions()
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "raw.jsonl").write_text(
        json.dumps({"text": f"A page about science. {questions[0]} {PAYLOAD}"}) + "\n"
    )
    (planted / "aug.jsonl").write_text(
        json.dumps({"text": f"{questions[0]}\n\nQuestion: {questions[5]}\nAnswer: friction"}) + "\n"
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        seed: 5
        output: {tmp_path / "run"}
        sources:
          - {{name: web_en, format: jsonl, path: {DATA / "web_en.jsonl.gz"}}}
          - {{name: web_ja, format: jsonl, path: {DATA / "web_ja.jsonl.zst"}}}
          - {{name: planted_raw, format: jsonl, path: {planted / "raw.jsonl"}}}
          - {{name: planted_aug, format: jsonl, path: {planted / "aug.jsonl"}, kind: augmented}}
        stages:
          - normalize: {{}}
          - decontaminate:
              kinds: [raw]
              benchmarks: ["{BENCH / "arc_mini_en.jsonl"}"]
          - decontaminate:
              kinds: [augmented]
              action: drop
              benchmarks:
                - "{BENCH / "arc_mini_en.jsonl"}"
                - {{path: "{BENCH / "jqa_mini_ja.jsonl"}", fields: {{id: qid, answer: label}}}}
        """)
    )
    assert run_cli("run", spec) == 0
    run = tmp_path / "run"
    stats = json.loads((run / "stats.json").read_text())
    assert stats["stages"]["decontaminate_2"]["dropped"] == {"contaminated": 1}
    report = json.loads((run / "contamination" / "report.json").read_text())
    rows = {row["benchmark"]: row for row in report["table"]}
    assert rows["arc_mini_en"]["examples"] == 32 and rows["jqa_mini_ja"]["examples"] == 30
    arc = rows["arc_mini_en"]
    assert (arc["raw"], arc["ins_aug"], arc["introduced"]) == (1, 2, 1)
    assert arc["example_ids"]["introduced"] == ["arc-en-006"]
    assert (rows["jqa_mini_ja"]["raw"], rows["jqa_mini_ja"]["ins_aug"]) == (0, 0)
    page = (run / "contamination" / "report.html").read_text()
    assert "<script" not in page and "&lt;script&gt;" in page
    assert (
        "| arc_mini_en | 32 | 1 | 1 | 2 | 2 | 1 | 1 | 0 | 0 |"
        in (run / "contamination" / "report.md").read_text()
    )
    (reject,) = [json.loads(x) for x in (run / "rejects" / "decontaminate_2").glob("*.jsonl")
                 for x in x.read_text().splitlines()]  # fmt: skip
    assert reject["record"]["meta"]["contamination"][0]["stage"] == "decontaminate_2"

    before = {p.name: p.read_bytes() for p in (run / "contamination").glob("report.*")}
    again = tmp_path / "again"
    assert run_cli("run", spec, "--out", again, "--direct_num_workers=2") == 0
    assert files_under(again / "contamination") == files_under(run / "contamination")
    for p in (run / "contamination").glob("report.*"):
        p.unlink()
    assert run_cli("report", run) == 0
    assert {p.name: p.read_bytes() for p in (run / "contamination").glob("report.*")} == before


def test_pairs_counted_as_introduced_in_a_beam_pipeline(tmp_path):
    questions = arc_questions()
    records = [
        Record(id="r1", source="web", text=f"Intro. {questions[2]} Outro."),
        Record(
            id="a1",
            source="synth",
            kind="augmented",
            text="A raw text about rocks and their mass.",
            pairs=[
                {"instruction": questions[2], "response": "a balance"},
                {"instruction": questions[7], "response": "water"},
            ],
        ),  # fmt: skip
    ]
    cfg = DecontaminateConfig.model_validate({"benchmarks": [str(BENCH / "arc_mini_en.jsonl")]})
    run = RunDir(str(tmp_path))
    stage = Decontaminate(cfg, StageContext(name="decontaminate", seed=1, run=run))
    with BeamPipeline() as pipeline:
        result = pipeline | beam.Create(records) | stage
        _ = result["kept"] | beam.Map(lambda r: r)
    # The report finds the stage's summary through stats.json's index, as after a run.
    written = write_contamination_report(run, {"files": run.index({stage.name: stage.files()})})
    assert [Path(p).name for p in written] == ["report.json", "report.md", "report.html"]
    (row,) = json.loads(Path(written[0]).read_text())["table"]
    assert (row["raw"], row["ins_aug"], row["introduced"]) == (1, 2, 1)
    assert row["example_ids"]["introduced"] == ["arc-en-008"]
    assert write_contamination_report(RunDir(str(tmp_path / "empty")), None) == []
