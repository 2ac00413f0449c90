"""Checks on a model's response, for the respond stage: each says why a response fails.

Ma et al. drop responses over 2,000 tokens (counted with the generating model's tokenizer) as
degenerate repetitions; an empty response is no answer (`check_response`). A response must also
be in its target language (`check_response_language`, the measurements of `language_checks`,
shared with translate's checks and eval's generation metrics):

- `off_target_script`: the share of its prose letters in the target language's script is under
  `script_ratio` (Ma et al.'s Japanese character ratio: 0.60; code, URLs and placeholders are
  left out, so a Japanese answer with a code block is not penalised for its code);
- `off_target_lang` / `low_lang_score` (with `lang_id`): fastText says another language, or the
  target with a score under `min_lang_score`. A response with no prose letters (code only)
  passes both: there is no language to judge.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import Field

from iptkit.transforms.stage import Drop
from iptkit.transforms.text.language_checks import (
    LanguageChecks,
    Predict,
    check_language,
    check_script_ratio,
)

# Counts the tokens of a text, e.g. `lambda t: len(tokenizer.encode(t))`.
CountTokens = Callable[[str], int]
MAX_RESPONSE_TOKENS = 2000
OFF_TARGET_SCRIPT, OFF_TARGET_LANG = "off_target_script", "off_target_lang"
# check_language's outcomes, as the respond stage names them (no prose letters passes).
RESPONSE_LANGUAGE_REASONS = {"none": None, "wrong": OFF_TARGET_LANG, "low": "low_lang_score"}


class ResponseChecks(LanguageChecks):
    """The language checks of each response; the respond stage's `checks` option."""

    lang_id: bool = Field(
        False,
        description="also check each response with fastText language ID (the langid stage's "
        "model): another language is off_target_lang",
    )


def check_response(
    response: str, count_tokens: CountTokens, max_tokens: int = MAX_RESPONSE_TOKENS
) -> Drop | None:
    """`empty_response` or `response_too_long`, or None when the response passes."""
    if not response.strip():
        return Drop("empty_response", "the model returned no text")
    tokens = count_tokens(response)
    if tokens > max_tokens:
        return Drop("response_too_long", f"{tokens} tokens, more than {max_tokens}")
    return None


def check_response_language(
    response: str, target: str, checks: ResponseChecks, predict: Predict | None = None
) -> Drop | None:
    """`off_target_script`, then (with `checks.lang_id` and a `predict`) `off_target_lang` or
    `low_lang_score`, or None when the response is in `target`."""
    drop = check_script_ratio(response, target, checks.min_ratio(target), OFF_TARGET_SCRIPT)
    if drop is None and checks.lang_id:
        if predict is None:
            raise ValueError("checks.lang_id needs a language-ID predictor")
        drop = check_language(
            response, target, predict, checks.min_lang_score, RESPONSE_LANGUAGE_REASONS
        )
    return drop
