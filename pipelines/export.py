"""`iptkit export RUN`: a run's instruction records as a chat dataset, with its dataset card.

The records leaving a run (RUN/output) become one row each, in one of three layouts:

- `messages`: the layout of LMSYS-Chat-1M and of Ma et al.'s released lmsys-chat-1m-synth
  (`conversation_id`, `conversation` as a list of `{role, content}`, `language`), plus
  iptkit's provenance columns (`origin` of PLLuM's typology, `category`, `source`, `kind`,
  and `model`: what wrote the response, when a model did);
- `sharegpt`: `{id, conversations: [{from: system|human|gpt, value}]}`;
- `alpaca`: `{instruction, input, output}` (Taori et al.'s layout: one exchange, so a record
  with history or several pairs is skipped as `multi_turn`).

A record's conversation is its `meta.history` (the turns before it, from extract's `turns:
all`) followed by its pairs as user/assistant turns. Records of other kinds than `kinds`
(default: instruction; augmented and tuning records hold their context in their text, which is
no chat), and records without a pair, are skipped; the card counts every skip by reason, so
exported + skipped = the run's output records.

Files go to a folder (default RUN/export/FORMAT/): `data.jsonl` (UTF-8 JSON Lines) or
`data.parquet` (pyarrow, an explicit schema), and `README.md`, the dataset card: counts,
origins, languages, categories, kinds, sources, the spec hash and seed, the columns. Rows keep
the run's order (output parts in name order, each sorted by id), so the same run exports the
same bytes. Nothing is overwritten unless `--overwrite` is given, and nothing else in the
folder is touched.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iptkit.errors import IptkitError
from iptkit.files import atomic_write
from iptkit.rundir import RunDir
from iptkit.transforms.record import encode_line

FORMATS = ("messages", "sharegpt", "alpaca")
SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt"}


class ExportError(IptkitError):
    """The run cannot be exported as asked (no output, a file in the way); exit code 2."""

    exit_code = 2


def conversation(record: dict[str, Any]) -> list[dict[str, str]]:
    """A record's turns: its history, then each pair as a user and an assistant turn."""
    turns = [
        {"role": str(t.get("role", "")), "content": str(t.get("content", ""))}
        for t in (record.get("meta") or {}).get("history") or []
    ]
    for pair in record.get("pairs") or []:
        turns.append({"role": "user", "content": pair["instruction"]})
        turns.append({"role": "assistant", "content": pair["response"]})
    return turns


def response_model(record: dict[str, Any]) -> str | None:
    """What wrote the response, when a model did (respond's or synthesize's record of it)."""
    meta = record.get("meta") or {}
    for key in ("respond", "synth"):
        model = (meta.get(key) or {}).get("model")
        if model:
            return str(model)
    return None


def skip_reason(record: dict[str, Any], fmt: str, kinds: Iterable[str]) -> str | None:
    """Why a record is not exported, or None."""
    if record.get("kind") not in set(kinds):
        return f"kind_{record.get('kind')}"
    pairs = record.get("pairs") or []
    if not pairs or not any(p.get("response", "").strip() for p in pairs):
        return "no_response"
    if fmt == "alpaca" and (len(pairs) > 1 or (record.get("meta") or {}).get("history")):
        return "multi_turn"
    return None


def row(record: dict[str, Any], fmt: str) -> dict[str, Any]:
    """The record as one row of the format."""
    turns = conversation(record)
    if fmt == "messages":
        return {
            "conversation_id": record["id"],
            "conversation": turns,
            "language": record.get("lang"),
            "origin": record.get("origin"),
            "category": record.get("category"),
            "source": record.get("source"),
            "kind": record.get("kind"),
            "model": response_model(record),
        }
    if fmt == "sharegpt":
        return {
            "id": record["id"],
            "conversations": [
                {"from": SHAREGPT_ROLES.get(t["role"], t["role"]), "value": t["content"]}
                for t in turns
            ],
        }
    pair = record["pairs"][0]
    return {"instruction": pair["instruction"], "input": "", "output": pair["response"]}


def parquet_schema(fmt: str) -> Any:
    """The explicit Arrow schema of a format (no inference from the first rows)."""
    import pyarrow as pa

    string = pa.string()
    if fmt == "messages":
        turn = pa.struct([("role", string), ("content", string)])
        names = ("language", "origin", "category", "source", "kind", "model")
        return pa.schema(
            [("conversation_id", string), ("conversation", pa.list_(turn))]
            + [(name, string) for name in names]
        )
    if fmt == "sharegpt":
        turn = pa.struct([("from", string), ("value", string)])
        return pa.schema([("id", string), ("conversations", pa.list_(turn))])
    return pa.schema([("instruction", string), ("input", string), ("output", string)])


@dataclass
class Tally:
    """What the card counts."""

    exported: int = 0
    skipped: Counter = field(default_factory=Counter)
    origins: Counter = field(default_factory=Counter)
    languages: Counter = field(default_factory=Counter)
    categories: Counter = field(default_factory=Counter)
    kinds: Counter = field(default_factory=Counter)
    sources: Counter = field(default_factory=Counter)
    turns: int = 0

    def add(self, record: dict[str, Any], turns: int) -> None:
        self.exported += 1
        self.turns += turns
        self.origins[record.get("origin") or "unknown"] += 1
        self.languages[record.get("lang") or "unknown"] += 1
        self.categories[record.get("category") or "none"] += 1
        self.kinds[record.get("kind") or "unknown"] += 1
        self.sources[record.get("source") or "unknown"] += 1


