"""Reports written from a finished run directory; `iptkit run` writes them at the end and
`iptkit report RUN` writes them again from what the run left (and from the trainer and eval
runs it is told about, or finds under RUN/train/ and RUN/eval/)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from apache_beam.io.filesystems import FileSystems

from iptkit.errors import IptkitError
from iptkit.eval.contamination_report import combine, render_html, render_markdown
from iptkit.eval.run_report import RunReportInputs, render_run_report
from iptkit.files import atomic_write, read_bytes
from iptkit.rundir import RunDir

# Labels of the side files stages declare (`Stage.files()`), as stats.json's index keeps them.
CONTAMINATION, MIX_REPORT, MANIFEST = "contamination", "mix_report", "manifest:"
SYNTH_PAIRS = "synth_pairs"


def stats_of(run: RunDir) -> dict[str, Any] | None:
    """The run's stats.json (its ledger and file index), or None for an unfinished run."""
    return _read_json(run.stats) if FileSystems.exists(run.stats) else None


def write_contamination_report(run: RunDir, stats: dict[str, Any] | None) -> list[str]:
    """RUN/contamination/report.{json,md,html} from every decontaminate stage's summary that
    stats.json indexes, in flow order; nothing (an empty list) when there is none."""
    report = contamination_data(run, stats)
    if report is None:
        return []
    outputs = {
        "report.json": json.dumps(report, indent=2, ensure_ascii=False) + "\n",
        "report.md": render_markdown(report),
        "report.html": render_html(report),
    }
    written = []
    for name, text in outputs.items():
        path = run.path("contamination", name)
        atomic_write(path, text.encode("utf-8"))
        written.append(path)
    return written


def contamination_data(run: RunDir, stats: dict[str, Any] | None) -> dict[str, Any] | None:
    """The contamination report's data (`combine` of the decontaminate stages' summaries, in
    flow order); None when the run had no decontaminate stage."""
    paths = run.indexed(stats, CONTAMINATION)
    return combine([_read_json(p) for p in paths.values()]) if paths else None


# --------------------------------------------------------------------------------------------
# The one-page run report

REPORT_NAME = "report.html"
TRAIN_DIR, EVAL_DIR = "train", "eval"
METRICS_FILE, SUMMARY_FILE = "metrics.jsonl", "summary.json"
EVAL_FORMAT = "iptkit-eval-summary/1"


def _match(pattern: str) -> list[str]:
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def _read_json(path: str) -> Any:
    try:
        return json.loads(read_bytes(path))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IptkitError(f"{path}: not JSON ({exc}); rerun what wrote it") from None


def _relative(path: str, root: str) -> str:
    return path[len(root) :].strip("/") if path.startswith(root) else path


def _read_metrics(path: str) -> list[dict[str, Any]]:
    """A trainer's metrics.jsonl: a line per step (with `loss`) or per evaluation (with
    `val_loss`); a bad line is an error naming it."""
    steps = []
    for number, line in enumerate(read_bytes(path).decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise IptkitError(f"{path}:{number}: not JSON ({exc})") from None
        if (
            not isinstance(record, dict)
            or "step" not in record
            or not ("loss" in record or "val_loss" in record)
        ):
            raise IptkitError(
                f"{path}:{number}: a metrics line needs `step` and `loss` or `val_loss`"
            )
        steps.append(record)
    return steps


def mix_reports(run: RunDir, stats: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Each mix stage's report, by stage name, as stats.json indexes them."""
    return {stage: _read_json(p) for stage, p in run.indexed(stats, MIX_REPORT).items()}


def synthesis_reports(run: RunDir, stats: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Each synthesize stage's pairs.json (pairs per text, tokens per pair), by stage name."""
    return {stage: _read_json(p) for stage, p in run.indexed(stats, SYNTH_PAIRS).items()}


def shard_manifests(run: RunDir, stats: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Every split's manifest.json by its folder under RUN/shards/, as stats.json indexes them."""
    found = {}
    for files in (stats or {}).get("files", {}).values():
        for label, rel in files.items():
            if label.startswith(MANIFEST):
                found[label[len(MANIFEST) :]] = _read_json(run.path(*rel.split("/")))
    return dict(sorted(found.items()))


def _tool_outputs(run: RunDir, dirs: Sequence[str], folder: str, file: str, hint: str) -> list[str]:
    """`file` of each output dir named (each must have it), then of RUN/folder/ and
    RUN/folder/*/: where the trainer and `iptkit eval` leave their runs, found by place (they
    are separate tools, not stages, so stats.json does not index them)."""
    paths = [FileSystems.join(d, file) for d in dirs]
    for path in paths:
        if not FileSystems.exists(path):
            raise IptkitError(f"{path} does not exist: {hint}")
    return paths + _match(run.path(folder, file)) + _match(run.path(folder, "*", file))


def training_runs(run: RunDir, dirs: Sequence[str] = ()) -> dict[str, list[dict[str, Any]]]:
    """metrics.jsonl of each trainer run dir named, then of RUN/train/ and RUN/train/*/."""
    paths = _tool_outputs(run, dirs, TRAIN_DIR, METRICS_FILE, "--train takes a trainer's run_dir")
    return {_run_name(p, run, METRICS_FILE): _read_metrics(p) for p in paths}


def eval_summaries(run: RunDir, dirs: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """summary.json of each `iptkit eval` output dir named, then of RUN/eval/ and RUN/eval/*/."""
    paths = _tool_outputs(
        run, dirs, EVAL_DIR, SUMMARY_FILE, "--eval takes an `iptkit eval` output dir"
    )
    found = {}
    for path in paths:
        data = _read_json(path)
        if not isinstance(data, dict) or data.get("format") != EVAL_FORMAT:
            raise IptkitError(f"{path}: not an iptkit eval summary (format {EVAL_FORMAT})")
        found[_run_name(path, run, SUMMARY_FILE)] = data
    return found


def _run_name(path: str, run: RunDir, file: str) -> str:
    """A trainer or eval run's name in the report: its folder, relative to RUN when inside."""
    folder = path[: -len(file)].rstrip("/")
    return _relative(folder, run.root) or folder


def run_report_inputs(
    run: RunDir,
    stats: dict[str, Any] | None = None,
    train: Sequence[str] = (),
    evals: Sequence[str] = (),
) -> RunReportInputs:
    """What the run left (stats from the argument when the run has not written it yet)."""
    if stats is None:
        stats = stats_of(run)
    return RunReportInputs(
        run=run.root,
        stats=stats,
        timings=_read_json(run.timings) if FileSystems.exists(run.timings) else None,
        mix=mix_reports(run, stats),
        synthesis=synthesis_reports(run, stats),
        shards=shard_manifests(run, stats),
        contamination=contamination_data(run, stats),
        training=training_runs(run, train),
        evals=eval_summaries(run, evals),
    )


def write_run_report(run: RunDir, inputs: RunReportInputs) -> str:
    """RUN/report.html, written whole or not at all; returns its path."""
    path = run.path(REPORT_NAME)
    atomic_write(path, render_run_report(inputs).encode("utf-8"))
    return path
