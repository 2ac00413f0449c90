"""The mix solver: counted tokens per group in, per-group repeats and token targets out.

Pure functions, no Beam, so the arithmetic of a mix is unit-tested on its own. A group is a
path through the spec's nested ratios ("raw", "augmented/ja"); its share is the leaf value
(shares of all leaves sum to 1). For each group the solver fixes a token target; a group's
rate target/available splits into whole repeats (every document `floor(rate)` times) and a
remainder taken from the documents with the lowest seeded hash of their id, until the group's
token target is met to within one document. Taking a hash-ordered prefix instead of flipping a
coin per document is what makes achieved shares precise (not just right on average) and the
selection independent of record order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from iptkit.errors import IptkitError

GROUP_SEP = "/"
# The group value of a document whose field is unset (a ratios key may name it).
UNSET = "null"
OnInfeasible = Literal["fail", "scale_down", "best_effort"]


class MixError(IptkitError, ValueError):
    """A mix that cannot be made as asked; the message carries the numbers per group."""


def flatten_ratios(ratios: Mapping[str, object], prefix: str = "") -> dict[str, float]:
    """{"raw": 0.6, "augmented": {"en": 0.2, "ja": 0.2}} -> {"raw": 0.6, "augmented/en": 0.2, ...}."""
    flat: dict[str, float] = {}
    for key, value in ratios.items():
        path = f"{prefix}{GROUP_SEP}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_ratios(value, path))
        else:
            flat[path] = float(value)  # type: ignore[arg-type]
    return flat


def group_of(values: Mapping[str, str | None], group_by: list[str], ratios: Mapping) -> str | None:
    """The ratios leaf a document falls in, walking `group_by` fields down the nested ratios;
    None when its value at some level is not named there (it is then not in the mix)."""
    node: object = ratios
    path: list[str] = []
    for name in group_by:
        if not isinstance(node, Mapping):
            break
        value = values.get(name)
        key = UNSET if value is None else str(value)
        if key not in node:
            return None
        path.append(key)
        node = node[key]
    return GROUP_SEP.join(path)


@dataclass(frozen=True)
class GroupPlan:
    """What the mix takes from one group: `repeats` whole passes over every document, then the
    lowest-hash documents worth `remainder` tokens once more. `share` is the group's planned
    share of the whole mix, `wanted` the tokens the spec asked of it; `fixed` marks a group of
    `repeats:` (taken exactly `repeats` times, outside the ratios)."""

    share: float
    available: int
    max_repeat: float
    target: float
    repeats: int
    remainder: float
    wanted: float = 0.0
    fixed: bool = False


@dataclass(frozen=True)
class MixPlan:
    requested_total: int | None  # None for "all"
    total: float
    on_infeasible: str
    groups: dict[str, GroupPlan]

    @property
    def shortfall(self) -> dict[str, float]:
        """Tokens asked for but not available under max_repeat (best_effort only)."""
        return {g: p.wanted - p.target for g, p in self.groups.items() if p.wanted - p.target > 0.5}


def _table(rows: Iterable[tuple[str, float, int, float, float]]) -> str:
    lines = ["  group            share   available  max_repeat   needed"]
    lines += [f"  {g:<16} {s:>5.3f} {a:>11,} {r:>11g} {n:>12,.0f}" for g, s, a, r, n in rows]
    return "\n".join(lines)


def solve_mix(
    available: Mapping[str, int],
    shares: Mapping[str, float],
    total: int | Literal["all"],
    max_repeat: Mapping[str, float],
    on_infeasible: OnInfeasible = "fail",
    fixed: Mapping[str, int] | None = None,
) -> MixPlan:
    """Token targets per group. `available` tokens per group (groups with no documents may be
    absent), `shares` per group summing to 1 (or none), `max_repeat` per group, and `fixed`
    groups taken a whole number of times each (Cheng et al.'s tuning data, 4 times), whose
    tokens come first: the shares split what they leave of `total`. With total "all", the
    largest total that keeps every share under max_repeat. Raises MixError with the numbers when
    a group with a share or a fixed repeat has no tokens, or when `total` cannot be met and
    on_infeasible is fail.
    """
    fixed = dict(fixed or {})
    groups_with_tokens = dict(sorted((g, n) for g, n in available.items() if n))
    empty = [
        f"group {g} has 0 tokens but a share of {s:g}"
        for g, s in shares.items()
        if s > 0 and available.get(g, 0) == 0
    ] + [
        f"group {g} has 0 tokens but repeats {n}" for g, n in fixed.items() if not available.get(g)
    ]
    if empty:
        raise MixError(
            "mix: "
            + "; ".join(empty)
            + f" (groups with tokens: {groups_with_tokens}); fix the ratios, repeats or the "
            "group_by fields"
        )
    fixed_tokens = sum(available[g] * n for g, n in fixed.items())
    requested = None if total == "all" else int(total)
    if requested is not None and not shares:
        raise MixError(
            f"mix: total_tokens {requested:,} needs ratios to fill what the repeats groups "
            f"({fixed_tokens:,} tokens) leave; set total_tokens: all or name ratios"
        )
    if requested is not None and requested <= fixed_tokens:
        raise MixError(
            f"mix: total_tokens {requested:,} leaves nothing for the ratios: the repeats groups "
            + ", ".join(f"{g} ({available[g]:,} tokens x {n})" for g, n in sorted(fixed.items()))
            + f" alone take {fixed_tokens:,}; raise total_tokens or lower repeats"
        )
    ratio_plan = _solve_shares(
        available,
        shares,
        None if requested is None else requested - fixed_tokens,
        max_repeat,
        on_infeasible,
    )
    ratio_total = sum(p.target for p in ratio_plan.values())
    grand = ratio_total + fixed_tokens
    # A ratio group's share of the whole mix: its share of the ratio part, scaled by that part.
    ratio_part = ratio_total if requested is None else requested - fixed_tokens
    scale = ratio_part / (ratio_part + fixed_tokens) if ratio_part + fixed_tokens else 0.0
    groups = {g: replace(p, share=p.share * scale) for g, p in ratio_plan.items()}
    for g, n in fixed.items():
        tokens = available[g] * n
        groups[g] = GroupPlan(tokens / grand, available[g], n, tokens, n, 0.0, tokens, True)
    return MixPlan(requested, grand, on_infeasible, groups)


def _solve_shares(
    available: Mapping[str, int],
    shares: Mapping[str, float],
    requested: int | None,
    max_repeat: Mapping[str, float],
    on_infeasible: OnInfeasible,
) -> dict[str, GroupPlan]:
    """The ratio groups' plans for `requested` tokens between them (None: as many as max_repeat
    allows); `share` is still the group's share of the ratio part."""
    if not shares:
        return {}
    capacity = {g: available.get(g, 0) * max_repeat[g] for g in shares}
    largest = min(capacity[g] / s for g, s in shares.items() if s > 0)
    if requested is None:
        grand = largest
    elif requested <= largest * (1 + 1e-9):
        grand = float(requested)
    elif on_infeasible == "fail":
        rows = [
            (g, s, available.get(g, 0), max_repeat[g], s * requested)
            for g, s in sorted(shares.items())
        ]
        short = [g for g, s in shares.items() if s * requested > capacity[g]]
        raise MixError(
            f"mix: total_tokens {requested:,} is not feasible: groups {', '.join(sorted(short))} "
            f"need more than available x max_repeat; the largest feasible total keeping the "
            f"ratios is {largest:,.0f}.\n{_table(rows)}\n"
            "raise max_repeat, lower total_tokens, or set on_infeasible: scale_down | best_effort"
        )
    else:
        grand = largest if on_infeasible == "scale_down" else float(requested)
    groups = {}
    for g, s in shares.items():
        n = available.get(g, 0)
        target = min(s * grand, capacity[g])
        rate = target / n if n else 0.0
        repeats = math.floor(rate + 1e-12)
        wanted = target if requested is None else s * requested
        groups[g] = GroupPlan(
            s, n, max_repeat[g], target, repeats, max(0.0, target - repeats * n), wanted
        )
    return groups


