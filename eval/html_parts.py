"""The pieces every iptkit HTML report is made of: the page, tables, bar and line charts.

Pure functions from plain values to HTML text. The page is self-contained (inline CSS, inline
SVG, no script, nothing fetched), so it opens from a file, a bucket or an e-mail attachment the
same way. Every label and cell goes through `html.escape` here, once, so a section can hand over
corpus text, record ids or task names as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

CSS = """
body{font:15px/1.5 system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;display:block;max-width:100%;overflow-x:auto}th,td{border:1px solid #ccc;padding:.3em .6em}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:flex;flex-wrap:wrap;gap:1.5em}.chart{border:1px solid #ddd;padding:.5em}
.match{margin:.6em 0;padding:.5em;border-left:3px solid #c33;background:#fafafa}
.match .ctx{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:13px}
mark{background:#ffd24d}.meta{color:#555;font-size:13px}.q{color:#333;font-style:italic}
.missing{color:#777;font-style:italic}.flag{color:#c33;font-weight:bold}
nav a{margin-right:1em}section{margin-top:2.5em}
"""
PALETTE = ("#4a7bd0", "#e08a2e", "#6a9", "#c33", "#8a5cc2", "#a67c52", "#d46ab0", "#777")


def html_page(title: str, sections: list[str], nav: list[tuple[str, str]] | None = None) -> str:
    """A self-contained page around HTML sections: inline CSS, nothing fetched; `nav` is a list
    of (section id, title) for in-page links."""
    links = ""
    if nav:
        links = (
            "<nav>"
            + "".join(f'<a href="#{escape(anchor)}">{escape(label)}</a>' for anchor, label in nav)
            + "</nav>"
        )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{escape(title)}</h1>{links}{''.join(sections)}</body></html>\n"
    )


def cell(value: Any) -> str:
    """A table cell: numbers right-aligned (floats to 4 significant digits, ints with thousands
    separators), None as a dash, everything else escaped text."""
    if isinstance(value, bool) or value is None:
        return f"<td>{'-' if value is None else escape(str(value).lower())}</td>"
    if isinstance(value, int):
        return f'<td class="n">{value:,}</td>'
    if isinstance(value, float):
        return f'<td class="n">{value:.4g}</td>'
    return f"<td>{escape(str(value))}</td>"


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A table of `rows` under `header`; cells as `cell` renders them."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def missing_note(anchor: str, title: str, why: str) -> str:
    """A section that says, in one line, that its input is not in this run."""
    return (
        f'<section id="{escape(anchor)}"><h2>{escape(title)}</h2>'
        f'<p class="missing">Not in this run: {escape(why)}</p></section>'
    )


@dataclass(frozen=True)
class Bar:
    """One horizontal bar: a label and its segments (value, colour, legend name), stacked."""

    label: str
    segments: tuple[tuple[float, str, str], ...]
    note: str = ""  # text after the bar; default the sum of the segments


def _number(value: float) -> str:
    return f"{value:,}" if float(value).is_integer() else f"{value:.3g}"


def hbar_chart_svg(title: str, bars: Sequence[Bar], scale: float | None = None) -> str:
    """An inline SVG chart of horizontal (stacked) bars, all scaled to `scale` (default the
    longest bar), with a legend of the segment names."""
    bar_h, gap, label_w, bars_w = 18, 8, 200, 330
    notes = [b.note or _number(sum(v for v, _, _ in b.segments)) for b in bars]
    width = label_w + bars_w + 10 + 7 * max((len(n) for n in notes), default=0)
    longest = max((sum(v for v, _, _ in b.segments) for b in bars), default=0)
    unit = bars_w / max(scale or longest, 1e-12)
    legend = list(dict.fromkeys((name, colour) for b in bars for _, colour, name in b.segments))
    stacked = any(len(b.segments) > 1 for b in bars)  # one colour per bar needs no legend
    height = 24 + len(bars) * (bar_h + gap) + (20 if stacked else 0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="14" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    for i, (bar, note) in enumerate(zip(bars, notes, strict=True)):
        y = 24 + i * (bar_h + gap)
        x = float(label_w)
        parts.append(f'<text x="0" y="{y + 13}" font-size="12">{escape(bar.label[:32])}</text>')
        for value, colour, name in bar.segments:
            length = max(value, 0) * unit
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{length:.1f}" height="{bar_h}" '
                f'fill="{colour}"><title>{escape(name)}: {escape(_number(value))}</title></rect>'
            )
            x += length
        parts.append(f'<text x="{x + 4:.1f}" y="{y + 13}" font-size="12">{escape(note)}</text>')
    if stacked:
        y, x = height - 6, 0.0
        for name, colour in legend:
            parts.append(
                f'<rect x="{x:.0f}" y="{y - 10}" width="10" height="10" fill="{colour}"/>'
                f'<text x="{x + 14:.0f}" y="{y}" font-size="12">{escape(name)}</text>'
            )
            x += 24 + 7 * len(name)
    return "".join(parts) + "</svg>"


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Evenly spaced axis values from low to high (both included)."""
    if high <= low:
        return [low]
    return [low + (high - low) * i / (count - 1) for i in range(count)]


def line_chart_svg(
    title: str, series: dict[str, list[tuple[float, float]]], x_label: str, y_label: str
) -> str:
    """An inline SVG line chart, one coloured line per named series of (x, y) points, with
    axes, tick values and a legend. A series of one point shows as a dot."""
    width, height, left, right, top, bottom = 640, 300, 60, 20, 28, 46
    points = [p for values in series.values() for p in values]
    xs, ys = [x for x, _ in points] or [0.0], [y for _, y in points] or [0.0]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="14" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#999"/>',
    ]
    for y in _ticks(y0, y1):
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
            f'stroke="#eee"/><text x="{left - 4}" y="{py(y) + 4:.1f}" font-size="11" '
            f'text-anchor="end">{y:.3g}</text>'
        )
    whole = all(float(x).is_integer() for x in xs)  # steps: whole tick values
    for x in _ticks(x0, x1):
        x = round(x) if whole else x
        parts.append(
            f'<text x="{px(x):.1f}" y="{top + plot_h + 14}" font-size="11" '
            f'text-anchor="middle">{x:.4g}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.0f}" y="{height - 18}" font-size="12" '
        f'text-anchor="middle">{escape(x_label)}</text>'
        f'<text x="12" y="{top + plot_h / 2:.0f}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + plot_h / 2:.0f})">{escape(y_label)}</text>'
    )
    legend_x = float(left)
    for i, (name, values) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in values)
        if len(values) == 1:
            x, y = values[0]
            parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>')
        elif values:
            parts.append(
                f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5"/>'
            )
        parts.append(
            f'<rect x="{legend_x:.0f}" y="{height - 10}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{legend_x + 14:.0f}" y="{height - 1}" font-size="12">{escape(name)}</text>'
        )
        legend_x += 24 + 7 * len(name)
    return "".join(parts) + "</svg>"


@dataclass(frozen=True)
class Interval:
    """One estimate in an interval chart: its group (a category), its series (a run), the
    value and its 95% interval."""

    group: str
    series: str
    value: float
    low: float
    high: float


def interval_chart_svg(title: str, points: Sequence[Interval]) -> str:
    """An inline SVG of estimates with their intervals: one line per group and series, a dot at
    the value and a whisker from low to high on a shared axis, one colour per series (so runs
    compare category by category)."""
    line_h, label_w, plot_w, top = 16, 200, 360, 24
    series = list(dict.fromkeys(p.series for p in points))
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(series)}
    low = min((min(p.low, p.value) for p in points), default=0.0)
    high = max((max(p.high, p.value) for p in points), default=1.0)
    if high <= low:
        low, high = low - 0.5, high + 0.5

    def px(x: float) -> float:
        return label_w + (x - low) / (high - low) * plot_w

    height = top + len(points) * line_h + 40
    width = label_w + plot_w + 90
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="14" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    axis_y = top + len(points) * line_h + 4
    for x in _ticks(low, high):  # the grid first, under the whiskers
        parts.append(
            f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{top}" y2="{axis_y}" stroke="#eee"/>'
            f'<text x="{px(x):.1f}" y="{axis_y + 12}" font-size="11" '
            f'text-anchor="middle">{x:.3g}</text>'
        )
    last_group = None
    for i, p in enumerate(points):
        y = top + i * line_h + line_h / 2
        colour = colours[p.series]
        if p.group != last_group:
            label = escape(p.group[:30])
            parts.append(f'<text x="0" y="{y + 4:.1f}" font-size="12">{label}</text>')
            last_group = p.group
        parts.append(
            f'<line x1="{px(p.low):.1f}" x2="{px(p.high):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{colour}" stroke-width="2"/>'
            f'<circle cx="{px(p.value):.1f}" cy="{y:.1f}" r="3.5" fill="{colour}">'
            f"<title>{escape(p.series)}: {p.value:.4g} [{p.low:.4g}, {p.high:.4g}]</title></circle>"
            f'<text x="{label_w + plot_w + 6}" y="{y + 4:.1f}" font-size="11">{p.value:.3g}</text>'
        )
    x = 0.0
    for name in series:
        parts.append(
            f'<rect x="{x:.0f}" y="{height - 10}" width="10" height="10" fill="{colours[name]}"/>'
            f'<text x="{x + 14:.0f}" y="{height - 1}" font-size="12">{escape(name)}</text>'
        )
        x += 24 + 7 * len(name)
    return "".join(parts) + "</svg>"
