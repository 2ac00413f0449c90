"""Is a model's text in its target language: one measurement and one verdict for every stage.

Two signals, each computed here once and used by translate's output checks
(`translation_checks`), respond's response checks (`response_checks`) and eval's generation
metrics (`eval/generation_metrics.py`), so a number means the same thing wherever it appears:

- **The target-language character ratio** (`target_char_ratio`): the share of a text's letters
  written in the language's own scripts (kana + Han for Japanese; `scripts.lang_scripts`),
  read over its prose (`prose`: fenced code, URLs, inline code and placeholders left out, as
  they are Latin whatever the language), rounded to 4 decimals. Ma et al. (Building
  Instruction-Tuning Datasets from Human-Written Instructions with Open-Weight LLMs, section
  4) found that a Japanese character ratio below 0.60 shows a noticeable presence of
  off-target language: `MIN_SCRIPT_RATIO`. A text with no prose letters, or in a language
  whose scripts iptkit does not know, has no ratio (None) and fails no ratio check.
- **Language ID** (`check_language`): the top label fastText (the langid stage's model and
  reading) gives the prose, against the target language, with a lowest score.

`LanguageChecks` holds the two thresholds as spec options; a stage's checks model derives from
it, so translate and respond spell them the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from iptkit.transforms.stage import Drop
from iptkit.transforms.text.scripts import (
    base_lang,
    check_script_ratios,
    lang_scripts,
    script_counts,
    share,
)

# `[[label, score], ...]`, best first, as `LangId.predict` returns them ([] without letters).
Prediction = Sequence[Sequence[Any]]
Predict = Callable[[str], Prediction]

# Ma et al.: below 0.60 Japanese characters, off-target language is noticeable.
MIN_SCRIPT_RATIO: dict[str, float] = {"ja": 0.60}

CODE_BLOCK = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)
PLACEHOLDER = re.compile(
    r"https?://[A-Za-z0-9._~:/?#@!$&*+;=%-]*[A-Za-z0-9_~/#=%-]"  # URLs, no trailing punctuation
    r"|`[^`\n]+`"  # inline code
    r"|\{[A-Za-z_][A-Za-z0-9_]*\}|\{\d*\}"  # str.format / template fields
    r"|%\([A-Za-z_]\w*\)[sdifr]|%[sdif]"  # printf-style
    r"|(?<![A-Za-z0-9_])[A-Z]+_\d+(?![A-Za-z0-9_])"  # LMSYS redactions: NAME_1, ORGANIZATION_2
)

# Reasons `check_language` gives by outcome; a stage may rename them, or pass (None) on one.
LANGUAGE_REASONS: dict[str, str | None] = {
    "none": "no_language",
    "wrong": "wrong_language",
    "low": "low_lang_score",
}


def prose(text: str) -> str:
    """The text without code blocks and placeholders: what language and script checks read."""
    return PLACEHOLDER.sub(" ", CODE_BLOCK.sub(" ", text))


def target_char_ratio(text: str, lang: str | None) -> float | None:
    """The share of the prose's letters written in `lang`'s own scripts, rounded to 4
    decimals; None for a language of unknown scripts or prose without letters."""
    scripts = lang_scripts(lang)
    if scripts is None:
        return None
    counts = script_counts(prose(text))
    return round(share(counts, scripts), 4) if counts["letters"] else None


def min_ratio(minimums: Mapping[str, float], lang: str | None) -> float | None:
    """The lowest ratio `minimums` sets for a language: its full tag's, else its base's."""
    if not lang:
        return None
    return minimums.get(lang, minimums.get(base_lang(lang) or ""))


def below_min_ratio(ratio: float | None, minimum: float | None) -> bool | None:
    """Whether a ratio fails its minimum; None when either is missing (nothing to judge)."""
    return None if ratio is None or minimum is None else ratio < minimum


def check_script_ratio(
    text: str, lang: str, minimum: float | None, reason: str = "script_ratio"
) -> Drop | None:
    """A `reason` Drop when the text's target-language character ratio is under `minimum`."""
    ratio = target_char_ratio(text, lang)
    if not below_min_ratio(ratio, minimum):
        return None
    scripts = "+".join(sorted(lang_scripts(lang) or ()))
    return Drop(reason, f"{ratio:.4f} of letters in {lang}'s script ({scripts}), below {minimum}")


def check_language(
    text: str,
    target: str,
    predict: Predict,
    min_score: float,
    reasons: Mapping[str, str | None] = LANGUAGE_REASONS,
) -> Drop | None:
    """Language ID of the text's prose says the target language with at least `min_score`.

    `reasons` names the Drop of each failure: `none` (no letters outside code and
    placeholders), `wrong` (another language), `low` (the target, under `min_score`); a None
    reason lets that case pass.
    """
    top = predict(prose(text))
    if not top:
        outcome, detail = "none", "no letters outside code and placeholders"
    else:
        label, score = top[0][0], float(top[0][1])
        if base_lang(label) != base_lang(target):
            outcome, detail = "wrong", f"predicted {label} ({score:.3f}), expected {target}"
        elif score < min_score:
            outcome, detail = "low", f"{label} at {score:.3f}, below {min_score}"
        else:
            return None
    reason = reasons.get(outcome)
    return None if reason is None else Drop(reason, detail)


class LanguageChecks(BaseModel):
    """The language thresholds a model stage's output checks share (translate, respond)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_lang_score: float = Field(
        0.5, ge=0.0, le=1.0, description="lowest language-ID score of the target language"
    )
    script_ratio: dict[str, float] = Field(
        default_factory=lambda: dict(MIN_SCRIPT_RATIO),
        description="per target language, the lowest share of prose letters in its script "
        "(Ma et al.: 0.60 for Japanese); {} switches the check off",
    )

    @field_validator("script_ratio")
    @classmethod
    def _known_scripts(cls, value: dict[str, float]) -> dict[str, float]:
        return check_script_ratios(value)

    def min_ratio(self, lang: str | None) -> float | None:
        return min_ratio(self.script_ratio, lang)
