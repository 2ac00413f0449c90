"""The stage contract, written once: a per-record decision plus the reject and counter plumbing.

Like DataTrove's base filter, a stage subclass writes only its decision, `apply(record)`, which
returns the (possibly changed) record or a `Drop` with a reason. `ApplyStage` turns that into a
`beam.PTransform` whose output is `{"kept": records, "rejects": rejects}`; rejects carry the
stage name and reason, and counters (`in`, `out`, `dropped.<reason>`, `process_us`) go through
`beam.metrics.Metrics`, so they show on every runner. Per-worker set-up (loading a model) goes in
`setup`, which maps onto `DoFn.setup`, as in NeMo Curator's stage contract.
"""

from __future__ import annotations

import time
import traceback
from abc import ABC, abstractmethod
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics import Metrics

from iptkit.transforms.record import Record, Reject

KEPT = "kept"
REJECTS = "rejects"
# A stage that turns one record into several also returns, under this key, one reason string
# per record it added, so the ledger can tell an announced expansion from invented records.
ADDED = "added"


@dataclass(frozen=True)
class Drop:
    """The decision to take a record out of the flow, with a short reason and a detail."""

    reason: str
    detail: str = ""
    # The record as the stage leaves it, when it differs from its input (evidence in `meta`):
    # the reject then keeps what the stage found, as DataTrove's decontamination filter does.
    record: Record | None = None


@dataclass(frozen=True)
class Expand:
    """The decision to replace a record by several (a conversation's user turns, a translation
    next to its source). All but one are counted as `added` by `reason` in the ledger, which
    then checks `in + added == out + dropped`; an empty list is not allowed (that is a `Drop`).
    """

    records: list[Record]
    reason: str

    def __post_init__(self) -> None:
        if not self.records:
            raise ValueError("Expand needs at least one record; use Drop to remove a record")


class RecordStage(ABC):
    """A stage decided one record at a time. Subclasses set `name` and write `apply`.

    `apply` must not mutate its input (Beam may hand the same element to several consumers):
    return `dataclasses.replace(record, ...)` for a changed record.

    `apply` may also return an `Expand` when one record becomes several.

    A stage whose work is cheaper in batches (a model's predict) sets `batch_size` and overrides
    `apply_batch`; records then reach it through `beam.BatchElements`. A result must never
    depend on which other records share the batch.
    """

    name: str = "stage"
    batch_size: int = 1

    def setup(self) -> None:  # noqa: B027 (optional hook: most stages need no set-up)
        """Per-worker set-up (load a model, compile patterns); called once per DoFn instance."""

    @abstractmethod
    def apply(self, record: Record) -> Record | Drop | Expand:
        """The stage's decision for one record."""

    def apply_batch(self, records: list[Record]) -> list[Record | Drop | Expand]:
        """Decisions for a batch, in order; the default decides one record at a time."""
        return [self.apply(r) for r in records]

    def bind(self, **side_inputs: object) -> None:
        """Receives the side inputs given to `ApplyStage` before each call (e.g. an index built
        once for the whole run); stages without side inputs never see this."""
        raise TypeError(f"stage {self.name} takes no side inputs")


def metrics_namespace(stage: str) -> str:
    """The Beam metrics namespace of a stage; the run summary reads timings back from it."""
    return f"iptkit.{stage}"


def _exception_drop(exc: Exception) -> Drop:
    last = traceback.extract_tb(exc.__traceback__)[-1]
    return Drop("exception", f"{type(exc).__name__}: {exc} (at {last.filename}:{last.lineno})")


class _ApplyStageFn(beam.DoFn):
    """Runs a stage over single records, or over batches when the stage is batched."""

    def __init__(self, stage: RecordStage):
        self._stage = stage
        ns = metrics_namespace(stage.name)
        self._in = Metrics.counter(ns, "in")
        self._out = Metrics.counter(ns, "out")
        self._us = Metrics.counter(ns, "process_us")
        self._ns = ns

    def setup(self) -> None:
        self._stage.setup()

    def _decide(self, records: list[Record]) -> list[Record | Drop | Expand]:
        try:
            results = self._stage.apply_batch(records)
            if len(results) != len(records):
                raise ValueError(f"apply_batch gave {len(results)} results for {len(records)}")
            return results
        except Exception as exc:  # noqa: BLE001 (a bad record must not stop the run: it becomes a reject)
            if len(records) == 1:
                return [_exception_drop(exc)]
            # Retry one by one, so only the record that fails becomes a reject.
            return [self._decide([r])[0] for r in records]

    # No hint on side_inputs: Beam would check one against the side-input values and fail.
    def process(self, element: Record | list[Record], **side_inputs):
        if side_inputs:
            self._stage.bind(**side_inputs)
        records = element if isinstance(element, list) else [element]
        self._in.inc(len(records))
        start = time.perf_counter()
        results = self._decide(records)
        self._us.inc(int((time.perf_counter() - start) * 1e6))
        kept = 0  # counted once per batch: a metric update per record costs a microsecond
        for record, result in zip(records, results, strict=True):
            if isinstance(result, Drop):
                Metrics.counter(self._ns, f"dropped.{result.reason}").inc()
                yield beam.pvalue.TaggedOutput(REJECTS, reject(record, self._stage.name, result))
            elif isinstance(result, Expand):
                kept += len(result.records)
                Metrics.counter(self._ns, f"added.{result.reason}").inc(len(result.records) - 1)
                for _ in result.records[1:]:
                    yield beam.pvalue.TaggedOutput(ADDED, result.reason)
                yield from result.records
            else:
                kept += 1
                yield result
        self._out.inc(kept)


def reject(record: Record, stage: str, drop: Drop) -> Reject:
    """The reject for a record dropped by `stage`, keeping the whole record."""
    return Reject(
        id=record.id,
        source=record.source,
        stage=stage,
        reason=drop.reason,
        detail=drop.detail,
        record=(drop.record or record).to_dict(),
    )


class ApplyStage(beam.PTransform):
    """Runs a `RecordStage` over records; returns `{"kept": ..., "rejects": ..., "added": ...}`.

    `side_inputs` (name to a `beam.pvalue.AsSingleton`...) reach the stage through `bind`.
    """

    def __init__(self, stage: RecordStage, side_inputs: dict[str, object] | None = None):
        super().__init__(label=stage.name)
        self._stage = stage
        self._side_inputs = side_inputs or {}

    def expand(self, records):
        if self._stage.batch_size > 1:
            size = self._stage.batch_size
            # Fixed-size batches: Beam's adaptive sizing starts small and grows by timing, which
            # left a tokenizing stage with an average batch of 90 instead of its 256.
            records = records | "Batch" >> beam.BatchElements(
                min_batch_size=size, max_batch_size=size
            )
        outputs = records | beam.ParDo(
            _ApplyStageFn(self._stage), **self._side_inputs
        ).with_outputs(REJECTS, ADDED, main=KEPT)
        return {KEPT: outputs[KEPT], REJECTS: outputs[REJECTS], ADDED: outputs[ADDED]}
