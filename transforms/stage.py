"""The Stage contract, written once: every stage is `Stage(config, context)`, registers itself,
and sends its decisions through one piece that keeps the counters, the stage time, the
exception policy and the tagged reject output.

A stage is a `beam.PTransform` over records that returns `{"kept", "rejects", "added"}`. Three
small bases cover the shapes stages take, each asking the subclass for its decision only, as
DataTrove's base filter asks for `filter(doc)`:

- `RecordStage`: one record at a time (`apply(record) -> Record | Drop | Expand`), or batches
  (`batch_size`, `apply_batch`) when the work is cheaper so (a model's predict).
- `GroupStage`: a keyed shuffle, then one decision per group (`group_key(record)`,
  `decide_group(key, records)`): dedup, caps, top-N.
- `ModelStage`: prompt -> RunInference -> parse (`request(record, tokenizer)`,
  `parse(record, generation)`), over the shared inference layer.

Stages whose graph is more than one of these (several model rounds, a mix plan, shards) write
`run(records)` themselves from the same pieces: `StageFn` for their DoFns, `ByGroup` for a
keyed decision, `Generate` for inference. Whatever the shape, a reject leaves through
`StageFn.emit`, so every reject carries the stage name and reason, every stage counts `in`,
`out`, `dropped.<reason>` and its own time (`process_us`) in Beam metrics, and an exception in
a stage's code is a reject with reason `exception` and its traceback (the run fails when such
rejects pass the spec's `max_exception_share`).

Registration follows NeMo Curator's stage metaclass and torchtitan's config-builds-component:
a class statement names the spec's stage name, its options model and a one-line summary,

    class Normalize(RecordStage, stage="normalize", config=NormalizeConfig, summary="..."):

and `stage_types()` finds every stage by importing the modules of `iptkit.transforms.stages`.
Adding a stage is one module there and one test.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
import traceback
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import apache_beam as beam
from apache_beam.metrics import Metrics

from iptkit.memory import fix_mmap_threshold
from iptkit.rundir import RunDir
from iptkit.transforms.record import Record, Reject, record_chars
from iptkit.transforms.stage_config import StageConfig

KEPT = "kept"
REJECTS = "rejects"
# A stage that turns one record into several also returns, under this key, one reason string
# per record it added, so the ledger can tell an announced expansion from invented records.
ADDED = "added"
EXCEPTION = "exception"
# The reason of a record refused by a stage's size bound (`max_record_chars`), before its work.
RECORD_TOO_LARGE = "record_too_large"
# A stage's input is its records, or a mapping of them under this key to named outputs of the
# stage before it (mix hands its report to pack).
RECORDS = "records"


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

    records: list[Any]
    reason: str

    def __post_init__(self) -> None:
        if not self.records:
            raise ValueError("Expand needs at least one record; use Drop to remove a record")


Decision = Any  # a record (Record or TokenizedDoc) | Drop | Expand


@dataclass(frozen=True)
class StageContext:
    """What a stage may know about its run besides its own options: its unique name in the
    run, the spec seed, the run directory (which owns where files go) and the spec hash."""

    name: str
    seed: int = 0
    run: RunDir = field(default_factory=lambda: RunDir(""))
    spec_hash: str = ""

    def file(self, filename: str) -> str:
        """Where this stage's side file `filename` goes: RUN/<stage>/<filename>."""
        return self.run.stage_file(self.name, filename)


def metrics_namespace(stage: str) -> str:
    """The Beam metrics namespace of a stage; the run summary reads timings back from it."""
    return f"iptkit.{stage}"


def reject(record: Any, stage: str, drop: Drop) -> Reject:
    """The reject for a record dropped by `stage`, keeping the whole record."""
    return Reject(
        id=record.id,
        source=record.source,
        stage=stage,
        reason=drop.reason,
        detail=drop.detail,
        record=(drop.record or record).rejected_view(),
    )


def exception_drop(exc: BaseException) -> Drop:
    """The reject reason for a record whose decision raised: the exception and the last frames
    of its traceback (the run shows the first of these when it fails on the ceiling)."""
    frames = "".join(traceback.format_tb(exc.__traceback__)[-3:])
    return Drop(EXCEPTION, f"{type(exc).__name__}: {exc}\n{frames}"[:4000])


