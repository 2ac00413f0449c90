"""The run report's data sections: the ledger, instruction synthesis, the mix and the shards.

Each is a pure function from the parsed JSON a run leaves (stats.json and timings.json, a mix
stage's report.json, the shard manifests) to one HTML `<section>`; the caller decides whether
the input exists and says "not in this run" otherwise (run_report.py).
"""

from __future__ import annotations

from html import escape
from typing import Any

from iptkit.eval.html_parts import Bar, hbar_chart_svg, html_table

KEPT, DROPPED, ACHIEVED = "#6a9", "#c33", "#4a7bd0"


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{r} {n:,}" for r, n in sorted(counts.items(), key=lambda x: (-x[1], x[0])))


def ledger_section(stats: dict[str, Any], timings: dict[str, Any] | None = None) -> str:
    """Where the data went: per stage in, out, dropped by reason and added, as a table and a
    chart of kept vs dropped; then read, rejected at read, output records and wall time."""
    seconds = (timings or {}).get("stage_seconds", {})
    rows, bars = [], []
    for name, row in stats["stages"].items():
        dropped, added = sum(row["dropped"].values()), sum(row.get("added", {}).values())
        rows.append(
            [
                name,
                row["in"],
                row["out"],
                dropped,
                added,
                _reasons(row["dropped"]) or "-",
                _reasons(row.get("added", {})) or "-",
                seconds.get(name),
            ]
        )
        # kept + dropped = in + added: a stage that adds records shows a longer bar
        note = f"{row['out']:,} kept, {dropped:,} dropped" + (f", {added:,} added" if added else "")
        bars.append(Bar(name, ((row["out"], KEPT, "kept"), (dropped, DROPPED, "dropped")), note))
    facts = [
        ["records read", stats.get("read")],
        ["rejected at read", stats.get("rejected_at_read")],
        ["output records", stats.get("output_records")],
        ["spec hash", stats.get("spec_hash")],
        ["seed", None if stats.get("seed") is None else str(stats["seed"])],
    ]
    if timings and "wall_seconds" in timings:
        facts.append(["wall time (s)", float(timings["wall_seconds"])])
    problems = stats.get("violations") or []
    balance = (
        "<p>The ledger balances for every stage (in + added = out + dropped).</p>"
        if not problems
        else '<p class="flag">The ledger does not balance:</p>'
        + html_table(["violation"], [[p] for p in problems])
    )
    return (
        '<section id="ledger"><h2>Ledger: where the data went</h2>'
        + html_table(["run", ""], [f for f in facts if f[1] is not None])
        + balance
        + html_table(
            ["stage", "in", "out", "dropped", "added", "dropped by reason", "added by", "time (s)"],
            rows,
        )
        + f'<div class="chart">{hbar_chart_svg("Records kept and dropped per stage", bars)}</div>'
        + model_calls_table(stats)
        + "</section>"
    )


MODEL_COLUMNS = (
    ("cache_hits", "from the cache"), ("prompts", "prompts"), ("failed", "failed"),
    ("prompt_tokens", "prompt tokens"), ("new_tokens", "new tokens"), ("http_requests", "HTTP requests"),
    ("http_retries", "retries"), ("server_restarts", "server restarts"),
)  # fmt: skip


def model_calls_table(stats: dict[str, Any]) -> str:
    """What each model stage asked of its model (Beam counters the runner copies into
    stats.json): answers the cache had, prompts, tokens, and for servers the HTTP requests, retries and restarts."""
    rows = [
        [name, *(row["model"].get(key, 0) for key, _ in MODEL_COLUMNS)]
        for name, row in stats["stages"].items()
        if row.get("model")
    ]
    if not rows:
        return ""
    return "<h3>Model calls</h3>" + html_table(
        ["stage", *(label for _, label in MODEL_COLUMNS)], rows
    )


