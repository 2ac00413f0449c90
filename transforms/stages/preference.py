"""preference: pairs from the judged candidate responses of each instruction.

After `respond` with `n` > 1 (each instruction's samples are records `ID#rK` with
`meta.respond.of` = ID) and `judge` without selection (each sample scored, `meta.judge.score`),
this stage groups the candidates of one instruction and makes one preference record
(transforms/preference.py) of the best-scored response against the worst-scored one, as
UltraFeedback's binarisation does with its highest and lowest ratings (iptkit's choice of
pair: PLLuM's preference set is not published). Ties in score are broken by a seeded hash of
the candidate id, never by arrival order.

The ledger: a group of n candidates gives one record (id ID, the instruction's own id) and n - 1
rejects: the rejected candidate (`pair_rejected`: its text is inside the pair now) and the
others (`not_extreme`). A group whose best and worst score alike is dropped whole as `tie`, one
whose gap is under `min_gap` as `small_gap`, one with fewer than two scored candidates (the
judge kept some unscored, or a check rejected samples) as `no_pair`, and one whose best and
worst response are the same text as `same_response`. With judge's `keep_reason: true`, the
chosen response's judgement goes into the pair as its `reason`. Records that are no candidates (no
`meta.respond.of`) pass through unchanged: preference records read from files, for instance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import Field

from iptkit.hashing import seeded_int
from iptkit.transforms.preference import preference_record
from iptkit.transforms.record import Record
from iptkit.transforms.stage import Drop, GroupStage
from iptkit.transforms.stage_config import StageConfig

REJECTED, NOT_EXTREME = "pair_rejected", "not_extreme"
TIE, SMALL_GAP, NO_PAIR, SAME = "tie", "small_gap", "no_pair", "same_response"


class PreferenceConfig(StageConfig):
    """Options of the preference stage."""

    min_gap: float = Field(
        1.0,
        ge=0,
        description="smallest judge-score gap between the chosen and the rejected response; a "
        "smaller one drops the instruction's candidates as small_gap (equal scores: tie)",
    )


def candidate_of(record: Record) -> str | None:
    """The instruction a candidate response answers (respond's `meta.respond.of`), or None."""
    info = record.meta.get("respond") if isinstance(record.meta, dict) else None
    return info.get("of") if isinstance(info, dict) else None


def score_of(record: Record) -> float | None:
    info = record.meta.get("judge") if isinstance(record.meta, dict) else None
    score = info.get("score") if isinstance(info, dict) else None
    return float(score) if isinstance(score, int | float) else None


def make_pair(
    key: str, group: Iterable[Record], seed: int, min_gap: float
) -> Iterator[Record | tuple[Record, Drop]]:
    """One group's decision (see the module docstring)."""
    records = list(group)
    if key.startswith("record:"):  # no candidates: passed through
        yield from records
        return
    of = key.removeprefix("candidates:")
    scored = [r for r in records if score_of(r) is not None]
    scored.sort(key=lambda r: (-score_of(r), seeded_int(seed, "preference", r.id), r.id))
    if len(scored) < 2:
        drop = Drop(NO_PAIR, f"{len(scored)} scored candidate(s) of {of}; a pair needs 2")
        yield from ((r, drop) for r in records)
        return
    best, worst = scored[0], scored[-1]
    gap = score_of(best) - score_of(worst)
    chosen_text, rejected_text = best.pairs[-1]["response"], worst.pairs[-1]["response"]
    reason = None
    if gap == 0:
        reason = Drop(TIE, f"all {len(scored)} scored candidates of {of} score {score_of(best):g}")
    elif gap < min_gap:
        reason = Drop(
            SMALL_GAP, f"{of}: best {score_of(best):g} - worst {score_of(worst):g} < {min_gap:g}"
        )
    elif chosen_text == rejected_text:
        reason = Drop(SAME, f"the best and worst candidates of {of} wrote the same response")
    if reason is not None:
        yield from ((r, reason) for r in records)
        return
    meta = {k: v for k, v in best.meta.items() if k not in ("respond", "judge")}
    pair = preference_record(
        dataclasses.replace(best, id=of, meta=meta),
        best.pairs,
        rejected_text,
        chosen_score=score_of(best),
        rejected_score=score_of(worst),
        chosen_id=best.id,
        rejected_id=worst.id,
        candidates=len(records),
        judge=best.meta["judge"].get("model"),
        reason=best.meta["judge"].get("reason"),
    )
    yield pair
    for r in records:
        if r is worst:
            yield r, Drop(REJECTED, f"the rejected response of pair {of} (score {score_of(r):g})")
        elif r is not best:
            score = score_of(r)
            shown = "unscored" if score is None else f"score {score:g}"
            yield r, Drop(NOT_EXTREME, f"{shown}, between the pair of {of}")


class Preference(
    GroupStage,
    stage="preference",
    config=PreferenceConfig,
    summary="preference pairs: per instruction, respond's best-judged candidate vs its worst "
    "(min_gap; ties dropped)",
):
    """Groups respond's candidates by instruction and keeps one preference record each."""

    def group_key(self, record: Record) -> Any:
        of = candidate_of(record)
        return f"record:{record.id}" if of is None else f"candidates:{of}"

    def decide_group(self, key: Any, records: Iterable[Record]) -> Any:
        return make_pair(key, records, self.seed, self.config.min_gap)
