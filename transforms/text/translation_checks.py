"""Checks on a model's translation, for the translate stage: each says why an output fails.

Every check is a pure function returning None for a pass or a `Drop` whose reason is what the
translate stage retries on and finally rejects with; `check_translation` runs them cheap first.

- `empty_output`: nothing but whitespace.
- `code_changed`: a fenced code block of the source is missing or altered (code is not prose;
  translating a comment or a variable name breaks it), or the fences no longer pair up.
- `placeholder_lost`: a placeholder of the source (`{name}`, `{0}`, `%s`, `%(name)s`), a URL,
  inline code or a redaction marker (`NAME_1`, as in LMSYS-Chat-1M) is missing from the output.
- `echo_prompt` / `echo_source`: the output repeats the translation prompt, or is the source
  itself; `untranslated`: it contains a passage of the source verbatim (English leftovers).
- `no_language` / `wrong_language` / `low_lang_score`: language ID (the langid stage's fastText
  model) does not say the target language with at least `min_lang_score`.
- `script_ratio`: too few letters in the target language's script (Japanese: kana + Han, at
  least 0.60, the threshold Ma et al. use), measured with code, URLs and placeholders left out.
  These two are `language_checks`' (the respond stage and eval's generation metrics measure
  the same way).
- `length_ratio`: the output is too short (truncated) or too long (rambling) for its source,
  lengths in `text_stats.word_units` so that English and Japanese compare.
- `truncated`: the source ends a sentence and the output stops mid-way.

Language ID, the script ratio and lengths read the output without its protected spans (code,
URLs, placeholders), which are Latin whatever the target language.
"""

from __future__ import annotations

import re
from collections import Counter

from pydantic import Field, field_validator

from iptkit.transforms.stage import Drop
from iptkit.transforms.text.language_checks import (
    CODE_BLOCK,
    PLACEHOLDER,
    LanguageChecks,
    Predict,
    check_language,
    check_script_ratio,
    prose,
)
from iptkit.transforms.text.text_stats import TERMINAL_PUNCT, word_units

_FENCE = re.compile(r"```")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n+")
_CLOSERS = (")", "）", "]", "】", "」", "』", "```")


class TranslationChecks(LanguageChecks):
    """Thresholds of the translation checks; the translate stage's `checks` option (the
    language thresholds, `min_lang_score` and `script_ratio`, are `LanguageChecks`')."""

    length_ratio: tuple[float, float] = Field(
        (0.4, 3.0),
        description="bounds of output length / source length, both in word units (CJK "
        "characters count half a word)",
    )
    min_echo_chars: int = Field(
        40, ge=10, description="a source passage this long found verbatim in the output fails"
    )
    code: bool = Field(True, description="fenced code blocks must come through unchanged")
    placeholders: bool = Field(
        True, description="placeholders, URLs, inline code and NAME_1-style markers must stay"
    )
    ending: bool = Field(
        True, description="an output must end a sentence when its source does (truncation)"
    )

    @field_validator("length_ratio")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= value[0] < value[1]:
            raise ValueError("length_ratio is [low, high] with 0 <= low < high")
        return value


def protected_spans(text: str) -> list[str]:
    """The code blocks and placeholders of a text, in order."""
    return [m.group(0) for m in CODE_BLOCK.finditer(text)] + PLACEHOLDER.findall(
        CODE_BLOCK.sub(" ", text)
    )


def _squash(text: str) -> str:
    return " ".join(text.split())


def check_empty(output: str) -> Drop | None:
    return None if output.strip() else Drop("empty_output", "the model returned no text")


def check_code(source: str, output: str) -> Drop | None:
    """Every fenced code block of the source, unchanged (up to trailing spaces) and in order."""
    if output.count("```") % 2:
        return Drop("code_changed", "an unclosed ``` fence (the output was cut off?)")
    want = [_squash(b) for b in CODE_BLOCK.findall(source)]
    got = [_squash(b) for b in CODE_BLOCK.findall(output)]
    if want == got:
        return None
    missing = [b for b in want if b not in got]
    shown = missing[0][:60] if missing else f"{len(got)} blocks for {len(want)}"
    return Drop("code_changed", f"{len(want)} code block(s) in the source; not kept: {shown!r}")


def check_placeholders(source: str, output: str) -> Drop | None:
    """Every placeholder, URL, inline code span and redaction marker of the source, as often."""
    want = Counter(PLACEHOLDER.findall(CODE_BLOCK.sub(" ", source)))
    got = Counter(PLACEHOLDER.findall(CODE_BLOCK.sub(" ", output)))
    missing = sorted((want - got).elements())
    if missing:
        return Drop("placeholder_lost", f"missing from the output: {', '.join(missing[:5])}")
    return None


def check_echo(source: str, output: str, min_chars: int, prompt: str | None = None) -> Drop | None:
    """The output is not the source, contains no prompt line and no long source passage."""
    out = _squash(prose(output))
    if _squash(prose(source)) == out:
        return Drop("echo_source", "the output is the source text")
    if prompt:
        for line in prompt.replace(source, "\n").splitlines():
            line = _squash(line)
            if len(line) >= 10 and line in out:
                return Drop("echo_prompt", f"the output repeats the prompt: {line[:60]!r}")
    for passage in _SENTENCE_END.split(prose(source)):
        passage = _squash(passage)
        if len(passage) >= min_chars and passage in out:
            return Drop("untranslated", f"source text left as it was: {passage[:60]!r}")
    return None


def check_length(source: str, output: str, bounds: tuple[float, float]) -> Drop | None:
    """Output length over source length, in word units, within `bounds`."""
    src, out = word_units(prose(source)), word_units(prose(output))
    if src == 0:
        return None
    ratio = out / src
    if not bounds[0] <= ratio <= bounds[1]:
        return Drop(
            "length_ratio", f"{out:g} units for {src:g} in the source: {ratio:.2f} not in {bounds}"
        )
    return None


def check_ending(source: str, output: str) -> Drop | None:
    """A source that ends a sentence needs an output that does too (else it was cut off)."""
    src, out = source.rstrip(), output.rstrip()
    if not src.endswith(TERMINAL_PUNCT) or out.endswith(TERMINAL_PUNCT + _CLOSERS):
        return None
    return Drop("truncated", f"the source ends a sentence, the output stops at {out[-30:]!r}")


def check_translation(
    source: str,
    output: str,
    target: str,
    predict: Predict,
    checks: TranslationChecks,
    prompt: str | None = None,
) -> Drop | None:
    """The first check a translation fails, cheap checks first, or None when it passes all.

    `predict` is a language-ID function such as `LangId.predict` (fastText, loaded once per
    worker by the stage); `prompt` is the full prompt the model was given, if any.
    """
    floor = checks.min_ratio(target)
    for outcome in (
        lambda: check_empty(output),
        lambda: check_code(source, output) if checks.code else None,
        lambda: check_placeholders(source, output) if checks.placeholders else None,
        lambda: check_echo(source, output, checks.min_echo_chars, prompt),
        lambda: check_length(source, output, checks.length_ratio),
        lambda: check_ending(source, output) if checks.ending else None,
        lambda: check_script_ratio(output, target, floor),
        lambda: check_language(output, target, predict, checks.min_lang_score),
    ):
        drop = outcome()
        if drop is not None:
            return drop
    return None
