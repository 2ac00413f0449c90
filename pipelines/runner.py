"""Runs a plan: prepares RUN, runs the Beam pipeline, writes the ledger and prints the summary.

Beam options come from the spec's `pipeline_options` and then the command line (which wins);
anything Beam accepts passes through, so the same spec runs on the DirectRunner, the
PortableRunner, Flink or Dataflow.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from iptkit.errors import ExceptionCeilingError, IptkitError, LedgerError
from iptkit.files import atomic_write, read_bytes
from iptkit.memory import fix_mmap_threshold
from iptkit.pipelines.builder import build
from iptkit.pipelines.compile import (
    COMPILE_FLAGS,
    CompiledJob,
    accelerator_conflict,
    compile_pipeline,
)
from iptkit.pipelines.flow import FORMAT_STAGE
from iptkit.pipelines.ledger import assemble, over_exception_ceiling, summary_table, violations
from iptkit.pipelines.portable import (
    check_job_endpoint,
    job_wait_flags,
    quiet_message_deadline,
    wait_error,
)
from iptkit.pipelines.reports import (
    run_report_inputs,
    write_contamination_report,
    write_run_report,
)
from iptkit.pipelines.spec import Plan
from iptkit.rundir import RunDir
from iptkit.transforms.inference.cache import HITS, MISSES
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


def _stage_metrics(
    result: beam.runners.runner.PipelineResult, stages: list[str]
) -> tuple[dict[str, float], dict[str, dict[str, int]]]:
    """What the runner reports per stage, summed over workers (where it reports metrics):

    - seconds: the stage's own code (`process_us`) and, for model stages, its batches'
      inference (RunInference's latency);
    - model stages' counters (`model.<name>` in their namespace: cache hits and misses,
      prompts, tokens, HTTP requests, retries, server restarts), for stats.json's `model` row.
    """
    try:
        metrics = result.metrics().query()
    except (NotImplementedError, AttributeError, KeyError):
        return {}, {}
    namespaces = {metrics_namespace(stage): stage for stage in stages}
    seconds: dict[str, float] = {}
    counts: dict[str, dict[str, int]] = {}
    for kind in ("counters", "distributions"):
        for metric in metrics.get(kind, []):
            stage = namespaces.get(metric.key.metric.namespace)
            if stage is None:
                continue
            name = metric.key.metric.name
            value = metric.committed if metric.committed is not None else metric.attempted
            if name == "process_us" or name.endswith(INFERENCE_LATENCY):
                micros = getattr(value, "sum", value) or 0
                seconds[stage] = seconds.get(stage, 0.0) + micros / 1e6
            elif kind == "counters" and name.startswith(MODEL_COUNTER_PREFIX):
                row = counts.setdefault(stage, {})
                key = name[len(MODEL_COUNTER_PREFIX) :]
                row[key] = row.get(key, 0) + int(value or 0)
    for row in counts.values():  # with the cache on, both of its counts, even a zero
        if HITS in row or MISSES in row:
            row.setdefault(HITS, 0)
            row.setdefault(MISSES, 0)
    return seconds, {stage: dict(sorted(row.items())) for stage, row in counts.items()}


def _pipeline(plan: Plan, beam_args: list[str]) -> beam.Pipeline:
    """The Beam pipeline with the spec's options and the command line's (which win); a runner
    Beam does not know, or options the runner refuses with the spec's resource hints, are a
    clear error, raised before anything in RUN is touched."""
    flags = option_flags(plan.spec.pipeline_options) + list(beam_args)
    options = PipelineOptions(flags)
    options = PipelineOptions(flags + job_wait_flags(options, flags))
    hinted = [s.name for s in plan.stages if s.config.resources and s.config.resources.accelerator]
    conflict = accelerator_conflict(options, hinted)
    if conflict:
        raise IptkitError(f"pipeline options: {conflict}")
    try:
        return beam.Pipeline(options=options)
    except ValueError as exc:
        raise IptkitError(f"pipeline options: {exc}") from None


@contextlib.contextmanager
def _private_temp_dir() -> Iterator[None]:
    """Points the process's (and its workers') temporary folder at one of the run's own, removed
    afterwards, so Beam's `beam-temp*` folders never pile up in the system's temp directory."""
    folder = tempfile.mkdtemp(prefix="iptkit-run-")
    saved_env, saved_dir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = folder, folder
    try:
        yield
    finally:
        tempfile.tempdir = saved_dir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(folder, ignore_errors=True)


def compile_only(plan: Plan, beam_args: list[str]) -> CompiledJob:
    """The job the runner would be given (Dataflow: its dry run's job request), built exactly
    as `execute` builds it; RUN is not touched, nor anything run."""
    run = RunDir(plan.output)
    run.check_location()
    with _private_temp_dir():
        pipeline = _pipeline(plan, [*beam_args, *COMPILE_FLAGS])
        build(pipeline, plan, run)
        return compile_pipeline(pipeline, pipeline.options)


def execute(plan: Plan, beam_args: list[str], force: bool = False) -> RunResult:
    """Run the plan into its output directory; raise `LedgerError` if any stage lost records.

    The graph is built before RUN is prepared, so a bad option fails with RUN untouched.
    """
    run = RunDir(plan.output)
    run.check_location()
    with _private_temp_dir():
        started = time.perf_counter()
        pipeline = _pipeline(plan, beam_args)
        check_job_endpoint(pipeline.options)
        stages = build(pipeline, plan, run)
        run.prepare(plan.spec_hash, [*(s.name for s in plan.stages), FORMAT_STAGE], force)
        atomic_write(run.spec_resolved, plan.resolved_yaml().encode("utf-8"))
        # The objects alive now (modules, Beam, the graph) live as long as the run: frozen, the
        # garbage collector stops re-scanning them on every full collection while an in-process
        # runner allocates millions of records (half the collector's time in a pack run).
        gc.freeze()
        fix_mmap_threshold()  # an in-process runner's workers are this process
        try:
            with quiet_message_deadline():
                result = pipeline.run()
                state = result.wait_until_finish()
        except Exception as exc:
            error = wait_error(exc, pipeline.options)
            if error is None:
                raise
            raise error from None
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
    seconds, model_counts = _stage_metrics(result, ["read", *stage_names])
    for stage, row in model_counts.items():  # a counter never incremented is not reported
        stats["stages"][stage]["model"] = row
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