def mix_section(reports: dict[str, dict[str, Any]]) -> str:
    """Requested vs achieved share per group, one chart and table per mix stage (a run may mix
    more than once); tokens available and taken, repeats and any shortfall."""
    parts = ['<section id="mix"><h2>Mix: requested vs achieved</h2>']
    for stage, report in reports.items():
        groups = report.get("groups", {})
        bars = []
        for group, row in groups.items():
            bars.append(
                Bar(
                    f"{group} requested",
                    ((row["requested_share"], "#bbb", "requested"),),
                    note=f"{row['requested_share']:.1%}",
                )
            )
            bars.append(
                Bar(
                    f"{group} achieved",
                    ((row["achieved_share"], ACHIEVED, "achieved"),),
                    note=f"{row['achieved_share']:.1%}",
                )
            )
        shortfall = report.get("shortfall_tokens") or {}
        parts.append(
            f"<h3>Stage <code>{escape(stage)}</code></h3>"
            + html_table(
                [
                    "requested total tokens",
                    "target total tokens",
                    "taken total tokens",
                    "largest share error",
                    "on infeasible",
                ],
                [
                    [
                        report.get("requested_total_tokens"),
                        report.get("target_total_tokens"),
                        report.get("taken_total_tokens"),
                        report.get("max_share_error"),
                        report.get("on_infeasible"),
                    ]
                ],
            )
            + html_table(
                [
                    "group",
                    "requested share",
                    "achieved share",
                    "available tokens",
                    "taken tokens",
                    "repeats",
                    "max repeat",
                    "documents available",
                    "documents taken",
                    "copies",
                ],
                [
                    [
                        group,
                        row["requested_share"],
                        row["achieved_share"],
                        row.get("available_tokens"),
                        row.get("taken_tokens"),
                        row.get("repeats"),
                        row.get("max_repeat"),
                        row.get("available_documents"),
                        row.get("taken_documents"),
                        row.get("copies"),
                    ]
                    for group, row in groups.items()
                ],
            )
            + (
                '<p class="flag">Shortfall (tokens asked for but not available under '
                f"max_repeat): {escape(_reasons(shortfall))}</p>"
                if shortfall
                else ""
            )
            + f'<div class="chart">{hbar_chart_svg("Share of tokens per group", bars, 1.0)}</div>'
        )
    return "".join(parts) + "</section>"


def synthesis_section(reports: dict[str, dict[str, Any]]) -> str:
    """Per synthesize stage (RUN/STAGE/pairs.json): pairs per raw text and tokens per pair beside
    Cheng et al.'s figures (about 5 and 52), and the layouts the augmented texts drew."""
    parts = ['<section id="synthesis"><h2>Instruction synthesis: pairs per text</h2>']
    for stage, report in reports.items():
        paper = report.get("paper", {})
        parts.append(
            f"<h3>Stage <code>{escape(stage)}</code></h3>"
            + html_table(
                ["measure", "this run", "Cheng et al. 2024 (3.1)"],
                [
                    ["augmented records", report.get("augmented_records"), ""],
                    ["raw texts in them", report.get("raw_texts"), ""],
                    ["pairs", report.get("pairs"), ""],
                    [
                        "pairs per raw text",
                        report.get("pairs_per_text"),
                        paper.get("pairs_per_text"),
                    ],
                    [
                        "tokens per pair",
                        report.get("tokens_per_pair"),
                        paper.get("tokens_per_pair"),
                    ],
                    ["characters per pair", report.get("chars_per_pair"), ""],
                ],
            )
            + html_table(
                ["layout", "augmented records"],
                [[k, v] for k, v in (report.get("layouts") or {}).items()]
                + [["(pairs before the text)", report.get("question_first")]],
            )
        )
    return "".join(parts) + "</section>"


def shards_section(manifests: dict[str, dict[str, Any]]) -> str:
    """One row per shard folder (RUN/shards/[STAGE/]SPLIT/manifest.json): sizes, sequence
    length, dtype, tokenizer and how full the packed sequences are."""
    rows = []
    for folder, m in manifests.items():
        totals = m.get("totals", {})
        capacity = totals.get("sequences", 0) * m.get("seq_len", 0)
        rows.append(
            [
                folder,
                len(m.get("shards", [])),
                totals.get("sequences"),
                totals.get("tokens"),
                totals.get("documents"),
                m.get("seq_len"),
                m.get("dtype"),
                m.get("vocab_size"),
                m.get("has_loss_mask"),
                totals.get("tokens", 0) / capacity if capacity else None,
                m.get("tokenizer", {}).get("path"),
            ]
        )
    return (
        '<section id="shards"><h2>Shards</h2>'
        + html_table(
            [
                "folder",
                "shards",
                "sequences",
                "tokens",
                "documents",
                "seq_len",
                "dtype",
                "vocab size",
                "loss mask",
                "tokens / capacity",
                "tokenizer",
            ],
            rows,
        )
        + "</section>"
    )
