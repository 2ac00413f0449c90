"""The contamination report: Table 9 of Cheng et al. (2024) per benchmark, from the summaries
that each decontaminate stage of a run writes (RUN/contamination/stages/STAGE.json).

Pure functions over JSON: `combine` merges the stage summaries into the report's data, and
`render_markdown` / `render_html` turn it into text. The HTML page is self-contained (inline CSS,
inline SVG charts, no script, no fetch), and every piece of corpus or benchmark text goes
through `html.escape`. `contamination_section` is the HTML without the page around it, so the
run's one-page report can embed it next to its other sections.

Table 9's columns, per benchmark, each twice: by the paper's method alone (the `substring`
detector: Cheng et al. Appendix D use the GPT-4 report's substring match), so the counts compare
with the paper's, and by the union of the detectors the stages ran (an example counts once,
whichever detector found it):
- total: examples in the benchmark set;
- raw corpora: examples found in the text of `raw` records;
- instruction-augmented corpora: examples found in raw text, augmented text or synthesized
  pairs (the augmented corpus is the raw texts plus their pairs);
- introduced by synthesized pairs: found in augmented text or pairs but not in raw text (the
  paper's "augmented minus raw");
- instruction data (not in the paper): found in `instruction` or `tuning` records.
The paper's columns read "n/a" when no decontaminate stage ran the substring detector.
"""

from __future__ import annotations

from html import escape
from typing import Any

from iptkit.eval.html_parts import Bar, hbar_chart_svg, html_page, html_table

AUGMENTED_LABELS = ("augmented", "pairs")
INSTRUCTION_LABELS = ("instruction", "tuning")
EVIDENCE_SHOWN = 10  # per benchmark, in the Markdown and HTML
PAPER_DETECTOR = "substring"  # the method of Cheng et al. Appendix D (Table 9)
GROUPS = {"raw": ("raw",), "aug": AUGMENTED_LABELS, "instruction": INSTRUCTION_LABELS}
COLUMNS = (
    ("raw", "Contam in raw corpora"),
    ("ins_aug", "Contam in ins-aug corpora"),
    ("introduced", "Introduced by synthesized pairs"),
    ("instruction", "Contam in instruction data"),
)


def _ids(
    summary: dict[str, Any], bench: str, labels: tuple[str, ...], detector: str | None = None
) -> set[str]:
    """Examples of `bench` found in texts of `labels`, by `detector` (None: by any)."""
    found = summary.get("contaminated", {}).get(bench, {})
    return {
        i
        for label in labels
        for name, ids in found.get(label, {}).items()
        if detector is None or name == detector
        for i in ids
    }


def _table9(raw: set[str], aug: set[str], instruction: set[str]) -> dict[str, list[str]]:
    """The example ids of each Table 9 column from those found in raw, augmented and
    instruction texts."""
    return {
        "raw": sorted(raw),
        "ins_aug": sorted(raw | aug),
        "introduced": sorted(aug - raw),
        "instruction": sorted(instruction),
    }


