"""Comparing eval runs: each (task, metric, category) across runs, and each run's difference
from the first.

Rows with a `category` (a chat suite's per-category judge scores, and any suite kind reporting
per category) are compared per category, and show their 95% interval beside the value.

The first run is the baseline (e.g. vanilla pre-training; then instruction pre-training, mix
variants). A difference carries the standard error sqrt(se_a^2 + se_b^2), which treats the two
runs' scores as independent. Both runs answer the same examples, whose per-example scores
usually correlate, so it tends to overstate the uncertainty of the difference: a conservative
yardstick (a paired test over lm-eval's per-sample logs would be tighter).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from iptkit.eval.summary import Row, Summary

Z95 = 1.96  # two-sided 95% under a normal approximation


@dataclass(frozen=True)
class Cell:
    """One run's number for a (task, metric, category), with its 95% interval where known."""

    value: float
    stderr: float | None
    n: int
    interval: tuple[float, float] | None = None


@dataclass(frozen=True)
class Diff:
    """A run minus the baseline, with the standard error of the difference."""

    value: float
    stderr: float | None

    @property
    def significant(self) -> bool:
        """|difference| above 1.96 standard errors (False when a standard error is unknown)."""
        return bool(self.stderr) and abs(self.value) > Z95 * self.stderr  # type: ignore[operator]


def difference(base: Cell, other: Cell) -> Diff:
    """`other - base`, with standard error sqrt(se_base^2 + se_other^2)."""
    stderr = (
        None
        if base.stderr is None or other.stderr is None
        else math.sqrt(base.stderr**2 + other.stderr**2)
    )
    return Diff(other.value - base.value, stderr)


@dataclass(frozen=True)
class ComparedRow:
    """A (task, metric, category) across the runs; `cells[i]` is None where run i lacks it."""

    task: str
    metric: str
    lang: str | None
    num_fewshot: int | None
    higher_is_better: bool | None
    cells: list[Cell | None]
    category: str | None = None

    @property
    def label(self) -> str:
        """The row's name in tables and charts: the task, its category and language, or its
        shots."""
        if self.category is not None:
            return f"{self.task} / {self.category}" + (f" ({self.lang})" if self.lang else "")
        return self.task + (f" ({self.num_fewshot}-shot)" if self.num_fewshot is not None else "")

    @property
    def diffs(self) -> list[Diff | None]:
        """Each run minus the baseline (None for the baseline and where a cell is missing)."""
        base = self.cells[0]
        return [
            None if i == 0 or base is None or cell is None else difference(base, cell)
            for i, cell in enumerate(self.cells)
        ]


@dataclass(frozen=True)
class Comparison:
    runs: list[str]
    paths: list[str]
    rows: list[ComparedRow]

    def to_json(self) -> dict[str, Any]:
        """The comparison as plain JSON, differences and their flags included (for reports)."""
        return {
            "format": "iptkit-eval-compare/1",
            "baseline": self.runs[0],
            "runs": [{"name": n, "summary": p} for n, p in zip(self.runs, self.paths, strict=True)],
            "rows": [
                {
                    "task": r.task,
                    "metric": r.metric,
                    "category": r.category,
                    "lang": r.lang,
                    "num_fewshot": r.num_fewshot,
                    "higher_is_better": r.higher_is_better,
                    "cells": [None if c is None else asdict(c) for c in r.cells],
                    "diffs": [
                        None if d is None else {**asdict(d), "significant": d.significant}
                        for d in r.diffs
                    ],
                }
                for r in self.rows
            ],
        }


def run_names(summaries: list[Summary]) -> list[str]:
    """Short names for the runs: their directory names, with parents added until unique."""
    parts = [Path(s.path).resolve().parent.parts for s in summaries]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(i) for i in range(1, len(summaries) + 1)]  # the same directory given twice


def row_key(row: Row) -> tuple[str, str, str | None]:
    """What identifies a number across runs: its task, metric and category."""
    return (row.task, row.metric, row.category)


def compare(summaries: list[Summary]) -> Comparison:
    """All (task, metric, category) rows of the runs, in the order they first appear."""
    order: dict[tuple[str, str, str | None], Row] = {}
    for summary in summaries:
        for row in summary.rows:
            order.setdefault(row_key(row), row)
    by_run = [{row_key(row): row for row in s.rows} for s in summaries]
    rows = []
    for key, first in order.items():
        cells = [
            None if (r := rows_of.get(key)) is None else Cell(r.value, r.stderr, r.n, r.interval)
            for rows_of in by_run
        ]
        rows.append(
            ComparedRow(
                first.task,
                first.metric,
                first.lang,
                first.num_fewshot,
                first.higher_is_better,
                cells,
                first.category,
            )
        )
    return Comparison(run_names(summaries), [s.path for s in summaries], rows)


def _cell(cell: Cell | None) -> str:
    if cell is None:
        return "–"
    text = f"{cell.value:.4f}" + ("" if cell.stderr is None else f" ± {cell.stderr:.4f}")
    if cell.interval is not None:
        text += f" [{cell.interval[0]:.4g}, {cell.interval[1]:.4g}]"
    return text


def _diff(diff: Diff | None) -> str:
    if diff is None:
        return "–"
    text = f"{diff.value:+.4f}" + ("" if diff.stderr is None else f" ± {diff.stderr:.4f}")
    return text + (" *" if diff.significant else "")


def _n(row: ComparedRow) -> str:
    counts = [c.n for c in row.cells if c is not None]
    return str(counts[0]) if len(set(counts)) == 1 else "/".join(map(str, counts))


def to_markdown(comparison: Comparison) -> str:
    """A Markdown table: each run's value ± standard error, and each later run minus the first."""
    runs = comparison.runs
    head = ["task", "metric", "n", *runs, *(f"{name} − {runs[0]}" for name in runs[1:])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in comparison.rows:
        cells = [_cell(c) for c in row.cells] + [_diff(d) for d in row.diffs[1:]]
        lines.append("| " + " | ".join([row.label, row.metric, _n(row), *cells]) + " |")
    note = "value ± standard error"
    if any(c is not None and c.interval is not None for r in comparison.rows for c in r.cells):
        note += " [95% interval: percentile bootstrap over questions]"
    if len(runs) > 1:
        note += (
            "; a difference's standard error is sqrt(se_a² + se_b²); "
            f"* marks |difference| > {Z95} standard errors. Baseline: {runs[0]}"
        )
    lines += ["", note + "."]
    return "\n".join(lines) + "\n"