# ---------------------------------------------------------------------------------------------
# The one piece every stage's work goes through


class StageFn(beam.DoFn):
    """Base of every DoFn that does a stage's work.

    `decide` applies the exception policy, `emit` turns decisions into the kept output, tagged
    rejects and announced additions with their counters, and `timed` adds the time spent to
    the stage's `process_us`. The stage itself is held (it pickles as plain data) and set up
    once per DoFn instance.
    """

    def __init__(self, stage: Stage):
        self.stage = stage
        ns = metrics_namespace(stage.name)
        self._ns = ns
        self._in = Metrics.counter(ns, "in")
        self._out = Metrics.counter(ns, "out")
        self._us = Metrics.counter(ns, "process_us")

    def setup(self) -> None:
        fix_mmap_threshold()
        self.stage.setup()

    def timed(self) -> _Timer:
        return _Timer(self._us)

    def decide(
        self, decide: Callable[[list[Any]], list[Decision]], items: list[Any], members: Any = None
    ) -> list[Decision]:
        """`decide(items)`, one decision per item. When it raises, a batch is retried one item at
        a time so that only the item that fails becomes a reject (reason `exception`).
        """
        try:
            results = decide(items)
            if len(results) != len(items):
                raise ValueError(f"{len(results)} decisions for {len(items)} records")
            return results
        except Exception as exc:  # noqa: BLE001 (a bad record must not stop the run: it becomes a reject)
            if len(items) == 1:
                return [exception_drop(exc)]
            return [self.decide(decide, [item])[0] for item in items]

    def emit(self, pairs: Iterable[tuple[Any, Decision]]) -> Iterator[Any]:
        """The outputs of `(record, decision)` pairs: kept records as the main output, rejects
        and additions tagged, each counted (kept ones once per call: a metric update per record
        costs a microsecond)."""
        decided = kept = 0
        for record, result in pairs:
            decided += 1
            if isinstance(result, Drop):
                Metrics.counter(self._ns, f"dropped.{result.reason}").inc()
                yield beam.pvalue.TaggedOutput(REJECTS, reject(record, self.stage.name, result))
            elif isinstance(result, Expand):
                kept += len(result.records)
                Metrics.counter(self._ns, f"added.{result.reason}").inc(len(result.records) - 1)
                for _ in result.records[1:]:
                    yield beam.pvalue.TaggedOutput(ADDED, result.reason)
                yield from result.records
            else:
                kept += 1
                yield result
        self._in.inc(decided)
        self._out.inc(kept)

    def count(self, name: str, n: int = 1) -> None:
        """A stage's own counter (pairs parsed, tokens generated), in its namespace."""
        Metrics.counter(self._ns, name).inc(n)


class _Timer:
    def __init__(self, counter: Any):
        self._counter = counter

    def __enter__(self) -> _Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._counter.inc(int((time.perf_counter() - self._start) * 1e6))


def outputs(
    pcoll: Any, fn: StageFn, label: str, *args: Any, tags: tuple[str, ...] = (), **kwargs: Any
) -> dict[str, Any]:
    """`pcoll | ParDo(fn)` split into the stage outputs `{kept, rejects, added}` and any other
    `tags` the DoFn yields (work handed to a later step of the stage). The kept output is typed
    `fn.stage.kept_type` when the stage sets one, so Beam encodes it with that type's coder."""
    all_tags = (REJECTS, ADDED, *tags)
    pardo = beam.ParDo(fn, *args, **kwargs)
    if fn.stage.kept_type is not None:
        pardo = pardo.with_output_types(fn.stage.kept_type)
    out = pcoll | label >> pardo.with_outputs(*all_tags, main=KEPT)
    return {KEPT: out[KEPT], **{tag: out[tag] for tag in all_tags}}


