"""From judgments to summary rows: ratings, per-question means, bootstrap intervals, categories.

A question's score is the mean of the ratings its judgments gave (every sample, every turn):
the bootstrap then resamples questions, not judgments, since the samples and turns of one
question are not independent draws. The interval is the percentile bootstrap's 95% interval
of the mean over questions (`resamples` draws with replacement, from a generator seeded by the
suite's seed and the category), and the row's standard error is the bootstrap's standard
deviation, so `iptkit eval compare` can test differences as it does lm-eval's.

A judgment without a rating (the judge did not write one, or a request failed) is never
dropped silently: each category has an `unparsed_rate` row and a flag saying how many.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from iptkit.eval.summary import Row
from iptkit.hashing import seeded_int
from iptkit.transforms.stages.judge import parse_score

SOURCE = "chat"
OVERALL = "overall"
SCORE, UNPARSED, CHAR_RATIO = "judge_score", "unparsed_rate", "target_char_ratio"


def parse_rating(text: str) -> float | None:
    """The judge's 1-10 rating: `[[N]]` first, as MT-Bench asks, then the judge stage's other
    forms (`Rating: 7`, `7/10`, Japanese ones; `stages/judge.parse_score`); None if none."""
    return parse_score(text)


@dataclass(frozen=True)
class Judgment:
    """One judge verdict: the rating of one sample's answer to one turn of one question.
    `error` says why there is no judge output at all (the answer or the judge request failed)."""

    question_id: str
    category: str
    sample: int
    turn: int
    rating: float | None
    error: str | None = None


@dataclass(frozen=True)
class Estimate:
    """A mean over questions with its bootstrap standard error and 95% interval."""

    value: float
    stderr: float | None
    interval: tuple[float, float]
    n: int


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def percentile_interval(means: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The central `level` interval of bootstrap means: the order statistics at
    floor(B * a) and ceil(B * (1 - a)) - 1 of the sorted means, a = (1 - level) / 2."""
    ordered = sorted(means)
    tail = (1 - level) / 2
    low = ordered[math.floor(len(ordered) * tail)]
    high = ordered[max(math.ceil(len(ordered) * (1 - tail)) - 1, 0)]
    return low, high


def bootstrap(values: Sequence[float], seed: int, resamples: int) -> Estimate:
    """The mean of `values` with the percentile bootstrap's standard error and 95% interval
    (`random.Random(seed)`, so the same seed gives the same interval); one value has none."""
    point = mean(values)
    if len(values) < 2:
        return Estimate(point, None, (point, point), len(values))
    draw = random.Random(seed)
    means = [mean(draw.choices(values, k=len(values))) for _ in range(resamples)]
    centre = mean(means)
    stderr = math.sqrt(sum((m - centre) ** 2 for m in means) / (len(means) - 1))
    return Estimate(point, stderr, percentile_interval(means), len(values))


def question_means(values: Sequence[tuple[str, float]]) -> dict[str, float]:
    """(question id, value) pairs -> each question's mean, in first-seen order."""
    by_question: dict[str, list[float]] = {}
    for qid, value in values:
        by_question.setdefault(qid, []).append(value)
    return {qid: mean(vs) for qid, vs in by_question.items()}


def _rounded(estimate: Estimate) -> tuple[float, float | None, tuple[float, float]]:
    low, high = estimate.interval
    stderr = None if estimate.stderr is None else round(estimate.stderr, 6)
    return round(estimate.value, 6), stderr, (round(low, 6), round(high, 6))


@dataclass(frozen=True)
class Scoring:
    """How rows are made: the task name and language they carry, the bootstrap's seed and
    draws, and the flag a mean character ratio gets (None: no minimum for this language)."""

    task: str
    lang: str
    seed: int
    resamples: int
    min_char_ratio: float | None = None


def _estimate_row(
    scoring: Scoring, category: str, metric: str, values: Sequence[float], better: bool
) -> Row:
    estimate = bootstrap(
        values, seeded_int(scoring.seed, f"{category}/{metric}"), scoring.resamples
    )
    value, stderr, interval = _rounded(estimate)
    return Row(
        task=scoring.task, metric=metric, value=value, stderr=stderr, n=estimate.n,
        lang=scoring.lang, higher_is_better=better, source=SOURCE, category=category,
        interval=interval,
    )  # fmt: skip


def _missing_flag(scoring: Scoring, category: str, judgments: Sequence[Judgment]) -> str | None:
    missing = [j for j in judgments if j.rating is None]
    if not missing:
        return None
    failed = sum(j.error is not None for j in missing)
    return (
        f"{scoring.task}/{category}: {len(missing)} of {len(judgments)} judgments have no "
        f"rating ({len(missing) - failed} without a [[rating]], {failed} failed requests)"
    )


def _unparsed_row(scoring: Scoring, category: str, judgments: Sequence[Judgment]) -> Row:
    """The share of judgments without a rating: a count, reported as it is (no interval)."""
    missing = sum(j.rating is None for j in judgments)
    return Row(
        task=scoring.task, metric=UNPARSED, value=round(missing / len(judgments), 6),
        stderr=None, n=len(judgments), lang=scoring.lang, higher_is_better=False, source=SOURCE,
        flag=_missing_flag(scoring, category, judgments), category=category,
    )  # fmt: skip


def category_rows(
    scoring: Scoring,
    category: str,
    judgments: Sequence[Judgment],
    ratios: Sequence[tuple[str, float]] = (),
) -> list[Row]:
    """A category's rows: the judge score over questions (when any question has a rating), the
    share of judgments without a rating (flagged when not 0) and, given (question id, ratio)
    pairs, the answers' target-language character ratio over questions (flagged under the
    language's minimum)."""
    rows = []
    rated = [(j.question_id, j.rating) for j in judgments if j.rating is not None]
    if rated:
        scores = list(question_means(rated).values())  # type: ignore[arg-type]
        rows.append(_estimate_row(scoring, category, SCORE, scores, True))
    rows.append(_unparsed_row(scoring, category, judgments))
    if ratios:
        values = list(question_means(ratios).values())
        ratio = _estimate_row(scoring, category, CHAR_RATIO, values, True)
        minimum = scoring.min_char_ratio
        if minimum is not None and ratio.value < minimum:
            flag = (
                f"{scoring.task}/{category}: mean target-language character ratio "
                f"{ratio.value:.3f} is below {minimum:.2f}: answers are noticeably in another "
                "language (Ma et al.)"
            )
            ratio = dataclasses.replace(ratio, flag=flag)
        rows.append(ratio)
    return rows


def summary_rows(
    scoring: Scoring,
    judgments: Sequence[Judgment],
    ratios: Sequence[tuple[str, str, float]] = (),
) -> list[Row]:
    """Rows per category (in first-seen order), then the overall rows over every question.
    `ratios` are (category, question id, ratio) triples; empty for English suites."""
    categories = list(dict.fromkeys(j.category for j in judgments))
    rows: list[Row] = []
    for category in categories:
        mine = [j for j in judgments if j.category == category]
        theirs = [(qid, r) for c, qid, r in ratios if c == category]
        rows += category_rows(scoring, category, mine, theirs)
    return rows + category_rows(scoring, OVERALL, judgments, [(qid, r) for _, qid, r in ratios])
