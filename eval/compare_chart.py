"""The comparison as a PNG: one small panel per (task, metric, category), one bar per run, ±1
standard error as error bars, or the 95% interval where a row has one (chat judge scores).
Panels keep their own scales, so an accuracy and an answer length can sit
in one figure without one flattening the other."""

from __future__ import annotations

import io
import math
from pathlib import Path

from iptkit.eval.compare import Cell, Comparison

COLUMNS = 4


def error_bar(cell: Cell | None) -> tuple[float, float]:
    """How far a bar's error bar reaches below and above its value: the 95% interval where the
    row has one, else ±1 standard error (0 where unknown or the run lacks the row)."""
    if cell is None:
        return 0.0, 0.0
    if cell.interval is not None:
        low, high = cell.interval
        return max(cell.value - low, 0.0), max(high - cell.value, 0.0)
    return cell.stderr or 0.0, cell.stderr or 0.0


def plot(comparison: Comparison, path: Path) -> Path:
    """Write the chart to `path` (matplotlib's headless Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = len(comparison.rows)
    columns = min(COLUMNS, panels)
    lines = math.ceil(panels / columns)
    fig, axes = plt.subplots(
        lines, columns, figsize=(3.2 * columns, 2.8 * lines + 0.6), squeeze=False
    )
    colours = plt.get_cmap("tab10").colors
    positions = range(len(comparison.runs))
    for ax, row in zip(axes.flat, comparison.rows, strict=False):
        values = [c.value if c is not None else 0.0 for c in row.cells]
        below, above = zip(*(error_bar(c) for c in row.cells), strict=True)
        ax.bar(positions, values, yerr=[below, above], capsize=3, color=colours[: len(values)])
        if min(values) >= 0:  # counts, rates and accuracies start at zero
            top = max(v + e for v, e in zip(values, above, strict=True))
            ax.set_ylim(0, top * 1.1 if top > 0 else 1)
        # Each bar's run number and value under it ("n/a": the run lacks this row).
        ticks = [
            f"{i + 1}\n{'n/a' if c is None else format(c.value, '.3g')}"
            for i, c in enumerate(row.cells)
        ]
        ax.set_title(f"{row.label}\n{row.metric}", fontsize=8)
        ax.set_xticks(list(positions), ticks, fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[panels:]:
        ax.axis("off")
    legend = "   ".join(f"{i + 1}: {name}" for i, name in enumerate(comparison.runs))
    fig.suptitle(f"{legend}   (error bars: ±1 standard error, or the 95% interval)", fontsize=8)
    height = 2.8 * lines + 0.6
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / height))  # room for the legend line on top
    png = io.BytesIO()
    fig.savefig(png, dpi=120, format="png")
    plt.close(fig)
    from iptkit.files import atomic_write  # Beam's FileSystems loads only when writing

    atomic_write(path, png.getvalue())
    return path