def merge(parts: list[dict[str, Any]], label: str, passed: Any = None) -> dict[str, Any]:
    """Several stage outputs as one (and records that `passed` the stage untouched)."""
    merged = {}
    for tag in (KEPT, REJECTS, ADDED):
        pcolls = [p[tag] for p in parts if tag in p]
        if tag == KEPT and passed is not None:
            pcolls.append(passed)
        if len(pcolls) == 1:
            merged[tag] = pcolls[0]
        elif pcolls:
            merged[tag] = tuple(pcolls) | f"{label} {tag}" >> beam.Flatten()
    for part in parts:  # a stage's own named outputs (mix's report) pass as they are
        merged.update({k: v for k, v in part.items() if k not in (KEPT, REJECTS, ADDED)})
    return merged


# ---------------------------------------------------------------------------------------------
# The stage base and its registry

_REGISTRY: dict[str, type[Stage]] = {}


class Stage(beam.PTransform):
    """A stage: `Stage(config, context)`, a PTransform from records to `{kept, rejects, added}`.

    The base applies the spec's `sources`/`kinds` selection (records it does not select pass
    through untouched) and calls `run(records)` on the others. `setup` is the per-worker hook
    (load a model, compile patterns), called once per DoFn instance. The context defaults to
    one named after the stage, so logic can be unit-tested without a run.
    """

    type_name: ClassVar[str] = ""
    config_class: ClassVar[type[StageConfig]] = StageConfig
    summary: ClassVar[str] = ""
    # Tail stages work on tokenized documents, after every record stage (pipelines/flow.py).
    tail: ClassVar[bool] = False
    # The type of what the stage keeps, where it is not a record: its kept output is typed so,
    # and Beam encodes it with the type's registered coder where it crosses the runner (left
    # untyped, Beam pickles it: a TokenizedDoc is then 4.3 KB instead of 2.9 KB, in every copy
    # a runner holds). Records stay untyped: pickle is as small as RecordCoder and faster.
    kept_type: ClassVar[type | None] = None

    def __init_subclass__(
        cls,
        stage: str | None = None,
        config: type[StageConfig] | None = None,
        summary: str = "",
        tail: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if stage is None:
            return
        if config is None or not summary:
            raise TypeError(f"stage {stage}: a registered stage names its config and summary")
        if stage in _REGISTRY and _REGISTRY[stage].__qualname__ != cls.__qualname__:
            raise TypeError(f"two stages named {stage}: {_REGISTRY[stage]} and {cls}")
        cls.type_name, cls.config_class, cls.summary, cls.tail = stage, config, summary, tail
        _REGISTRY[stage] = cls

    def __init__(self, config: StageConfig | None = None, context: StageContext | None = None):
        self.context = context or StageContext(self.type_name or type(self).__name__.lower())
        super().__init__(label=self.context.name)
        self.config = config if config is not None else self.config_class()

    @property
    def name(self) -> str:
        return self.context.name

    @property
    def seed(self) -> int:
        return self.context.seed

    def setup(self) -> None:  # noqa: B027 (optional hook: most stages need no set-up)
        """Per-worker set-up; called once per DoFn instance (keep it idempotent)."""

    def expand(self, inputs):
        # Unannotated: Beam reads a PTransform's return annotation as its output type hint,
        # and warns on every application that a dict of outputs is not one.
        upstream = {}
        if isinstance(inputs, dict):
            upstream = {k: v for k, v in inputs.items() if k != RECORDS}
            inputs = inputs[RECORDS]
        cfg = self.config
        if cfg.sources is None and cfg.kinds is None:
            return self._bounded(inputs, upstream)
        chosen, others = inputs | "Select" >> beam.Partition(
            lambda r, _: 0 if cfg.selects(r.source, r.kind) else 1, 2
        )
        return merge([self._bounded(chosen, upstream)], "Rejoin", passed=others)

    def _bounded(self, records: Any, upstream: dict[str, Any]) -> dict[str, Any]:
        """`run` over the records within the size bound; the others are `record_too_large`
        rejects of this stage. One check for every stage, so no stage's work (shingles,
        n-grams, tokens, turns) grows past what `max_record_chars` allows. Tail stages see
        tokenized documents, bounded by format."""
        if self.tail:
            return self.run(records, **upstream)
        gate = _SizeGateFn(self.name, self.config.max_record_chars)
        split = records | "Bound" >> beam.ParDo(gate).with_outputs(REJECTS, main=KEPT)
        return merge([self.run(split[KEPT], **upstream), {REJECTS: split[REJECTS]}], "Bounded")

    @abstractmethod
    def run(self, records: Any) -> dict[str, Any]:
        """The stage's graph over the records it selects. A tail stage may take named outputs
        of the stage before it as keyword arguments, and return named outputs of its own."""

    def files(self) -> dict[str, str]:
        """The side files this stage leaves in the run directory, by label (paths from its
        context); the runner indexes the ones that exist in stats.json."""
        return {}


class _SizeGateFn(beam.DoFn):
    """A stage's size bound: a plain DoFn (not a `StageFn`), so it loads none of the stage's
    models and leaves the stage's `in` and time counters to its work."""

    def __init__(self, stage: str, limit: int):
        self.stage, self.limit = stage, limit
        self._dropped = Metrics.counter(metrics_namespace(stage), f"dropped.{RECORD_TOO_LARGE}")

    def process(self, record) -> Iterator[Any]:
        size = record_chars(record, self.limit)
        if size <= self.limit:
            yield record
            return
        self._dropped.inc()
        detail = (
            f"more than {self.limit:,} characters (text, pairs and meta); the stage's "
            "max_record_chars bounds each record's work"
        )
        yield beam.pvalue.TaggedOutput(
            REJECTS, reject(record, self.stage, Drop(RECORD_TOO_LARGE, detail))
        )


def stage_types() -> dict[str, type[Stage]]:
    """Every stage a spec may name, by name, in the order of `iptkit.transforms.stages`'s
    modules (imported here, so each registers itself)."""
    from iptkit.transforms import stages

    for module in pkgutil.iter_modules(stages.__path__):
        importlib.import_module(f"{stages.__name__}.{module.name}")
    return dict(sorted(_REGISTRY.items(), key=lambda kv: _ORDER.get(kv[0], len(_ORDER))))


# The order `validate` lists stages in: the data flow of DESIGN.md (unlisted ones follow).
_ORDER = {
    name: i
    for i, name in enumerate(
        "normalize langid filters dedup_exact dedup_near extract categorize xcit decontaminate "
        "synthesize translate respond judge mix pack".split()
    )
}


# ---------------------------------------------------------------------------------------------
# Record stages


class RecordStage(Stage):
    """A stage decided one record at a time. Subclasses write `apply`.

    `apply` must not mutate its input (Beam may hand the same element to several consumers):
    return `dataclasses.replace(record, ...)` for a changed record. It may return an `Expand`
    when one record becomes several.

    A stage whose work is cheaper in batches sets `batch_size` and overrides `apply_batch`;
    records then reach it in fixed-size batches. A result must never depend on which other
    records share the batch.
    """

    batch_size: ClassVar[int] = 1

    @abstractmethod
    def apply(self, record: Any) -> Decision:
        """The stage's decision for one record."""

    def apply_batch(self, records: list[Any]) -> list[Decision]:
        """Decisions for a batch, in order; the default decides one record at a time."""
        return [self.apply(r) for r in records]

    def bind(self, **side_inputs: object) -> None:
        """Receives the stage's side inputs (`build_side_inputs()`) before each call."""
        raise TypeError(f"stage {self.name} takes no side inputs")

    def build_side_inputs(self, records: Any) -> dict[str, Any]:
        """Side inputs built from the stage's input (an index over the whole run), by name."""
        return {}

    def run(self, records: Any, **side: Any) -> dict[str, Any]:
        """The stage over `records`, with `side` inputs (default: `build_side_inputs(records)`)."""
        side = side or self.build_side_inputs(records)
        if self.batch_size > 1:
            size = self.batch_size
            # Fixed-size batches: Beam's adaptive sizing starts small and grows by timing, which
            # left a tokenizing stage with an average batch of 90 instead of its 256.
            records = records | "Batch" >> beam.BatchElements(
                min_batch_size=size, max_batch_size=size
            )
        return outputs(records, _RecordFn(self), "Apply", **side)


class _RecordFn(StageFn):
    # No hint on side_inputs: Beam would check one against the side-input values and fail.
    def process(self, element, **side_inputs):
        if side_inputs:
            self.stage.bind(**side_inputs)
        records = element if isinstance(element, list) else [element]
        with self.timed():
            results = self.decide(self.stage.apply_batch, records)
        yield from self.emit(zip(records, results, strict=True))


# ---------------------------------------------------------------------------------------------
# Group stages

GroupDecision = Iterator["Record | tuple[Record, Drop]"]


class ByGroup(beam.PTransform):
    """Key -> GroupByKey -> one decision per group, through the stage's `StageFn`.

    `decide(key, records)` reads the group (Beam's grouped values are re-iterable, so it may
    read them twice instead of copying) and yields each record kept, or `(record, Drop)`. When
    it raises, every record of the group is a reject with reason `exception`.
    """

    def __init__(
        self, stage: Stage, key: Callable[[Any], Any], decide: Callable[[Any, Any], GroupDecision]
    ):
        super().__init__()
        self._stage, self._key, self._decide = stage, key, decide

    def expand(self, records):
        fn = _GroupFn(self._stage, self._decide)
        keyed = records | "Key" >> beam.ParDo(_KeyFn(self._stage, self._key))
        return outputs(keyed | "Group" >> beam.GroupByKey(), fn, "Decide")


class _KeyFn(StageFn):
    def __init__(self, stage: Stage, key: Callable[[Any], Any]):
        super().__init__(stage)
        self._key = key

    def setup(self) -> None:  # the key needs no set-up; the deciding step does it
        pass

    def process(self, record: Any):
        with self.timed():
            key = self._key(record)
        yield key, record


class _GroupFn(StageFn):
    def __init__(self, stage: Stage, decide: Callable[[Any, Any], GroupDecision]):
        super().__init__(stage)
        self._decide = decide

    def process(self, item: tuple[Any, Iterable[Any]]):
        key, group = item
        with self.timed():
            try:
                pairs = [
                    (out[0], out[1]) if isinstance(out, tuple) else (out, out)
                    for out in self._decide(key, group)
                ]
            except Exception as exc:  # noqa: BLE001 (the group's records become rejects)
                drop = exception_drop(exc)
                pairs = [(record, drop) for record in group]
        yield from self.emit(pairs)


class GroupStage(Stage):
    """A stage decided per group of records sharing a key (a keyed shuffle). Subclasses write
    `group_key(record)` and `decide_group(key, records)`, which yields each record kept or
    `(record, Drop)`; memory is one group's, so a key must not gather a growing share of the
    corpus."""

    @abstractmethod
    def group_key(self, record: Any) -> Any:
        """The key whose records are decided together (with a deterministic coder)."""

    @abstractmethod
    def decide_group(self, key: Any, records: Iterable[Any]) -> GroupDecision:
        """Each record of the group kept, or paired with the reason it is dropped."""

    def run(self, records: Any) -> dict[str, Any]:
        return records | "By group" >> ByGroup(self, self.group_key, self.decide_group)


# ---------------------------------------------------------------------------------------------
# Model stages


class ModelStage(Stage):
    """prompt -> RunInference -> parse. Subclasses write `request(record, tokenizer)` (a
    `GenerationRequest`, or a `Drop` when the record cannot be asked) and `parse(record,
    generation)`; `wants(record)` says which records go to the model (the others pass through
    untouched). The config is an `InferenceOptions`: every model stage spells its model keys
    the same way and shares the inference layer's backends, batching and failure isolation.
    """

    def wants(self, record: Any) -> bool:
        return True

    @abstractmethod
    def request(self, record: Any, tokenizer: Any) -> Any:
        """The generation request for a record (GenerationRequest), or a Drop."""

    @abstractmethod
    def parse(self, record: Any, generation: Any) -> Decision:
        """The record with what the model wrote, or why it is dropped."""

    def model_spec(self) -> Any:
        return self.config.model_spec()

    def run(self, records: Any) -> dict[str, Any]:
        todo, others = records | "Wants" >> beam.Partition(
            lambda r, _: 0 if self.wants(r) else 1, 2
        )
        generated, asked = self.generate(todo, self.request, "")
        parsed = outputs(generated, ParseFn(self, self.parse), "Parse")
        return merge([asked, parsed], "Model", passed=others)

    def generate(
        self, items: Any, request: Callable[[Any, Any], Any], label: str, spec: Any = None,
        request_fn: type[RequestFn] | None = None, tags: tuple[str, ...] = (),
    ) -> tuple[Any, dict[str, Any]]:  # fmt: skip
        """`(item, Generation)` for each item `request` asks, and the outputs of the asking
        step (the items it dropped). Items are records, or a stage's own state for a record
        (with the record as `.record`); `spec` defaults to the stage's model. A stage whose
        items are parts of a record (translate's segments) passes its own `request_fn`, which
        hands a part that cannot be asked on under one of `tags` instead of rejecting it."""
        spec = spec or self.model_spec()
        fn = (request_fn or RequestFn)(self, spec, request)
        asked = outputs(items, fn, f"Prompts{label}", tags=tags)
        generated = asked.pop(KEPT) | f"Generate{label}" >> generation_step(self, spec)
        return generated, asked


def generation_step(stage: Stage, spec: Any) -> beam.PTransform:
    """`(key, request) -> (key, Generation)` for a model stage: the requests spread over workers,
    then RunInference reporting into the stage's metrics, behind the generation cache unless the
    stage's `cache` is false. A stage built outside a run (no run directory: a library call, a
    unit test) keeps answers only in a folder its `cache` names, never in the working
    directory."""
    from iptkit.transforms.inference.core import Generate

    where = stage.config.cache
    if where is True and not stage.context.run.root:
        where = False
    root = where if isinstance(where, str) else stage.context.run.cache_dir(stage.name)
    generate = Generate(
        spec, namespace=metrics_namespace(stage.name), cache=root if where else None
    )
    return _Spread(generate)


class _Spread(beam.PTransform):
    """A Reshuffle, then `inner`. Inference is a run's costliest step, and its requests come
    from wherever the step before left them (one file's records, one key's group), so they are
    spread over every worker before RunInference batches them. Nothing depends on the order:
    keys travel with their requests, and seeds come from ids."""

    def __init__(self, inner: beam.PTransform):
        super().__init__()
        self._inner = inner

    def expand(self, items):
        return items | "Spread" >> beam.Reshuffle() | "Generate" >> self._inner


class RequestFn(StageFn):
    """Builds each item's request with the model's tokenizer (loaded once per worker); a `Drop`
    instead of a request rejects the item's record."""

    def __init__(self, stage: Stage, spec: Any, request: Callable[[Any, Any], Any]):
        super().__init__(stage)
        self._spec, self._request = spec, request

    def setup(self) -> None:
        from iptkit.transforms.inference.core import spec_tokenizer

        super().setup()
        self._tokenizer = spec_tokenizer(self._spec)

    def asked(self, item: Any) -> Any:
        """The item's request, or the Drop saying why it cannot be asked."""
        with self.timed():
            (result,) = self.decide(
                lambda items: [self._request(items[0], self._tokenizer)], [item]
            )
        return result

    def process(self, item: Any):
        result = self.asked(item)
        if isinstance(result, Drop):
            yield from self.emit([(record_of(item), result)])
        else:
            yield item, result


class ParseFn(StageFn):
    """Turns each `(item, Generation)` into a decision on the item's record."""

    def __init__(self, stage: Stage, parse: Callable[[Any, Any], Decision]):
        super().__init__(stage)
        self._parse = parse

    def parsed(self, item: tuple[Any, Any]) -> Decision:
        key, generation = item
        with self.timed():
            (result,) = self.decide(lambda _: [self._parse(key, generation)], [key])
        return result

    def process(self, item: tuple[Any, Any]):
        yield from self.emit([(record_of(item[0]), self.parsed(item))])


def record_of(item: Any) -> Any:
    """The record an item of a model stage is about: the item itself, or its `.record`."""
    return getattr(item, "record", item)
