"""mix: sample tokenized documents to a target size and token ratios over groups.

Groups are nested over the GROUP_FIELDS (e.g. kind, then lang within kind), as Kodama & Oda's
study varies raw vs instruction data, language and category shares; Cheng et al. repeat the
synthesizer tuning data 4 times throughout pre-training, hence `repeats` (a group taken exactly
N times, outside the ratios, which split what it leaves) and `max_repeat` (a cap on how often
the ratios may reuse a document).

How the documents go through (Beam transforms; only per-group numbers reach one worker):
1. Count tokens per group (a combine).
2. Solve (`mix_solver.solve_mix`): per group a token target, split into whole repeats and a
   remainder; an infeasible request fails here, before anything is written, with the numbers.
3. Cutoff per group: the (hash, id) of the last document the remainder takes, documents ordered
   by the seeded blake2b hash of their id. Token totals per range of that order (a combine) say
   which range the remainder ends in; only that range's documents meet on one worker (see
   `_Cutoffs`), so memory does not grow with the largest group.
4. Select: each document is emitted `copies` times (copy = 0, 1, ...; extra copies are ledger
   `added` with reason `repeat`), or becomes a `not_sampled` reject (`not_in_mix` when its group
   is not named in the ratios).
5. Report: RUN/STAGE/report.json, requested vs achieved share and tokens per group.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Literal

import apache_beam as beam
from pydantic import Field, field_validator, model_validator

from iptkit.files import atomic_write
from iptkit.hashing import seeded_int
from iptkit.transforms.document import GROUP_FIELDS, TokenizedDoc
from iptkit.transforms.record import KINDS, ORIGINS
from iptkit.transforms.stage import KEPT, Drop, Expand, Stage, StageFn, outputs
from iptkit.transforms.stage_config import StageConfig
from iptkit.transforms.tail.mix_solver import (
    GROUP_SEP,
    UNSET,
    MixPlan,
    copies,
    flatten_ratios,
    group_of,
    hash_range,
    range_total,
    remainder_boundary,
    remainder_cutoff,
    solve_mix,
)

REPORT_NAME = "report.json"
# The output holding the report dict, one element: pack may take it as a side input for the
# manifest's `mix` (see `manifest_mix`).
REPORT = "report"
NOT_SAMPLED = "not_sampled"
NOT_IN_MIX = "not_in_mix"
REPEAT = "repeat"
SUM_TOLERANCE = 1e-6
_KNOWN_VALUES = {"kind": KINDS, "origin": ORIGINS}


def _check_tree(node: Any, group_by: list[str], depth: int, path: str) -> None:
    """Ratios nest no deeper than group_by, values are non-negative numbers, and kind/origin keys
    are ones iptkit knows (so a typo is a spec error, not an empty group at run time)."""
    if depth >= len(group_by):
        raise ValueError(
            f"ratios{path}: nested deeper than group_by {group_by} (one level per field)"
        )
    if not isinstance(node, dict) or not node:
        raise ValueError(f"ratios{path}: expected a mapping of {group_by[depth]} values to shares")
    field = group_by[depth]
    for key, value in node.items():
        where = f"{path}.{key}"
        if field in _KNOWN_VALUES and key not in _KNOWN_VALUES[field]:
            raise ValueError(
                f"ratios{where}: unknown {field} {key!r}; {field}s are {', '.join(_KNOWN_VALUES[field])}"
            )
        if isinstance(value, dict):
            _check_tree(value, group_by, depth + 1, where)
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(
                f"ratios{where}: expected a share (a number) or a mapping, got {value!r}"
            )
        elif not math.isfinite(value) or value < 0:
            raise ValueError(f"ratios{where}: share {value} is not a finite, non-negative number")


class MixConfig(StageConfig):
    """Options of the mix stage."""

    total_tokens: int | Literal["all"] = Field(
        "all",
        description='tokens in the mix (repeats included), or "all": the largest total that '
        "keeps the ratios with every group's documents used at most max_repeat times",
    )
    group_by: list[str] = Field(
        default_factory=lambda: ["kind"],
        description=f"fields that define the groups, outermost first (of {', '.join(GROUP_FIELDS)}); "
        "a single field may be given as a string",
    )
    ratios: dict[str, Any] = Field(
        default_factory=dict,
        description="token share per group, nested like group_by (e.g. {raw: 0.6, augmented: "
        "{en: 0.15, ja: 0.15}, instruction: 0.1}); leaf shares sum to 1; unset values are "
        "grouped under `null`; documents of groups named neither here nor in repeats are left "
        "out (not_in_mix). With repeats, the shares split what the repeats groups leave",
    )
    repeats: dict[str, int] = Field(
        default_factory=dict,
        description="groups taken a whole number of times, outside the ratios, by group path "
        '("tuning", "augmented/ja"): every document of the group exactly N times (Cheng et al. '
        "2024, 3.2: the synthesizer's tuning data repeats 4 times throughout pre-training: "
        "{tuning: 4}); a group named here takes no share",
    )
    max_repeat: float = Field(
        1.0,
        gt=0,
        description="most times the ratios may use a document (a cap; for a group taken an "
        "exact number of times use repeats); fractional values take part of the documents "
        "once more",
    )
    max_repeat_by_group: dict[str, float] = Field(
        default_factory=dict,
        description='max_repeat for some groups, by group path or prefix ("tuning", "augmented/ja")',
    )
    on_infeasible: Literal["fail", "scale_down", "best_effort"] = Field(
        "fail",
        description="when total_tokens needs more data than max_repeat allows: fail (with the "
        "numbers), scale_down (largest total keeping the ratios), best_effort (take what exists "
        "per group; the report shows the shortfall)",
    )

    @field_validator("group_by", mode="before")
    @classmethod
    def _one_field(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("total_tokens")
    @classmethod
    def _positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value <= 0:
            raise ValueError(f'total_tokens must be positive or "all", got {value}')
        return value

    @model_validator(mode="after")
    def _check(self) -> MixConfig:
        unknown = [f for f in self.group_by if f not in GROUP_FIELDS]
        if unknown or not self.group_by or len(set(self.group_by)) != len(self.group_by):
            raise ValueError(
                f"group_by {self.group_by}: each field once, of {', '.join(GROUP_FIELDS)}"
            )
        if not self.ratios and not self.repeats:
            raise ValueError("mix needs ratios, repeats or both (what to take from each group)")
        if self.ratios:
            _check_tree(self.ratios, self.group_by, 0, "")
        self._check_repeats()
        shares = self.shares
        total = sum(shares.values())
        if shares and abs(total - 1) > SUM_TOLERANCE:
            listed = " + ".join(f"{g} {s:g}" for g, s in shares.items())
            raise ValueError(f"ratios sum to {total:.6g} ({listed}), not 1")
        for key, value in self.max_repeat_by_group.items():
            if value <= 0:
                raise ValueError(f"max_repeat_by_group.{key}: {value} must be positive")
            if not any(g == key or g.startswith(key + GROUP_SEP) for g in shares):
                raise ValueError(
                    f"max_repeat_by_group.{key}: no such group; groups are {', '.join(shares)}"
                )
        return self

    def _check_repeats(self) -> None:
        """Each repeats key is a group path of at most len(group_by) known values, a whole
        number of at least 1, and no ratios group lies inside it or contains it."""
        for key, n in self.repeats.items():
            parts = key.split(GROUP_SEP)
            if not key or len(parts) > len(self.group_by):
                raise ValueError(
                    f"repeats.{key}: a group path of at most {len(self.group_by)} values "
                    f"({GROUP_SEP.join(self.group_by)})"
                )
            for field, value in zip(self.group_by, parts, strict=False):
                known = _KNOWN_VALUES.get(field)
                if known is not None and value not in known:
                    raise ValueError(
                        f"repeats.{key}: unknown {field} {value!r}; {field}s are {', '.join(known)}"
                    )
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"repeats.{key}: {n!r} is not a whole number of passes >= 1")
            for group in flatten_ratios(self.ratios):
                if (
                    group == key
                    or group.startswith(key + GROUP_SEP)
                    or key.startswith(group + GROUP_SEP)
                ):
                    raise ValueError(
                        f"repeats.{key} overlaps ratios group {group}: a group is taken either "
                        "by a share or a whole number of times, not both"
                    )

    @property
    def shares(self) -> dict[str, float]:
        return flatten_ratios(self.ratios)

    def repeat_limit(self, group: str) -> float:
        """max_repeat of a group: the longest matching max_repeat_by_group key, else max_repeat."""
        best = None
        for key in self.max_repeat_by_group:
            if (group == key or group.startswith(key + GROUP_SEP)) and (
                best is None or len(key) > len(best)
            ):
                best = key
        return self.max_repeat if best is None else self.max_repeat_by_group[best]

    def group(self, doc: TokenizedDoc) -> str | None:
        """The repeats group the document's values fall in (the shortest path named), else its
        ratios leaf, else None (not in the mix)."""
        values = {f: doc.group_value(f) for f in self.group_by}
        if self.repeats:
            path = [UNSET if values[f] is None else str(values[f]) for f in self.group_by]
            for depth in range(1, len(path) + 1):
                prefix = GROUP_SEP.join(path[:depth])
                if prefix in self.repeats:
                    return prefix
        return group_of(values, self.group_by, self.ratios) if self.ratios else None

    def solve(self, available: dict[str, int]) -> MixPlan:
        shares = self.shares
        return solve_mix(
            available,
            shares,
            self.total_tokens,
            {g: self.repeat_limit(g) for g in shares},
            self.on_infeasible,
            fixed=self.repeats,
        )


def mix_report(
    plan: MixPlan, documents: dict[str, int], taken: dict[str, tuple[int, int, int]]
) -> dict[str, Any]:
    """report.json: per group requested and achieved share, tokens available and taken, repeats
    (taken / available) and documents; `taken` maps a group to (tokens, copies, distinct docs)."""
    total_taken = sum(t for t, _, _ in taken.values())
    groups = {}
    for g, p in sorted(plan.groups.items()):
        tokens, n_copies, n_docs = taken.get(g, (0, 0, 0))
        groups[g] = {
            "requested_share": p.share,
            "achieved_share": tokens / total_taken if total_taken else 0.0,
            "available_tokens": p.available,
            "target_tokens": round(p.target),
            "taken_tokens": tokens,
            "repeats": tokens / p.available if p.available else 0.0,
            "max_repeat": p.max_repeat,
            "available_documents": documents.get(g, 0),
            "taken_documents": n_docs,
            "copies": n_copies,
            **({"requested_repeats": p.repeats} if p.fixed else {}),
        }
    return {
        "requested_total_tokens": plan.requested_total if plan.requested_total else "all",
        "target_total_tokens": round(plan.total),
        "taken_total_tokens": total_taken,
        "on_infeasible": plan.on_infeasible,
        "shortfall_tokens": {g: round(v) for g, v in sorted(plan.shortfall.items())},
        "max_share_error": max(
            (abs(v["achieved_share"] - v["requested_share"]) for v in groups.values()), default=0.0
        ),
        "groups": groups,
    }


def _sum_triples(values) -> tuple[int, int, int]:
    """Element-wise sum of (tokens, copies, documents); also folds partial sums."""
    tokens = n_copies = n_docs = 0
    for t, c, d in values:
        tokens, n_copies, n_docs = tokens + t, n_copies + c, n_docs + d
    return tokens, n_copies, n_docs


def manifest_mix(report: dict[str, Any]) -> dict[str, Any]:
    """The short form of the report a shard manifest keeps: shares and tokens per group."""
    return {
        "taken_total_tokens": report["taken_total_tokens"],
        "groups": {
            g: {k: row[k] for k in ("requested_share", "achieved_share", "taken_tokens", "repeats")}
            for g, row in report["groups"].items()
        },
    }


class _SelectFn(StageFn):
    """Each document `copies` times (an `Expand` past the first), or a reject."""

    def process(self, doc: TokenizedDoc, plan: MixPlan, cutoffs: dict[str, Any]):
        with self.timed():
            (decision,) = self.decide(lambda d: [self._copies(d[0], plan, cutoffs)], [doc])
        yield from self.emit([(doc, decision)])

    def _copies(self, doc: TokenizedDoc, plan: MixPlan, cutoffs: dict[str, Any]) -> Any:
        group = self.stage.config.group(doc)
        if group is None:
            return Drop(NOT_IN_MIX, "group not in ratios")
        cutoff = cutoffs.get(group)
        n = copies(
            plan.groups[group],
            (seeded_int(self.stage.seed, doc.id), doc.id),
            tuple(cutoff) if cutoff is not None else None,
        )
        if n == 0:
            return Drop(NOT_SAMPLED, f"group {group}")
        repeated = [dataclasses.replace(doc, copy=i) for i in range(n)]
        return Expand(repeated, REPEAT) if n > 1 else repeated[0]


class _Cutoffs(beam.PTransform):
    """(group, id, tokens) -> (group, cutoff (hash, id)) for every group with a remainder.

    In two steps, so no worker holds a whole group: token totals per range of the hash order
    (a combine), the range each group's remainder ends in (`remainder_boundary`, a few thousand
    numbers per group), then `remainder_cutoff` over the documents of that one range.
    """

    def __init__(self, seed: int, plan: Any):
        super().__init__()
        self._seed, self._plan = seed, plan

    def expand(self, in_mix):
        seed = self._seed
        hashed = in_mix | "Hash" >> beam.Map(lambda t: (t[0], seeded_int(seed, t[1]), t[1], t[2]))

        def boundary(kv, p: MixPlan):
            group, ranges = kv
            g = p.groups.get(group)
            if g is not None and g.remainder > 0:
                yield group, remainder_boundary(ranges, g.remainder)

        boundaries = (
            hashed
            | "Range key" >> beam.Map(lambda t: ((t[0], hash_range(t[1])), (t[3], (t[1], t[2]))))
            | "Range totals" >> beam.CombinePerKey(range_total)
            | "Ranges by group" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], *kv[1])))
            | "Group ranges" >> beam.GroupByKey()
            | "Boundary" >> beam.FlatMap(boundary, self._plan)
        )
        where = beam.pvalue.AsDict(boundaries)

        def in_boundary(t, b: dict[str, Any]):
            found = b.get(t[0])
            if found is not None and found[0] == hash_range(t[1]):
                yield t[0], (t[1], t[2], t[3])

        def cutoff(kv, b: dict[str, Any]):
            group, docs = kv
            _, left, before = b[group]
            found = remainder_cutoff(docs, left)
            return group, found if found is not None else before

        from_docs = (
            hashed
            | "In boundary" >> beam.FlatMap(in_boundary, where)
            | "Boundary docs" >> beam.GroupByKey()
            | "Cutoff" >> beam.Map(cutoff, where)
        )
        # A group whose remainder outlasts its documents takes them all.
        from_ranges = boundaries | "Past the ranges" >> beam.FlatMap(
            lambda kv: [(kv[0], kv[1][2])] if kv[1][0] is None else []
        )
        return (from_docs, from_ranges) | "All cutoffs" >> beam.Flatten()


class Mix(
    Stage,
    stage="mix",
    config=MixConfig,
    summary="token ratios over nested groups (kind, lang, ...), total tokens, repeats; "
    "RUN/STAGE/report.json",
    tail=True,
):
    """Samples TokenizedDocs to the configured mix; returns {"kept", "rejects", "added",
    "report"} (the last one element, the report dict, handed to pack) and writes
    RUN/STAGE/report.json."""

    kept_type = TokenizedDoc

    def files(self) -> dict[str, str]:
        return {"mix_report": self.context.file(REPORT_NAME)}

    def run(self, docs):
        cfg, seed = self.config, self.seed
        grouped = docs | "Group" >> beam.Map(lambda d: (cfg.group(d), d.id, d.n_tokens))
        in_mix = grouped | "In mix" >> beam.Filter(lambda t: t[0] is not None)
        available = (
            in_mix
            | "Tokens" >> beam.Map(lambda t: (t[0], t[2]))
            | "Sum tokens" >> beam.CombinePerKey(sum)
        )
        documents = (
            in_mix
            | "Docs" >> beam.Map(lambda t: (t[0], 1))
            | "Count docs" >> beam.CombinePerKey(sum)
        )
        plan = (
            docs.pipeline
            | "Once" >> beam.Create([None])
            | "Solve"
            >> beam.Map(lambda _, avail: cfg.solve(dict(avail)), beam.pvalue.AsDict(available))
        )
        plan_side = beam.pvalue.AsSingleton(plan)

        cutoffs = in_mix | "Cutoffs" >> _Cutoffs(seed, plan_side)
        out = outputs(docs, _SelectFn(self), "Select", plan_side, beam.pvalue.AsDict(cutoffs))

        taken = (
            out[KEPT]
            | "Taken" >> beam.Map(lambda d: (cfg.group(d), (d.n_tokens, 1, int(d.copy == 0))))
            | "Sum taken" >> beam.CombinePerKey(_sum_triples)
        )
        path = self.files()["mix_report"]

        def build(_, p: MixPlan, docs_by_group: dict[str, int], taken_by_group: dict[str, Any]):
            return mix_report(p, docs_by_group, {g: tuple(v) for g, v in taken_by_group.items()})

        def write(report: dict[str, Any]) -> dict[str, Any]:
            atomic_write(
                path, (json.dumps(report, indent=2, sort_keys=True) + "\n").encode("utf-8")
            )
            return report

        report = (
            docs.pipeline
            | "Report once" >> beam.Create([None])
            | "Build report"
            >> beam.Map(build, plan_side, beam.pvalue.AsDict(documents), beam.pvalue.AsDict(taken))
            | "Write report" >> beam.Map(write)
        )
        return {**out, REPORT: report}
