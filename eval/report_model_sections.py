"""The run report's model sections: training curves and eval results.

Pure functions from parsed files to one HTML `<section>`: a trainer run's metrics.jsonl (one
object per optimizer step: step, stage, loss, lr, grad_norm, tokens_per_s, mfu, and in the
preference modes chosen_logp, rejected_logp, reward_margin, reward_accuracy; one per evaluation:
step, stage, split "validation", val_loss, val_<those>, gen_length, gen_truncated) and an
`iptkit eval` run's summary.json (format iptkit-eval-summary/1: rows of task, metric, value,
stderr, n, ...; rows with source "generation" are the generation metrics; rows with a
`category` are reported per category, with their 95% `interval`: a chat suite's judge scores,
and any suite kind that reports per category). The loss curve is drawn here as inline SVG, so
the page needs no loss.png beside it.
"""

from __future__ import annotations

from html import escape
from typing import Any

from iptkit.eval.html_parts import Interval, html_table, interval_chart_svg, line_chart_svg


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


PREFERENCE_KEYS = ("chosen_logp", "rejected_logp", "reward_margin", "reward_accuracy")


def _first_last(records: list[dict[str, Any]], key: str) -> str | None:
    values = [r[key] for r in records if r.get(key) is not None]
    if not values:
        return None
    return f"{values[0]:.4g} → {values[-1]:.4g}"


def training_section(runs: dict[str, list[dict[str, Any]]]) -> str:
    """Per trainer run: the loss per step, one line per training stage and the validation loss
    as its own line; a table per stage (steps, first and last loss, last validation loss, mean
    throughput and MFU); and, when the run has them, the preference numbers and the answer
    length on the fixed prompts, first → last, per stage."""
    parts = ['<section id="training"><h2>Training</h2>']
    for name, lines in runs.items():
        by_stage: dict[str, list[dict[str, Any]]] = {}
        evals: dict[str, list[dict[str, Any]]] = {}
        for record in lines:
            target = evals if "val_loss" in record and "loss" not in record else by_stage
            target.setdefault(str(record.get("stage", "")), []).append(record)
        series = {
            stage: [
                (float(r["step"]), float(r["loss"])) for r in records if r.get("loss") is not None
            ]
            for stage, records in by_stage.items()
        }
        for stage, records in evals.items():
            series[f"{stage} (validation)"] = [
                (float(r["step"]), float(r["val_loss"])) for r in records
            ]
        rows = []
        for stage, records in by_stage.items():
            losses = [r["loss"] for r in records if r.get("loss") is not None]
            val = [r["val_loss"] for r in evals.get(stage, [])]
            rows.append(
                [
                    stage,
                    len(records),
                    f"{records[0]['step']}-{records[-1]['step']}",
                    losses[0] if losses else None,
                    losses[-1] if losses else None,
                    min(losses) if losses else None,
                    val[-1] if val else None,
                    _mean([r["tokens_per_s"] for r in records if r.get("tokens_per_s")]),
                    _mean([r["mfu"] for r in records if r.get("mfu") is not None]),
                ]
            )
        chart = line_chart_svg(f"Loss per step: {name}", series, "step", "loss")
        parts.append(
            f"<h3>Run <code>{escape(name)}</code></h3>"
            + html_table(
                [
                    "stage",
                    "steps",
                    "step range",
                    "first loss",
                    "last loss",
                    "lowest loss",
                    "last validation loss",
                    "mean tokens/s",
                    "mean MFU",
                ],
                rows,
            )
            + f'<div class="chart">{chart}</div>'
            + _alignment_table(by_stage, evals)
        )
    return "".join(parts) + "</section>"


def _alignment_table(
    by_stage: dict[str, list[dict[str, Any]]], evals: dict[str, list[dict[str, Any]]]
) -> str:
    """Preference numbers (training, then validation) and answer lengths, first → last."""
    keys = [k for k in PREFERENCE_KEYS if any(k in r for rs in by_stage.values() for r in rs)]
    lengths = any("gen_length" in r for rs in evals.values() for r in rs)
    if not keys and not lengths:
        return ""
    rows = []
    for stage in dict.fromkeys([*by_stage, *evals]):
        train, val = by_stage.get(stage, []), evals.get(stage, [])
        rows.append(
            [stage]
            + [_first_last(train, k) for k in keys]
            + [_first_last(val, f"val_{k}") for k in keys]
            + ([_first_last(val, "gen_length")] if lengths else [])
        )
    header = (
        ["stage"]
        + [k.replace("_", " ") for k in keys]
        + [f"validation {k.replace('_', ' ')}" for k in keys]
        + (["answer length (tokens)"] if lengths else [])
    )
    return "<h4>Alignment (first → last)</h4>" + html_table(header, rows)


