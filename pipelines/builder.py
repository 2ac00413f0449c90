"""Spec -> Beam graph: read, each named stage in order, rejects, kept data, output, ledger."""

from __future__ import annotations

import apache_beam as beam

from iptkit.pipelines.ledger import CountAs, CountRejects, WriteLedger, added_key, out_key
from iptkit.pipelines.registry import STAGES, StageContext
from iptkit.pipelines.rundir import RunDir
from iptkit.pipelines.sinks import WriteJsonlShards
from iptkit.pipelines.spec import Plan
from iptkit.transforms.reading.read import ReadSources
from iptkit.transforms.reading.sources import READ_STAGE
from iptkit.transforms.stage import ADDED, KEPT, REJECTS, ApplyStage
from iptkit.transforms.stage_config import StageConfig
from iptkit.transforms.stages.mix import REPORT
from iptkit.transforms.stages.pack import FORMAT_STAGE, FormatTokenize


class _Selected(beam.PTransform):
    """Applies a stage to the records its `sources`/`kinds` select; the rest pass through."""

    def __init__(self, config: StageConfig, transform: beam.PTransform):
        super().__init__()
        self._config = config
        self._transform = transform

    def expand(self, records):
        cfg = self._config
        if cfg.sources is None and cfg.kinds is None:
            return records | self._transform
        chosen, others = records | "Select" >> beam.Partition(
            lambda r, _: 0 if cfg.selects(r.source, r.kind) else 1, 2
        )
        result = chosen | self._transform
        kept = (result[KEPT], others) | "Rejoin" >> beam.Flatten()
        return {**result, KEPT: kept}


def _count_stage(name: str, result: dict, events: list, rejects: list) -> None:
    """Ledger events of one stage: its kept output, its rejects, its announced additions."""
    events.append(result[KEPT] | f"Count {name}" >> CountAs(out_key(name)))
    rejects.append((name, result[REJECTS]))
    if ADDED in result:
        events.append(
            result[ADDED]
            | f"Count added {name}" >> beam.Map(lambda r, n=name: (added_key(n, r), 1))
        )


def build(pipeline: beam.Pipeline, plan: Plan, run: RunDir) -> None:
    """Add the whole run to `pipeline`: only the stages the spec names, in its order.

    Record stages first; RUN/output keeps the records that leave the last of them. A spec
    ending in pack then formats and tokenizes those records (ledger row `format`) and runs
    the tail stages (mix, pack) on the tokenized documents.
    """
    spec = plan.spec
    files = [f for source in spec.sources for f in plan.files[source.name]]
    read = pipeline | READ_STAGE >> ReadSources(spec.sources, files)
    records = read[KEPT]
    events = [records | f"Count {READ_STAGE}" >> CountAs(out_key(READ_STAGE))]
    rejects = [(READ_STAGE, read[REJECTS])]
    record_stages = [s for s in plan.stages if not STAGES[s.type].tail]
    tail_stages = [s for s in plan.stages if STAGES[s.type].tail]
    for stage in record_stages:
        context = StageContext(name=stage.name, seed=spec.seed, run_dir=run.root)
        transform = STAGES[stage.type].build(stage.config, context)
        result = records | stage.name >> _Selected(stage.config, transform)
        records = result[KEPT]
        _count_stage(stage.name, result, events, rejects)
        if stage.config.save:
            records | f"Save {stage.name}" >> WriteJsonlShards(
                run.data_dir(stage.name), spec.output_shards, compress=True
            )
    if spec.keep_records:
        records | "Output" >> WriteJsonlShards(run.output_dir, spec.output_shards, compress=True)
    if tail_stages:
        pack_config = tail_stages[-1].config
        result = records | FORMAT_STAGE >> ApplyStage(FormatTokenize(pack_config))
        _count_stage(FORMAT_STAGE, result, events, rejects)
        docs, report = result[KEPT], None
        for stage in tail_stages:
            context = StageContext(
                name=stage.name, seed=spec.seed, run_dir=run.root, spec_hash=plan.spec_hash
            )
            transform = STAGES[stage.type].build(stage.config, context)
            if stage is tail_stages[-1]:
                inputs = {"docs": docs} | ({"report": report} if report is not None else {})
                result = inputs | stage.name >> transform
            else:
                result = docs | stage.name >> _Selected(stage.config, transform)
                report = result.get(REPORT, report)
            docs = result[KEPT]
            _count_stage(stage.name, result, events, rejects)
    for name, stage_rejects in rejects:
        stage_rejects | f"Rejects {name}" >> WriteJsonlShards(
            run.rejects_dir(name), spec.output_shards, compress=False
        )
        events.append(stage_rejects | f"Count rejects {name}" >> CountRejects())
    events | "Ledger events" >> beam.Flatten() | "Ledger" >> WriteLedger(run.ledger_counts)
