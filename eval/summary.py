"""An eval run's summary: one row per (task, metric) with value, standard error and sample count.

lm-eval's results JSON is complete but nested (`"acc_norm,none"`, groups, filters); the summary
flattens it to the rows a comparison, a chart or an HTML report needs, the same shape for
lm-eval tasks and for the generation metrics:

    {"format": "iptkit-eval-summary/1", "model": ..., "suite": ..., "limit": ...,
     "rows": [{"task", "metric", "value", "stderr", "n", "lang", "num_fewshot", "filter",
               "higher_is_better", "source", "flag", "category", "interval"}, ...],
     "flags": ["generation/ja: ...", ...], "files": {"lm_eval": "lm_eval_results.json", ...}}
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from iptkit.errors import EvalError
from iptkit.eval.suites import SuiteTask

FORMAT = "iptkit-eval-summary/1"
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class Row:
    """One reported number: `value` ± `stderr` over `n` examples (stderr None: not known)."""

    task: str
    metric: str
    value: float
    stderr: float | None
    n: int
    lang: str | None = None
    num_fewshot: int | None = None
    filter: str = "none"
    higher_is_better: bool | None = True
    source: str = "lm-eval"
    flag: str | None = None
    # The papers report chat, code and math per category (Kodama & Oda: coding, general, math,
    # reasoning) and judge scores with intervals; rows of every suite kind carry both.
    category: str | None = None
    interval: tuple[float, float] | None = None  # 95% confidence interval of `value`

    @property
    def key(self) -> tuple[str, str]:
        return (self.task, self.metric)


@dataclass
class Summary:
    """The summary of one eval run, as written to and read from `summary.json`."""

    model: str
    suite: str | None
    rows: list[Row]
    limit: int | float | None = None
    created: str = ""
    lm_eval_version: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    path: str = ""  # where it was read from; not written

    @property
    def flags(self) -> list[str]:
        return [row.flag for row in self.rows if row.flag]

    def to_json(self) -> dict[str, Any]:
        """The summary.json document: the run's description first, then flags and rows."""
        data = asdict(self)
        rows = data.pop("rows")
        data.pop("path")
        return {"format": FORMAT, **data, "flags": self.flags, "rows": rows}


def _number(value: Any) -> float | None:
    """lm-eval writes "N/A" for a standard error it did not compute."""
    if isinstance(value, (int, float)) and not math.isnan(value):
        return float(value)
    return None


def _leaves(results: dict, name: str) -> list[str]:
    """The leaf tasks under an lm-eval group (the task itself for a leaf)."""
    children = results.get("group_subtasks", {}).get(name)
    if not children:
        return [name]
    return [leaf for child in children for leaf in _leaves(results, child)]


def sample_count(results: dict, name: str) -> int:
    """Examples evaluated for a task or group (after `limit`)."""
    counts = results.get("n-samples", {})
    return sum(int(counts.get(leaf, {}).get("effective", 0)) for leaf in _leaves(results, name))


def metric_key(scores: dict[str, Any], task: SuiteTask) -> str:
    """The `metric,filter` key of lm-eval's scores for the suite's metric: the unfiltered one
    (`none`) when there is one, else the only filter."""
    keys = sorted(
        k for k in scores if "," in k and k.split(",")[0] == task.metric and "_stderr" not in k
    )
    if not keys:
        reported = sorted({k.split(",")[0] for k in scores if "," in k and "_stderr" not in k})
        raise EvalError(
            f"task {task.task} reports no metric {task.metric!r} "
            f"(it reports: {', '.join(reported) or 'nothing'}); fix `metric` in the suite"
        )
    return f"{task.metric},none" if f"{task.metric},none" in keys else keys[0]


def lm_eval_rows(results: dict, tasks: list[SuiteTask]) -> list[Row]:
    """One row per suite task from lm-eval's results (a group reports its aggregate)."""
    rows = []
    for task in tasks:
        scores = results["results"].get(task.task)
        if scores is None:
            raise EvalError(f"lm-eval returned no results for task {task.task}")
        key = metric_key(scores, task)
        metric, filter_name = key.split(",", 1)
        better = results.get("higher_is_better", {}).get(task.task, {}).get(metric, True)
        rows.append(
            Row(
                task=task.task,
                metric=metric,
                value=float(scores[key]),
                stderr=_number(scores.get(f"{metric}_stderr,{filter_name}")),
                n=sample_count(results, task.task),
                lang=task.lang,
                num_fewshot=results.get("n-shot", {}).get(task.task, task.num_fewshot),
                filter=filter_name,
                higher_is_better=better,
                category=task.category,
            )
        )
    return rows


def _row(data: dict[str, Any]) -> Row:
    """A row as read back: JSON has no tuples, so the interval comes back as a list."""
    interval = data.get("interval")
    return Row(**{**data, "interval": tuple(interval) if interval is not None else None})


def load_summary(path: str | Path) -> Summary:
    """A run's summary, from its directory or its summary.json; errors name the file."""
    file = Path(path)
    if file.is_dir():
        file = file / SUMMARY_FILE
    if not file.is_file():
        raise EvalError(f"{path}: no {SUMMARY_FILE}; name an `iptkit eval` output directory")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvalError(f"{file}: not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise EvalError(f"{file}: not an iptkit eval summary (format {FORMAT})")
    try:
        return Summary(
            model=data["model"],
            suite=data.get("suite"),
            rows=[_row(row) for row in data["rows"]],
            limit=data.get("limit"),
            created=data.get("created", ""),
            lm_eval_version=data.get("lm_eval_version"),
            files=data.get("files", {}),
            path=str(file),
        )
    except (KeyError, TypeError) as exc:
        raise EvalError(f"{file}: malformed summary: {exc}") from None