def combine(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's data from every decontaminate stage's summary (in stage order)."""
    benchmarks: dict[str, dict[str, Any]] = {}
    paper_ran = any(PAPER_DETECTOR in s.get("detectors", ()) for s in summaries)
    for summary in summaries:
        for name, info in summary["benchmarks"].items():
            entry = benchmarks.setdefault(
                name,
                {"examples": info["examples"], "source": info["source"], "sets": {}, "det": {}},
            )
            for method, detector in (("all", None), ("paper", PAPER_DETECTOR)):
                sets = entry["sets"].setdefault(method, {})
                for group, labels in GROUPS.items():
                    sets.setdefault(group, set()).update(_ids(summary, name, labels, detector))
            for labels in summary.get("contaminated", {}).get(name, {}).values():
                for detector, ids in labels.items():
                    entry["det"].setdefault(detector, set()).update(ids)
    rows = []
    for name in sorted(benchmarks):
        entry = benchmarks[name]
        ids = _table9(*(entry["sets"]["all"][g] for g in GROUPS))
        paper = _table9(*(entry["sets"]["paper"][g] for g in GROUPS)) if paper_ran else None
        rows.append(
            {
                "benchmark": name,
                "source": entry["source"],
                "examples": entry["examples"],
                **{key: len(value) for key, value in ids.items()},
                "paper": {k: len(v) for k, v in paper.items()} if paper else None,
                "by_detector": {d: len(v) for d, v in sorted(entry["det"].items())},
                "example_ids": ids,
                "paper_example_ids": paper,
            }
        )
    evidence = sorted(
        ({**item, "stage": s["stage"]} for s in summaries for item in s.get("evidence", [])),
        key=lambda e: (e["benchmark"], e["example"], e["stage"], e["record"], e["start"]),
    )
    return {
        "table": rows,
        "stages": [
            {k: s[k] for k in ("stage", "action", "detectors", "params", "records")}
            for s in summaries
        ],
        "evidence": evidence,
    }


# --------------------------------------------------------------------------------------------
# The table, shared by Markdown and HTML

TABLE_NOTE = (
    "Each column twice: *substring (paper)* counts what the paper's method alone found (the "
    "GPT-4 report's 50-character substrings, Cheng et al. Appendix D), comparable with its "
    "Table 9; *all detectors* counts an example once whichever detector found it. "
    "*Introduced by synthesized pairs* = found in augmented text or pairs but not in raw text."
)


def table_header() -> list[str]:
    header = ["benchmark", "total examples"]
    for _, title in COLUMNS:
        header += [f"{title}: substring (paper)", f"{title}: all detectors"]
    return header


def table_cells(row: dict[str, Any]) -> list[Any]:
    """One benchmark's cells; the paper's are "n/a" where no stage ran the substring detector."""
    paper = row.get("paper")
    cells: list[Any] = [row["benchmark"], row["examples"]]
    for key, _ in COLUMNS:
        cells += [paper[key] if paper else "n/a", row[key]]
    return cells


# --------------------------------------------------------------------------------------------
# Markdown


def _md_cell(text: str) -> str:
    """Corpus text in a Markdown line: one line, `|` escaped, and HTML escaped too (Markdown
    renderers pass raw HTML through)."""
    return " ".join(escape(text, quote=False).replace("|", "\\|").split())


def render_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Contamination report",
        "",
        f"Benchmark examples found in the training data (Cheng et al. 2024, Table 9 layout). "
        f"{TABLE_NOTE}",
        "",
        "| " + " | ".join(table_header()) + " |",
        "|---|" + "---:|" * (len(table_header()) - 1),
    ]
    for row in report["table"]:
        cells = [_md_cell(row["benchmark"]), *map(str, table_cells(row)[1:])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Stages", ""]
    for stage in report["stages"]:
        lines.append(f"- `{stage['stage']}`: {stage_summary(stage)}")
    lines += ["", "## By detector", ""]
    for row in report["table"]:
        counts = ", ".join(f"{d} {n}" for d, n in row["by_detector"].items()) or "none"
        lines.append(f"- {_md_cell(row['benchmark'])}: {counts}")
    lines += ["", "## Matches (first ones per benchmark)", ""]
    shown: dict[str, int] = {}
    for item in report["evidence"]:
        if shown.get(item["benchmark"], 0) >= EVIDENCE_SHOWN:
            continue
        shown[item["benchmark"]] = shown.get(item["benchmark"], 0) + 1
        lines.append(
            f"- {_md_cell(item['benchmark'])} `{_md_cell(item['example'])}` in "
            f"`{_md_cell(item['record'])}` ({item['checked']}, {item['field']}, "
            f"{item['detector']}, stage {item['stage']}): "
            f"…{_md_cell(item['before'][-40:])} **{_md_cell(item['match'][:200])}** "
            f"{_md_cell(item['after'][:40])}…"
        )
    if not report["evidence"]:
        lines.append("No matches.")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# HTML

BAR_COLORS = {"raw": "#4a7bd0", "ins_aug": "#e08a2e", "introduced": "#c33", "instruction": "#6a9"}


def bar_chart_svg(row: dict[str, Any]) -> str:
    """An inline SVG bar chart of one benchmark's Table 9 counts (bars scaled to the total)."""
    bars = [Bar(title, ((row[key], BAR_COLORS[key], title),)) for key, title in COLUMNS]
    return hbar_chart_svg(
        f"{row['benchmark']} ({row['examples']} examples)", bars, scale=max(row["examples"], 1)
    )


def table_html(report: dict[str, Any]) -> str:
    return html_table(table_header(), [table_cells(row) for row in report["table"]])


def evidence_html(report: dict[str, Any]) -> str:
    blocks, shown = [], {}
    for item in report["evidence"]:
        if shown.get(item["benchmark"], 0) >= EVIDENCE_SHOWN:
            continue
        shown[item["benchmark"]] = shown.get(item["benchmark"], 0) + 1
        blocks.append(
            '<div class="match"><div class="meta">'
            f"{escape(item['benchmark'])} example <b>{escape(item['example'])}</b> in record "
            f"<b>{escape(item['record'])}</b> ({escape(item['source'])}); checked "
            f"{escape(item['checked'])} {escape(item['field'])}; detector "
            f"{escape(item['detector'])}; stage {escape(item['stage'])}</div>"
            f'<div class="q">benchmark: {escape(item.get("question", ""))}</div>'
            f'<div class="ctx">…{escape(item["before"])}<mark>{escape(item["match"])}</mark>'
            f"{escape(item['after'])}…</div></div>"
        )
    return "".join(blocks) or "<p>No matches.</p>"


def stage_summary(stage: dict[str, Any]) -> str:
    """One decontaminate stage in a line of plain text (Markdown and HTML share it)."""
    checked = ", ".join(
        f"{label} {c['checked']} checked / {c['flagged']} flagged"
        for label, c in stage["records"].items()
    )
    return (
        f"action {stage['action']}, detectors {', '.join(stage['detectors'])}; "
        f"{checked or 'no records checked'}"
    )


def stages_html(report: dict[str, Any]) -> str:
    items = [
        f"<li><code>{escape(stage['stage'])}</code>: {escape(stage_summary(stage))}</li>"
        for stage in report["stages"]
    ]
    return "<ul>" + "".join(items) + "</ul>"


def contamination_section(report: dict[str, Any]) -> str:
    """The report's body as one HTML section, for this page or the run's one-page report."""
    charts = "".join(f'<div class="chart">{bar_chart_svg(row)}</div>' for row in report["table"])
    return (
        '<section id="contamination"><h2>Benchmark contamination</h2>'
        "<p>Benchmark examples found in the training data, in the layout of Table 9 of Cheng "
        f"et al. (2024). {escape(TABLE_NOTE).replace('*', '')}</p>"
        f'{table_html(report)}<div class="charts">{charts}</div>'
        f"<h3>Stages</h3>{stages_html(report)}"
        f"<h3>Matches in context</h3>{evidence_html(report)}</section>"
    )


def render_html(report: dict[str, Any]) -> str:
    return html_page("Contamination report", [contamination_section(report)])