def _value(row: dict[str, Any]) -> str:
    """value ± stderr (when known) and [low, high], the 95% interval (when the row has one)."""
    stderr, interval = row.get("stderr"), row.get("interval")
    text = f"{row['value']:.4g}" + (f" ± {stderr:.2g}" if stderr is not None else "")
    return text + (f" [{interval[0]:.3g}, {interval[1]:.3g}]" if interval else "")


def _by_category(rows: list[dict[str, Any]]) -> dict[tuple[str, str | None], list[dict]]:
    """Rows with a category, grouped by (task, language), in first-seen order."""
    groups: dict[tuple[str, str | None], list[dict]] = {}
    for r in rows:
        if r.get("category") is not None:
            groups.setdefault((r["task"], r.get("lang")), []).append(r)
    return groups


def _category_table(rows: list[dict[str, Any]]) -> str:
    """One line per category, one column per metric (the judge score beside the unparsed
    rate and the target-language character ratio), then the flags."""
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    cells: dict[str, dict[str, dict]] = {}
    for r in rows:
        cells.setdefault(r["category"], {})[r["metric"]] = r
    body = []
    for category, mine in cells.items():
        flags = "; ".join(r["flag"] for r in mine.values() if r.get("flag"))
        n = ", ".join(f"{m} {mine[m]['n']}" for m in metrics if m in mine)
        body.append(
            [category, *(_value(mine[m]) if m in mine else None for m in metrics), n, flags or None]
        )
    return html_table(["category", *metrics, "n", "flag"], body)


def category_section(summaries: dict[str, dict[str, Any]]) -> str:
    """Per task and language, each category's numbers across the eval runs: a chart of the
    first metric (the judge score) with its 95% interval per run, and a table per run."""
    groups: dict[tuple[str, str | None], dict[str, list[dict]]] = {}
    for name, summary in summaries.items():
        for key, rows in _by_category(summary.get("rows", [])).items():
            groups.setdefault(key, {})[name] = rows
    parts = []
    for (task, lang), runs in groups.items():
        metric = next(iter(runs.values()))[0]["metric"]
        points = [
            Interval(r["category"], name, r["value"], *(r.get("interval") or (r["value"],) * 2))
            for name, rows in runs.items()
            for r in rows
            if r["metric"] == metric
        ]
        title = f"{task}" + (f" ({lang})" if lang else "") + f": {metric}, 95% interval"
        parts.append(
            f"<h4>{escape(task)} by category" + (f" ({escape(lang)})" if lang else "") + "</h4>"
            + f'<div class="chart">{interval_chart_svg(title, points)}</div>'
            + "".join(
                f"<p>Eval <code>{escape(name)}</code></p>" + _category_table(rows)
                for name, rows in runs.items()
            )
        )
    return "".join(parts)


def _facts(summary: dict[str, Any]) -> str:
    """The eval run's description: model, suite, limit, lm-eval version, date (those known)."""
    facts = [
        (label, summary.get(key))
        for label, key in (("model", "model"), ("suite", "suite"), ("limit", "limit"),
                           ("lm-eval", "lm_eval_version"), ("created", "created"))
        if summary.get(key) not in (None, "")
    ]  # fmt: skip
    return "<p>" + "; ".join(f"{label} {escape(str(value))}" for label, value in facts) + "</p>"


def eval_section(summaries: dict[str, dict[str, Any]]) -> str:
    """Per eval run: its model and suite, a table of lm-eval results per task and metric with
    the standard error, and a table of the generation metrics with their flags (e.g. a
    Japanese target-language character ratio under 0.60); then the rows reported per category
    (chat judge scores), per task and language, every run side by side."""
    parts = ['<section id="eval"><h2>Evaluation</h2>']
    for name, summary in summaries.items():
        rows = summary.get("rows", [])
        tasks = [
            r
            for r in rows
            if r.get("source", "lm-eval") != "generation" and r.get("category") is None
        ]
        generation = [r for r in rows if r.get("source") == "generation"]
        parts.append(f"<h3>Eval <code>{escape(name)}</code></h3>" + _facts(summary))
        if tasks:
            parts.append(
                html_table(
                    ["task", "metric", "value ± stderr", "n", "lang", "shots", "filter"],
                    [
                        [
                            r["task"],
                            r["metric"],
                            _value(r),
                            r.get("n"),
                            r.get("lang"),
                            r.get("num_fewshot"),
                            r.get("filter"),
                        ]
                        for r in tasks
                    ],
                )
            )
        if generation:
            parts.append(
                "<h4>Generation metrics</h4>"
                + html_table(
                    ["task", "metric", "value ± stderr", "n", "lang", "flag"],
                    [
                        [
                            r["task"],
                            r["metric"],
                            _value(r),
                            r.get("n"),
                            r.get("lang"),
                            r.get("flag"),
                        ]
                        for r in generation
                    ],
                )
            )
        if not rows:
            parts.append('<p class="missing">This eval run has no result rows.</p>')
    return "".join(parts) + category_section(summaries) + "</section>"
