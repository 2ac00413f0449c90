"""Spec -> Beam graph: read, each named stage in flow order, rejects, kept data, output, ledger."""

from __future__ import annotations

from functools import partial

import apache_beam as beam

from iptkit.pipelines.flow import FORMAT_STAGE, StagePlan
from iptkit.pipelines.ledger import (
    CountAs,
    CountEvents,
    CountRejects,
    WriteLedger,
    added_key,
    out_key,
)
from iptkit.pipelines.sinks import WriteJsonlShards
from iptkit.pipelines.spec import Plan
from iptkit.rundir import RunDir
from iptkit.transforms.reading.read import ReadSources
from iptkit.transforms.reading.sources import READ_STAGE
from iptkit.transforms.stage import (
    ADDED,
    KEPT,
    RECORDS,
    REJECTS,
    Stage,
    StageContext,
    stage_types,
)
from iptkit.transforms.stages.pack import FormatTokenize


def _count_stage(name: str, result: dict, events: list, rejects: list) -> None:
    """Ledger events of one stage: its kept output, its rejects, its announced additions."""
    events.append(result[KEPT] | f"Count {name}" >> CountAs(out_key(name)))
    rejects.append((name, result[REJECTS]))
    if ADDED in result:
        events.append(
            result[ADDED] | f"Count added {name}" >> CountEvents(partial(added_key, name))
        )


def make_stage(stage: StagePlan, plan: Plan, run: RunDir) -> Stage:
    """The stage object of one planned stage: `Stage(config, context)`, carrying its
    `resources` as Beam resource hints (Beam hands a composite's hints to every transform
    inside it, so a runner that honours them places the whole stage)."""
    context = StageContext(stage.name, plan.spec.seed, run, plan.spec_hash)
    built = stage_types()[stage.type](stage.config, context)
    if stage.config.resources is not None:
        built.with_resource_hints(**stage.config.resources.hints())
    return built


def build(pipeline: beam.Pipeline, plan: Plan, run: RunDir) -> list[Stage]:
    """Add the whole run to `pipeline`, in the flow `plan.flow` gives; return the stages built
    (in ledger order), so the runner can index the files they leave.

    Record stages first; RUN/output keeps the records that leave the last of them. A flow with
    a tail then formats and tokenizes those records (ledger row `format`) and runs the tail
    stages on the tokenized documents; a tail stage may hand named outputs (mix's report) to
    the next one.
    """
    spec, flow = plan.spec, plan.flow
    files = [f for source in spec.sources for f in plan.files[source.name]]
    read = pipeline | READ_STAGE >> ReadSources(spec.sources, files)
    records = read[KEPT]
    events = [records | f"Count {READ_STAGE}" >> CountAs(out_key(READ_STAGE))]
    rejects = [(READ_STAGE, read[REJECTS])]
    built: list[Stage] = []
    for planned in flow.records:
        stage = make_stage(planned, plan, run)
        built.append(stage)
        result = records | stage.name >> stage
        records = result[KEPT]
        _count_stage(stage.name, result, events, rejects)
        if planned.config.save:
            records | f"Save {stage.name}" >> WriteJsonlShards(
                run.data_dir(stage.name), spec.output_shards, True, spec.output_shard_bytes
            )
    if spec.keep_records:
        records | "Output" >> WriteJsonlShards(
            run.output_dir, spec.output_shards, True, spec.output_shard_bytes
        )
    if flow.tail:
        context = StageContext(FORMAT_STAGE, spec.seed, run, plan.spec_hash)
        formatter = FormatTokenize(flow.format_config, context)
        built.append(formatter)
        result = records | FORMAT_STAGE >> formatter
        _count_stage(FORMAT_STAGE, result, events, rejects)
        docs, handed = result[KEPT], {}
        for planned in flow.tail:
            stage = make_stage(planned, plan, run)
            built.append(stage)
            inputs = {RECORDS: docs, **handed} if handed else docs
            result = inputs | stage.name >> stage
            docs = result[KEPT]
            handed = {k: v for k, v in result.items() if k not in (KEPT, REJECTS, ADDED)}
            _count_stage(stage.name, result, events, rejects)
    for name, stage_rejects in rejects:
        stage_rejects | f"Rejects {name}" >> WriteJsonlShards(
            run.rejects_dir(name), spec.output_shards, False, spec.output_shard_bytes
        )
        events.append(stage_rejects | f"Count rejects {name}" >> CountRejects())
    events | "Ledger events" >> beam.Flatten() | "Ledger" >> WriteLedger(run.ledger_counts)
    return built