def remainder_cutoff(
    docs: Iterable[tuple[int, str, int]], remainder: float
) -> tuple[int, str] | None:
    """The (hash, key) of the last document taken for a group's remainder, or None for none.

    `docs` are (hash, id, tokens) of one group. Documents are taken in (hash, id) order while
    that brings the taken tokens closer to `remainder`, so the group misses its target by at most
    half a document.
    """
    taken = 0
    cutoff = None
    for h, key, n in sorted(docs):
        if taken >= remainder or (taken + n) - remainder > remainder - taken:
            break
        taken += n
        cutoff = (h, key)
    return cutoff


# The hash order is cut into 2**RANGE_BITS ranges (the hash's top bits), so finding a group's
# cutoff needs one worker to hold only the documents of one range, not the whole group.
RANGE_BITS = 12

# Tokens in a range and its last (hash, id). The hash is an unsigned 64-bit int: typed Any
# because Beam picks its signed 64-bit int coder for `int` and fails on the upper half.
RangeTotal = tuple[int, tuple[Any, str]]


def hash_range(h: int, bits: int = RANGE_BITS) -> int:
    """The range of the hash order a 64-bit document hash falls in."""
    return h >> (64 - bits)


def range_total(values: Iterable[RangeTotal]) -> RangeTotal:
    """Tokens and last (hash, id) of documents, or of range totals (a combine: same shape)."""
    tokens, last = 0, None
    for n, key in values:
        tokens += n
        key = tuple(key)
        last = key if last is None or key > last else last
    return tokens, last  # type: ignore[return-value]


def remainder_boundary(
    ranges: Iterable[tuple[int, int, tuple[int, str]]], remainder: float
) -> tuple[int | None, float, tuple[int, str] | None]:
    """Where a group's remainder ends, from its per-range totals `(range, tokens, last)`.

    Returns `(range, left, before)`: `remainder_cutoff` over that range's documents with
    `left` tokens to take gives the cutoff, and `before` (the last document of the earlier
    ranges) is the cutoff when it takes none. Every document of the earlier ranges is taken,
    since they end below the remainder, so this is the whole-group `remainder_cutoff`, exactly.
    `range` is None when the ranges end first: `before` is then the cutoff.
    """
    taken, before = 0, None
    for r, tokens, last in sorted(ranges):
        if taken + tokens >= remainder:
            return r, remainder - taken, before
        taken += tokens
        before = tuple(last)
    return None, 0.0, before


def copies(plan: GroupPlan, hash_key: tuple[int, str], cutoff: tuple[int, str] | None) -> int:
    """How many times the mix takes one document: the whole repeats, plus one if it falls in the
    remainder (its (hash, id) at or below the group's cutoff)."""
    extra = 1 if cutoff is not None and hash_key <= cutoff else 0
    return plan.repeats + extra
