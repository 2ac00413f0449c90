"""The ledger: where every record went, stage by stage, and the check that none was lost.

The counts come from the data, not from runner metrics: each stage's input, kept and rejected
PCollections are counted inside the pipeline (folded per bundle where they are made, then
combined, so it costs one small shuffle) and written to RUN/.ledger/counts.json. That holds on
every runner, retries included, where metric counters may be approximate. The driver then builds RUN/stats.json and checks, for every stage,
`in == out + sum(dropped)`. Timings do come from Beam metrics, as they are only informative.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import apache_beam as beam

from iptkit.files import atomic_write
from iptkit.transforms.bundle_fold import FoldBundles, Merged
from iptkit.transforms.reading.sources import READ_STAGE
from iptkit.transforms.record import Reject

SEP = "\t"


def out_key(stage: str) -> str:
    return f"{stage}{SEP}out"


def dropped_key(stage: str, reason: str) -> str:
    return f"{stage}{SEP}dropped{SEP}{reason}"


def added_key(stage: str, reason: str) -> str:
    return f"{stage}{SEP}added{SEP}{reason}"


def _by_reason(counts: dict[str, int], stage: str, what: str) -> dict[str, int]:
    prefix = f"{stage}{SEP}{what}{SEP}"
    return {k[len(prefix) :]: v for k, v in sorted(counts.items()) if k.startswith(prefix)}


class KeyCounts(beam.CombineFn):
    """How many elements had each `key(element)`, as a dict (the ledger's counts). Without a
    key it only merges counts (`Merged(KeyCounts())` in `WriteLedger`)."""

    def __init__(self, key: Callable[[Any], str] | None = None):
        super().__init__()
        self._key = key

    def create_accumulator(self) -> dict[str, int]:
        return {}

    def add_input(self, counts: dict[str, int], element: Any) -> dict[str, int]:
        key = self._key(element)  # type: ignore[misc]
        counts[key] = counts.get(key, 0) + 1
        return counts

    def merge_accumulators(self, accumulators: Iterable[dict[str, int]]) -> dict[str, int]:
        merged: dict[str, int] = {}
        for counts in accumulators:
            for key, n in counts.items():
                merged[key] = merged.get(key, 0) + n
        return merged

    def extract_output(self, counts: dict[str, int]) -> dict[str, int]:
        return dict(sorted(counts.items()))


class CountEvents(beam.PTransform):
    """The ledger's counts of a PCollection by `key(element)`, folded per bundle where the
    elements are made (`FoldBundles`): every stage's counts meet in the ledger's Flatten, which
    Beam's in-memory runner holds whole, so one event per record per stage grew with the corpus."""

    def __init__(self, key: Callable[[Any], str]):
        super().__init__()
        self._key = key

    def expand(self, pcoll):
        return pcoll | FoldBundles(KeyCounts(self._key))


class CountAs(CountEvents):
    """Every element under one key (a stage's kept records)."""

    def __init__(self, key: str):
        super().__init__(lambda _: key)


def _reject_key(reject: Reject) -> str:
    return dropped_key(reject.stage, reject.reason)


class CountRejects(CountEvents):
    """Rejects by stage and reason."""

    def __init__(self):
        super().__init__(_reject_key)


class WriteLedger(beam.PTransform):
    """Sums the counts of every `CountEvents` and writes them, as one JSON object, to `path`."""

    def __init__(self, path: str):
        super().__init__()
        self._path = path

    def expand(self, events):
        path = self._path

        def write(counts: dict[str, int]) -> None:
            atomic_write(path, json.dumps(counts, sort_keys=True).encode("utf-8"))

        return (
            events | "Sum" >> beam.CombineGlobally(Merged(KeyCounts())) | "Write" >> beam.Map(write)
        )


def assemble(
    stage_names: list[str],
    counts: dict[str, int],
    keep_records: bool,
    output_after: str | None = None,
) -> dict[str, Any]:
    """stats.json from the summed events.

    `read`'s `in` is what the reader found (lines, rows, paragraphs), each of which became a
    record or a read reject. A stage's `in` is the count of the PCollection it consumed, which is
    the previous stage's kept output, counted once. `output_after` names the stage whose
    records RUN/output holds (the last record stage, before mix and pack); default the last.
    """
    stages: dict[str, dict[str, Any]] = {}
    previous_out = 0
    for name in [READ_STAGE, *stage_names]:
        dropped = _by_reason(counts, name, "dropped")
        added = _by_reason(counts, name, "added")
        out = counts.get(out_key(name), 0)
        seen = out + sum(dropped.values()) if name == READ_STAGE else previous_out
        stages[name] = {"in": seen, "out": out, "dropped": dropped}
        if added:
            stages[name]["added"] = added
        previous_out = out
    read = stages[READ_STAGE]
    return {
        "read": read["in"],
        "rejected_at_read": sum(read["dropped"].values()),
        "stages": stages,
        "output_records": (
            stages[output_after or [READ_STAGE, *stage_names][-1]]["out"] if keep_records else None
        ),
    }


def violations(stats: dict[str, Any]) -> list[str]:
    """Every stage where records appeared or vanished unannounced: a stage may add records only
    by saying so (`added` by reason), so the check is `in + sum(added) == out + sum(dropped)`."""
    problems = []
    for name, row in stats["stages"].items():
        dropped = sum(row["dropped"].values())
        added = sum(row.get("added", {}).values())
        if row["in"] + added != row["out"] + dropped:
            plus = f" + added {added}" if added else ""
            problems.append(
                f"stage {name}: in {row['in']}{plus} != out {row['out']} + dropped {dropped}"
            )
    return problems


def over_exception_ceiling(stats: dict[str, Any], share: float) -> dict[str, str]:
    """Stages whose `exception` rejects pass `share` of their input, each with a line saying
    by how much (a stage that raised on 1 of 3 records fails a 1% ceiling)."""
    over = {}
    for name, row in stats["stages"].items():
        raised = row["dropped"].get("exception", 0)
        if raised and raised > share * row["in"]:
            over[name] = (
                f"stage {name}: {raised} of {row['in']} records raised an exception "
                f"({raised / max(row['in'], 1):.1%} > max_exception_share {share:g})"
            )
    return over


def summary_table(stats: dict[str, Any], seconds: dict[str, float]) -> str:
    """The table printed at the end of a run: per stage in, out, dropped (and added) by reason,
    time."""
    rows = [("stage", "in", "out", "dropped", "time s", "dropped by reason")]
    for name, row in stats["stages"].items():
        reasons = ", ".join(
            [f"{r} {n}" for r, n in sorted(row["dropped"].items(), key=lambda x: -x[1])]
            + [f"added by {r} {n}" for r, n in sorted(row.get("added", {}).items())]
        )
        secs = seconds.get(name)
        rows.append(
            (
                name,
                str(row["in"]),
                str(row["out"]),
                str(sum(row["dropped"].values())),
                "-" if secs is None else f"{secs:.2f}",
                reasons or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]

    def line(r: Iterable[str]) -> str:
        cells = list(r)
        left = [cells[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(cells[1:5], widths[1:], strict=True)
        ]
        return "  ".join(left + [cells[5]])

    lines = [line(r) for r in rows]
    for name, row in stats["stages"].items():
        counts = row.get("model", {})
        if "cache_misses" in counts:  # a model stage: what it asked the model, what the cache had
            lines.append(
                f"{name}: {counts.get('cache_misses', 0)} generated, "
                f"{counts.get('cache_hits', 0)} from the cache"
            )
    return "\n".join(lines)
