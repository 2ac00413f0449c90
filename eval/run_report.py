"""The run's one report: a single self-contained HTML page for a whole run, data and model.

`RunReportInputs` holds what was found (parsed JSON, nothing read here); `render_run_report`
turns it into the page, section by section, in the order the data flows: ledger, mix, shards,
contamination, training, evaluation. A section whose input is missing is one line saying so,
so a data-only run and a fully trained and evaluated one give the same page shape.
pipelines/reports.py finds the inputs in the run directory and writes RUN/report.html.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from iptkit.eval.contamination_report import contamination_section
from iptkit.eval.html_parts import html_page, missing_note
from iptkit.eval.report_data_sections import (
    ledger_section,
    mix_section,
    shards_section,
    synthesis_section,
)
from iptkit.eval.report_model_sections import eval_section, training_section


@dataclass
class RunReportInputs:
    """Everything a run report can show; an empty field means "not in this run"."""

    run: str
    stats: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    mix: dict[str, dict[str, Any]] = field(default_factory=dict)  # mix stage -> report.json
    synthesis: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> pairs.json
    shards: dict[str, dict[str, Any]] = field(default_factory=dict)  # folder -> manifest
    contamination: dict[str, Any] | None = None  # contamination_report.combine's output
    training: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # name -> steps
    evals: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> summary.json


SECTIONS = (
    ("ledger", "Ledger"),
    ("synthesis", "Synthesis"),
    ("mix", "Mix"),
    ("shards", "Shards"),
    ("contamination", "Contamination"),
    ("training", "Training"),
    ("eval", "Evaluation"),
)


def sections(inputs: RunReportInputs) -> list[str]:
    """The page's sections in SECTIONS order, each filled or a one-line "not in this run"."""
    return [
        ledger_section(inputs.stats, inputs.timings)
        if inputs.stats
        else missing_note("ledger", "Ledger", "no stats.json (the run did not finish)"),
        synthesis_section(inputs.synthesis)
        if inputs.synthesis
        else missing_note(
            "synthesis", "Instruction synthesis", "no synthesize stage (RUN/STAGE/pairs.json)"
        ),
        mix_section(inputs.mix)
        if inputs.mix
        else missing_note("mix", "Mix", "no mix stage (RUN/STAGE/report.json)"),
        shards_section(inputs.shards)
        if inputs.shards
        else missing_note("shards", "Shards", "no pack stage (RUN/shards/*/manifest.json)"),
        contamination_section(inputs.contamination)
        if inputs.contamination
        else missing_note("contamination", "Benchmark contamination", "no decontaminate stage"),
        training_section(inputs.training)
        if inputs.training
        else missing_note(
            "training", "Training", "no metrics.jsonl (RUN/train/ or iptkit report --train DIR)"
        ),
        eval_section(inputs.evals)
        if inputs.evals
        else missing_note(
            "eval", "Evaluation", "no eval summary.json (RUN/eval/ or iptkit report --eval DIR)"
        ),
    ]


def render_run_report(inputs: RunReportInputs) -> str:
    """The whole page: title, in-page links, the sections."""
    return html_page(f"iptkit run report: {inputs.run}", sections(inputs), nav=list(SECTIONS))
