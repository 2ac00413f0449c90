"""Runs a plan: prepares RUN, runs the Beam pipeline, writes the ledger and prints the summary.

Beam options come from the spec's `pipeline_options` and then the command line (which wins);
anything Beam accepts passes through, so the same spec runs on the DirectRunner, the
PortableRunner, Flink or Dataflow.
"""

from __future__ import annotations

import gc
import json
import time
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from iptkit.errors import ExceptionCeilingError, IptkitError, LedgerError
from iptkit.files import atomic_write, read_bytes
from iptkit.pipelines.builder import build
from iptkit.pipelines.ledger import assemble, over_exception_ceiling, summary_table, violations
from iptkit.pipelines.reports import (
    run_report_inputs,
    write_contamination_report,
    write_run_report,
)
from iptkit.pipelines.spec import Plan
from iptkit.rundir import RunDir
from iptkit.transforms.inference.core import MODEL_COUNTER_PREFIX
from iptkit.transforms.stage import EXCEPTION, metrics_namespace

# RunInference's batch latency, reported in the model stage's namespace (inference/core.py).
INFERENCE_LATENCY = "inference_batch_latency_micro_secs"


def option_flags(options: dict[str, Any]) -> list[str]:
    """The spec's `pipeline_options` as Beam command-line flags."""
    flags = []
    for key, value in options.items():
        if value is True:
            flags.append(f"--{key}")
        elif value is not False and value is not None:
            flags.append(f"--{key}={value}")
    return flags


@dataclass
class RunResult:
    stats: dict[str, Any]
    seconds: dict[str, float]
    wall_seconds: float


def _stage_seconds(
    result: beam.runners.runner.PipelineResult, stages: list[str]
) -> dict[str, float]:
    """Time spent in each stage, summed over workers, where the runner reports it: its own code
    (`process_us`) and, for model stages, its batches' inference (RunInference's latency)."""
    try:
        metrics = result.metrics().query()
    except (NotImplementedError, AttributeError, KeyError):
        return {}
    namespaces = {metrics_namespace(stage): stage for stage in stages}
    seconds: dict[str, float] = {}
    for kind, name in (("counters", "process_us"), ("distributions", INFERENCE_LATENCY)):
        for metric in metrics.get(kind, []):
            stage = namespaces.get(metric.key.metric.namespace)
            if stage is None or not metric.key.metric.name.endswith(name):
                continue
            value = metric.committed if metric.committed is not None else metric.attempted
            micros = getattr(value, "sum", value) or 0
            seconds[stage] = seconds.get(stage, 0.0) + micros / 1e6
    return seconds


def _model_counts(
    result: beam.runners.runner.PipelineResult, stages: list[str]
) -> dict[str, dict[str, int]]:
    """Each model stage's model counters (`model.<name>` in its namespace: prompts, tokens,
    HTTP requests, retries, server restarts), summed over workers, where the runner reports
    them."""
    try:
        metrics = result.metrics().query()
    except (NotImplementedError, AttributeError, KeyError):
        return {}
    namespaces = {metrics_namespace(stage): stage for stage in stages}
    counts: dict[str, dict[str, int]] = {}
    for metric in metrics.get("counters", []):
        stage = namespaces.get(metric.key.metric.namespace)
        name = metric.key.metric.name
        if stage is None or not name.startswith(MODEL_COUNTER_PREFIX):
            continue
        value = metric.committed if metric.committed is not None else metric.attempted
        row = counts.setdefault(stage, {})
        key = name[len(MODEL_COUNTER_PREFIX) :]
        row[key] = row.get(key, 0) + int(value or 0)
    return {stage: dict(sorted(row.items())) for stage, row in counts.items()}


def execute(plan: Plan, beam_args: list[str]) -> RunResult:
    """Run the plan into its output directory; raise `LedgerError` if any stage lost records."""
    run = RunDir(plan.output)
    run.prepare()
    atomic_write(run.spec_resolved, plan.resolved_yaml().encode("utf-8"))
    options = PipelineOptions(option_flags(plan.spec.pipeline_options) + list(beam_args))
    started = time.perf_counter()
    pipeline = beam.Pipeline(options=options)
    stages = build(pipeline, plan, run)
    # The objects alive now (modules, Beam, the graph) live as long as the run: frozen, the
    # garbage collector stops re-scanning them on every full collection while an in-process
    # runner allocates millions of records (half the collector's time in a pack run).
    gc.freeze()
    try:
        result = pipeline.run()
        state = result.wait_until_finish()
    finally:
        gc.unfreeze()
    wall = time.perf_counter() - started
    if state != beam.runners.runner.PipelineState.DONE:
        raise IptkitError(f"the pipeline ended in state {state}; {run.root} is incomplete")
    stage_names = plan.flow.ledger_stages
    counts = json.loads(read_bytes(run.ledger_counts))
    stats = assemble(stage_names, counts, plan.spec.keep_records, plan.flow.last_record_stage)
    stats.update(spec_hash=plan.spec_hash, seed=plan.spec.seed)
    problems = violations(stats)
    stats["violations"] = problems
    over = over_exception_ceiling(stats, plan.spec.max_exception_share)
    stats["exception_ceiling"] = list(over.values())
    stats["files"] = run.index({stage.name: stage.files() for stage in stages})
    for stage, model_counts in _model_counts(result, stage_names).items():
        stats["stages"][stage]["model"] = model_counts
    seconds = _stage_seconds(result, ["read", *stage_names])
    timings = {"wall_seconds": round(wall, 3), "stage_seconds": seconds}
    atomic_write(run.timings, json.dumps(timings, indent=2, sort_keys=True).encode() + b"\n")
    write_contamination_report(run, stats)
    write_run_report(run, run_report_inputs(run, stats))
    atomic_write(run.stats, json.dumps(stats, indent=2, ensure_ascii=False).encode() + b"\n")
    outcome = RunResult(stats, seconds, wall)
    if problems:
        raise LedgerError(
            "the ledger does not balance (a stage lost or invented records):\n  "
            + "\n  ".join(problems)
            + f"\n{summary_table(stats, seconds)}"
        )
    if over:
        raise ExceptionCeilingError(
            "stages raised exceptions on too much of their input (a bug, not bad records):\n  "
            + "\n  ".join(over.values())
            + "".join(_first_tracebacks(run, stage) for stage in over)
            + f"\n{summary_table(stats, seconds)}\nthe rejects are in {run.path('rejects')}; "
            "raise max_exception_share in the spec to accept this many"
        )
    return outcome


def _first_tracebacks(run: RunDir, stage: str, n: int = 3) -> str:
    """The first `n` exception rejects of a stage (by reject file order), as text."""
    shown = []
    for path in sorted(
        m.path for m in FileSystems.match([run.path("rejects", stage, "*")])[0].metadata_list
    ):
        for line in read_bytes(path).decode("utf-8", "replace").splitlines():
            row = json.loads(line)
            if row.get("reason") == EXCEPTION:
                shown.append(f"\n--- {stage}, record {row['id']}:\n{row['detail']}")
            if len(shown) == n:
                return "".join(shown)
    return "".join(shown)
