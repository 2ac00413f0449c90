"""The run's flow, planned in one place: record stages, then the tail.

A spec lists stages in order. Record stages (everything but the tail) work on records; RUN/output
keeps what leaves the last of them. When the spec names tail stages (`Stage.tail`: mix, then
pack), the records are first formatted and tokenized (ledger row `format`, configured by pack,
which names the tokenizer), then the tail stages run on the tokenized documents. The spec
validator, the builder, the ledger and `iptkit validate` all read this one plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from iptkit.transforms.reading.sources import READ_STAGE
from iptkit.transforms.stage import stage_types
from iptkit.transforms.stage_config import StageConfig

FORMAT_STAGE = "format"

Path = tuple[Any, ...]


@dataclass(frozen=True)
class StagePlan:
    """A stage as it will run: its unique name in the run, its type, its options, and its
    position in the spec's `stages` list (for messages)."""

    name: str
    type: str
    config: StageConfig
    index: int


@dataclass(frozen=True)
class Flow:
    """The stages split into record stages and tail stages, in flow order."""

    records: tuple[StagePlan, ...]
    tail: tuple[StagePlan, ...]

    @property
    def last_record_stage(self) -> str:
        """The stage whose records RUN/output keeps: the last one before the tail."""
        return self.records[-1].name if self.records else READ_STAGE

    @property
    def format_config(self) -> StageConfig | None:
        """The options the format step runs with (the last tail stage's: pack's), if any."""
        return self.tail[-1].config if self.tail else None

    @property
    def ledger_stages(self) -> list[str]:
        """The ledger's rows after `read`, in flow order."""
        names = [s.name for s in self.records]
        if self.tail:
            names += [FORMAT_STAGE, *(s.name for s in self.tail)]
        return names


def tail_order() -> list[str]:
    """The tail stages in the order a spec must name them (registry order: mix, pack)."""
    return [name for name, cls in stage_types().items() if cls.tail]


def plan_flow(stages: list[StagePlan]) -> tuple[Flow, list[tuple[Path, str]]]:
    """The flow of `stages`, and the problems that keep it from being one (at a YAML path).

    Tail stages come after every record stage, once each, in `tail_order()`; the last of them
    (pack, which names the tokenizer) ends the list when any is named.
    """
    types = stage_types()
    order = tail_order()
    problems: list[tuple[Path, str]] = []
    seen: list[str] = []
    for stage in stages:
        loc: Path = ("stages", stage.index, stage.type)
        if types[stage.type].tail:
            if seen and order.index(stage.type) <= order.index(seen[-1]):
                problems.append(
                    (loc, f"{stage.type} must come once, in the order {' then '.join(order)}")
                )
            seen.append(stage.type)
        elif seen:
            problems.append(
                (loc, f"record stage {stage.type} after {seen[-1]}: {' and '.join(order)} "
                 "come after all record stages")
            )  # fmt: skip
    if seen and seen[-1] != order[-1]:
        stage = next(s for s in stages if s.type == seen[-1])
        problems.append(
            (("stages", stage.index, stage.type),
             f"{stage.type} needs a {order[-1]} stage after it ({order[-1]} names the tokenizer)")
        )  # fmt: skip
    flow = Flow(
        records=tuple(s for s in stages if not types[s.type].tail),
        tail=tuple(s for s in stages if types[s.type].tail),
    )
    return flow, problems