def output_records(run: RunDir) -> Iterator[dict[str, Any]]:
    """The run's output records, part by part in name order (each part sorted by id)."""
    folder = Path(run.output_dir)
    parts = sorted(folder.glob("*.jsonl.gz")) if folder.is_dir() else []
    if not parts:
        raise ExportError(
            f"{folder}: no output records (RUN/output/*.jsonl.gz); run the spec first, with "
            "keep_records on"
        )
    for part in parts:
        with gzip.open(part, "rt", encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)


def card(run: RunDir, fmt: str, data_name: str, tally: Tally, stats: dict[str, Any]) -> str:
    """The dataset card (README.md): what the data is, how much, of which typology."""

    def table(title: str, counts: Counter) -> list[str]:
        lines = [f"### {title}", "", "| value | records | share |", "|---|---:|---:|"]
        total = sum(counts.values()) or 1
        for value, n in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0]))):
            lines.append(f"| {value} | {n} | {n / total:.1%} |")
        return [*lines, ""]

    languages = sorted(v for v in tally.languages if v != "unknown")
    columns = ", ".join(f"`{name}`" for name in parquet_schema(fmt).names)
    lines = [
        "---",
        "language:",
        *[f"- {lang}" for lang in languages],
        "task_categories:",
        "- text-generation",
        f"pretty_name: {Path(run.root).name} ({fmt})",
        "---",
        "",
        f"# {Path(run.root).name}: {fmt} export",
        "",
        f"Exported by `iptkit export` from the run `{run.root}` into `{data_name}`.",
        "",
        f"- spec hash: `{stats.get('spec_hash', 'unknown')}`, seed {stats.get('seed')}",
        f"- format: `{fmt}`; columns: {columns}",
        f"- records exported: {tally.exported} ({tally.turns} turns) of "
        f"{tally.exported + sum(tally.skipped.values())} output records",
        "",
        "## Skipped",
        "",
    ]
    if tally.skipped:
        lines += [f"- {reason}: {n}" for reason, n in sorted(tally.skipped.items())]
    else:
        lines.append("- none")
    lines += [
        "",
        "## Contents",
        "",
        "Origins follow PLLuM's typology: organic (written by people), converted (made by rules "
        "or templates from existing resources), synthetic (written by a model, or generated from "
        "unannotated text).",
        "",
        *table("Origins", tally.origins),
        *table("Languages", tally.languages),
        *table("Categories", tally.categories),
        *table("Kinds", tally.kinds),
        *table("Sources", tally.sources),
    ]
    return "\n".join(lines).rstrip() + "\n"


def export(
    run_dir: str, fmt: str, out: str | None = None, parquet: bool = False,
    kinds: Iterable[str] = ("instruction",), overwrite: bool = False,
) -> tuple[Path, Path, Tally]:  # fmt: skip
    """Export a run; returns the data file, the card and the counts."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    run = RunDir(run_dir)
    stats_path = Path(run.stats)
    if not stats_path.is_file():
        raise ExportError(f"{run_dir}: no stats.json; is this a finished iptkit run directory?")
    stats = json.loads(stats_path.read_text(encoding="utf-8"))
    folder = Path(out) if out else Path(run.path("export", fmt))
    data = folder / ("data.parquet" if parquet else "data.jsonl")
    readme = folder / "README.md"
    for path in (data, readme):
        if path.exists() and not overwrite:
            raise ExportError(f"{path} exists; pass --overwrite to replace it, or --out elsewhere")
    kinds = list(kinds)
    tally = Tally()
    rows = []
    for record in output_records(run):
        reason = skip_reason(record, fmt, kinds)
        if reason:
            tally.skipped[reason] += 1
            continue
        rows.append(row(record, fmt))
        tally.add(record, len(conversation(record)))
    atomic_write(data, parquet_bytes(rows, fmt) if parquet else b"".join(map(encode_line, rows)))
    atomic_write(readme, card(run, fmt, data.name, tally, stats))
    return data, readme, tally


def parquet_bytes(rows: list[dict[str, Any]], fmt: str) -> bytes:
    """The rows as one Parquet file (written in memory, then atomically to its path)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows, schema=parquet_schema(fmt))
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="the run directory")
    parser.add_argument("--format", choices=FORMATS, default="messages", help="row layout")
    parser.add_argument(
        "--out", help="folder for data.jsonl|data.parquet and README.md (default RUN/export/FORMAT)"
    )
    parser.add_argument("--parquet", action="store_true", help="write Parquet instead of JSONL")
    parser.add_argument("--kinds", nargs="+", default=["instruction"], help="record kinds exported")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an earlier export's files"
    )


def run_cli(args: argparse.Namespace) -> int:
    data, readme, tally = export(
        args.run, args.format, args.out, args.parquet, args.kinds, args.overwrite
    )
    skipped = sum(tally.skipped.values())
    print(f"iptkit: exported {tally.exported} records ({skipped} skipped) to {data}")
    print(f"dataset card: {readme}")
    return 0
