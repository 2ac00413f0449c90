"""filters: heuristic quality filters of Gopher, C4 and FineWeb, for word and character scripts.

Every check is one option whose value is its threshold (`null` turns it off), and a rejected
record's reason is that option's name, with the measured value and the threshold in the detail.
Checks run in the fixed, cheap-first order of `CHECKS`; statistics are computed on first use, so
a record that fails a length check never pays for n-gram hashing.

Chinese, Japanese, Korean and Thai text is judged in character mode: the word-based checks
(word counts and lengths, symbols and newlines per word) are skipped, repetition is measured on
character n-grams, and lengths come from the `char` entry of `overrides`. The mode follows the
record's `lang` (set by the langid stage) when it has one, else the script of most of its
letters. With `action: tag` nothing is dropped: the measured values and the failed checks go to
`record.meta["filters"]` (Dolma's taggers: a decision that can be revisited later).

Thresholds: Rae et al. 2021 (Gopher: quality filters and the repetition table A1 of its
appendix), Raffel et al. 2020 (C4, section 2.2), Penedo et al. 2024 (FineWeb's own heuristic
filters, added after C4's).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from iptkit.transforms.record import Record
from iptkit.transforms.stage import Drop, RecordStage, StageContext
from iptkit.transforms.stage_config import StageConfig
from iptkit.transforms.text.scripts import base_lang, script_counts
from iptkit.transforms.text.text_stats import (
    CHAR_MODE_LANGS,
    CHARS_PER_WORD,
    LineStats,
    Units,
    WordStats,
    char_mode_share,
    dup_ngram_char_frac,
    duplicate_fractions,
    line_stats,
    ngram_units,
    paragraphs,
    script_lang,
    stop_words_found,
    top_ngram_char_frac,
    word_stats,
)

Mode = Literal["word", "char"]
MODES: tuple[Mode, ...] = ("word", "char")
EMPTY = "empty_text"

GOPHER_STOP_WORDS = ["the", "be", "to", "of", "and", "that", "have", "with"]
# Particles and the commonest inflection kana: running Japanese text contains several of them
# in any sentence, a menu, a tag list or a run of product names hardly any.
JAPANESE_STOP_WORDS = ["の", "に", "は", "を", "た", "が", "で", "て", "と", "し", "れ", "さ", "も", "な", "か"]  # fmt: skip
# The eight commonest Polish words (prepositions, conjunctions, the reflexive się, negation),
# as many as Gopher's English list: any Polish sentence of some length has two of them.
POLISH_STOP_WORDS = ["w", "i", "się", "na", "nie", "z", "do", "to"]
STOP_WORDS = {"en": GOPHER_STOP_WORDS, "ja": JAPANESE_STOP_WORDS, "pl": POLISH_STOP_WORDS}

# Every threshold that differs from Gopher's, C4's and FineWeb's English ones, in one place:
# by mode, then by language (a language's entry wins over its mode's). Character mode measures
# in characters what the papers measured in words, so its units are converted; the Japanese
# values are iptkit's own calibration on the Debian Reference in English and Japanese
# (benchmarks/bench_filters_calibration.py; figures in benchmarks/RESULTS.md and
# docs/methods.md). Chinese, Korean and Thai keep the uncalibrated two characters a word.
OVERRIDES: dict[str, dict[str, Any]] = {
    "char": {"min_chars": 50 * CHARS_PER_WORD, "max_chars": 100_000 * CHARS_PER_WORD},
    "ja": {
        # Gopher's n-gram checks on n-grams of 4n characters: the smallest scale at which the
        # Japanese documents pass the repetition checks as often as their English originals
        # (at 2, 69% against 97% for the duplicated 5-gram check); the Japanese text also has
        # 3.99 characters per English word.
        "chars_per_word": 4,
        # Gopher's 50 and 100,000 words at 4 characters a word.
        "min_chars": 200,
        "max_chars": 400_000,
        # FineWeb's short line of 30 characters: 18 Japanese characters give the same share of
        # short lines as the English originals.
        "short_line_chars": 18,
    },
    # Polish inflects, so a repeated phrase is less often the same word n-gram: Gopher's
    # n-gram thresholds times 0.7 give Polish man pages the pass rates of the English ones.
    "pl": {
        "top_2gram_frac": 0.14,
        "top_3gram_frac": 0.126,
        "top_4gram_frac": 0.112,
        "dup_5gram_frac": 0.105,
        "dup_6gram_frac": 0.098,
        "dup_7gram_frac": 0.091,
        "dup_8gram_frac": 0.084,
        "dup_9gram_frac": 0.077,
        "dup_10gram_frac": 0.07,
    },  # fmt: skip
    # Thai ends sentences without punctuation.
    "th": {"min_terminal_punct_line_frac": None},
}


def _threshold(default: float | None, description: str) -> Any:
    return Field(default, ge=0, description=description)


class FiltersConfig(StageConfig):
    """Options of the filters stage: one threshold per check, in the order the checks run."""

    action: Literal["filter", "tag"] = Field(
        "filter",
        description="filter: drop a record at its first failing check; tag: keep every record and "
        'write the measured values and all failed checks to meta["filters"]',
    )
    kinds: list[str] | None = Field(
        ["raw"],
        description="apply only to records of these kinds; raw by default, as web-page heuristics "
        "would reject chat turns and instruction pairs (null: every kind)",
    )
    default_lang: str | None = Field(
        "en",
        description="language assumed for a record without `lang` whose letters are not mostly "
        "CJK or Thai (the papers filtered English); picks its stop words and overrides; null: "
        "no stop-word check for such records",
    )
    min_chars: int | None = _threshold(
        None,
        "fewer characters rejects; none of the papers sets one (character mode: see overrides)",
    )
    max_chars: int | None = _threshold(
        None, "more characters rejects (character mode: see overrides)"
    )
    max_lorem_ipsum: int | None = _threshold(
        0, 'occurrences of "lorem ipsum" (any case) allowed; C4 drops a page with any'
    )
    max_curly_braces: int | None = _threshold(
        0, 'curly brackets "{" allowed; C4 drops a page with any, to drop code'
    )
    min_words: int | None = _threshold(50, "fewer words rejects; Gopher 50 (word mode)")
    max_words: int | None = _threshold(100_000, "more words rejects; Gopher 100,000 (word mode)")
    min_mean_word_len: float | None = _threshold(
        3, "mean word length below rejects; Gopher 3 (word mode)"
    )
    max_mean_word_len: float | None = _threshold(
        10, "mean word length above rejects; Gopher 10 (word mode)"
    )
    max_symbol_word_ratio: float | None = _threshold(
        0.1, 'hashes "#" or ellipses per word above rejects; Gopher 0.1 (word mode)'
    )
    min_alpha_word_frac: float | None = _threshold(
        0.8, "share of words with a letter below rejects; Gopher 0.8 (word mode)"
    )
    min_stop_words: int | None = _threshold(
        2,
        "distinct stop words of the record's language (`stop_words`) fewer than this rejects; "
        "Gopher 2 (skipped for a language without a list)",
    )
    max_bullet_line_frac: float | None = _threshold(
        0.9, "share of lines starting with a bullet above rejects; Gopher 0.9"
    )
    max_ellipsis_line_frac: float | None = _threshold(
        0.3, "share of lines ending with an ellipsis above rejects; Gopher 0.3"
    )
    min_terminal_punct_line_frac: float | None = _threshold(
        0.12,
        "share of lines ending in terminal punctuation (. ! ? closing quote, 。！？) below rejects; "
        "FineWeb 0.12 (C4 dropped every such line)",
    )
    max_short_line_frac: float | None = _threshold(
        0.67, "share of lines of at most `short_line_chars` characters above rejects; FineWeb 0.67"
    )
    max_newline_word_ratio: float | None = _threshold(
        0.3, "newlines per word above rejects (lists); FineWeb 0.3 (word mode)"
    )
    max_javascript_line_frac: float | None = _threshold(
        None,
        'share of lines mentioning "javascript" above rejects; off: C4 dropped such lines, not '
        "pages, and a page-level rule would drop every page about JavaScript",
    )
    dup_line_frac: float | None = _threshold(
        0.3, "share of lines repeating an earlier line above rejects; Gopher 0.3"
    )
    dup_line_char_frac: float | None = _threshold(
        0.2, "share of characters in repeated lines above rejects; Gopher 0.2"
    )
    char_dup_ratio: float | None = _threshold(
        0.01,
        "the same share of characters in repeated lines, at FineWeb's stricter 0.01",
    )
    dup_para_frac: float | None = _threshold(
        0.3, "share of paragraphs repeating an earlier one above rejects; Gopher 0.3"
    )
    dup_para_char_frac: float | None = _threshold(
        0.2, "share of characters in repeated paragraphs above rejects; Gopher 0.2"
    )
    top_2gram_frac: float | None = _threshold(
        0.2,
        "share of characters in the most frequent word 2-gram above rejects; Gopher 0.2 "
        "(character mode: n-grams of 2 x chars_per_word characters)",
    )
    top_3gram_frac: float | None = _threshold(
        0.18, "the same for 3-grams; Gopher 0.18 (character mode: twice as many characters)"
    )
    top_4gram_frac: float | None = _threshold(
        0.16, "the same for 4-grams; Gopher 0.16 (character mode: twice as many characters)"
    )
    dup_5gram_frac: float | None = _threshold(
        0.15,
        "share of characters in word 5-grams that repeat an earlier one above rejects; Gopher "
        "0.15 (character mode: n-grams of 5 x chars_per_word characters)",
    )
    dup_6gram_frac: float | None = _threshold(0.14, "the same for 6-grams; Gopher 0.14")
    dup_7gram_frac: float | None = _threshold(0.13, "the same for 7-grams; Gopher 0.13")
    dup_8gram_frac: float | None = _threshold(0.12, "the same for 8-grams; Gopher 0.12")
    dup_9gram_frac: float | None = _threshold(0.11, "the same for 9-grams; Gopher 0.11")
    dup_10gram_frac: float | None = _threshold(0.10, "the same for 10-grams; Gopher 0.10")
    short_line_chars: int = Field(
        30, ge=0, description="a line this long or shorter is short; FineWeb 30"
    )
    chars_per_word: int = Field(
        CHARS_PER_WORD,
        ge=1,
        description="character mode: characters per word, to turn the papers' word n-grams into "
        "character n-grams (Japanese: 4, calibrated; see overrides)",
    )
    stop_words: dict[str, list[str]] = Field(
        STOP_WORDS,
        description="stop words per language: whole words in word mode, substrings in character "
        "mode; en is Gopher's list, ja common particles and inflection kana, pl the eight "
        "commonest Polish words",
    )
    overrides: dict[str, dict[str, Any]] = Field(
        OVERRIDES,
        description="thresholds that differ by mode (char, word) or language (ja, pl; a "
        "language's entry wins over its mode's); a spec's entries go over the defaults "
        "threshold by threshold (null switches a check off); by default character mode takes Gopher's "
        "word limits at two characters a word, Japanese has its calibrated units (4 characters "
        "a word in n-grams, 200 to 400,000 characters, short lines of 18), Polish n-gram "
        "repetition thresholds at 0.7 times Gopher's, and Thai, which "
        "ends sentences without punctuation, skips the terminal-punctuation check",
    )

    @field_validator("stop_words")
    @classmethod
    def _stop_words_by_base_lang(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        return {base_lang(lang) or lang: words for lang, words in value.items()}

    @field_validator("overrides")
    @classmethod
    def _check_overrides(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Each entry is checked as the options it replaces, so a wrong name or a negative
        threshold is a spec error before the run, not a surprise on the first Japanese page."""
        allowed = {check.name for check in CHECKS} | {"short_line_chars", "chars_per_word"}
        checked = {}
        for key, options in value.items():
            wrong = sorted(set(options) - allowed)
            if wrong:
                raise ValueError(
                    f"{key}: {', '.join(wrong)} cannot be overridden (thresholds only)"
                )
            try:
                valid = cls.model_validate({**options, "overrides": {}})
            except ValidationError as exc:
                problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
                raise ValueError(f"{key}: {problems}") from None
            target = key if key in MODES else (base_lang(key) or key)
            checked[target] = {name: getattr(valid, name) for name in options}
        return checked

    def for_text(self, mode: Mode, lang: str | None) -> FiltersConfig:
        """These options with the overrides of the mode, then of the language, applied; the
        spec's entries go over the calibrated defaults (`OVERRIDES`) threshold by threshold, so
        a spec that tunes one language does not lose the others' calibration."""
        update = {}
        for key in (mode, lang or ""):
            update.update({**OVERRIDES.get(key, {}), **self.overrides.get(key, {})})
        return self.model_copy(update=update) if update else self


class Measures:
    """The statistics of one text, each family computed on first use."""

    def __init__(self, text: str, mode: Mode, cfg: FiltersConfig, lang: str | None):
        self.text = text
        self.char_mode = mode == "char"
        self.stop_word_list = cfg.stop_words.get(lang or "")
        self.short_line_chars = cfg.short_line_chars
        self.chars_per_word = cfg.chars_per_word

    @cached_property
    def words(self) -> WordStats:
        return word_stats(self.text)

    @cached_property
    def lines(self) -> LineStats:
        return line_stats(self.text, self.short_line_chars)

    @cached_property
    def paragraph_dups(self) -> tuple[float, float]:
        return duplicate_fractions(paragraphs(self.text))

    @cached_property
    def units(self) -> Units:
        return ngram_units(self.text, self.char_mode)

    def ngram(self, n: int) -> int:
        """The n-gram length in units: the papers' word n, or characters at `chars_per_word`."""
        return n * self.chars_per_word if self.char_mode else n

    def stop_words(self) -> int | None:
        """Distinct stop words found; None where the language has no list (check skipped)."""
        if self.stop_word_list is None:
            return None
        return stop_words_found(self.text, self.stop_word_list, self.char_mode)


@dataclass(frozen=True)
class Check:
    """One check: its option (and reject reason), whether the value must stay above (min) or
    below (max) the threshold, and how to measure it (None: not measurable for this text)."""

    name: str
    bound: Literal["min", "max"]
    measure: Callable[[Measures], float | int | None]
    word_mode_only: bool = False

    def fails(self, value: float, threshold: float) -> bool:
        return value < threshold if self.bound == "min" else value > threshold


def _top(n: int) -> Check:
    return Check(f"top_{n}gram_frac", "max", lambda m: top_ngram_char_frac(m.units, m.ngram(n)))


def _dup(n: int) -> Check:
    return Check(f"dup_{n}gram_frac", "max", lambda m: dup_ngram_char_frac(m.units, m.ngram(n)))


CHECKS: tuple[Check, ...] = (
    Check("min_chars", "min", lambda m: len(m.text)),
    Check("max_chars", "max", lambda m: len(m.text)),
    Check("max_lorem_ipsum", "max", lambda m: m.text.lower().count("lorem ipsum")),
    Check("max_curly_braces", "max", lambda m: m.text.count("{")),
    Check("min_words", "min", lambda m: m.words.words, word_mode_only=True),
    Check("max_words", "max", lambda m: m.words.words, word_mode_only=True),
    Check("min_mean_word_len", "min", lambda m: m.words.mean_word_len, word_mode_only=True),
    Check("max_mean_word_len", "max", lambda m: m.words.mean_word_len, word_mode_only=True),
    Check("max_symbol_word_ratio", "max", lambda m: m.words.symbol_word_ratio, word_mode_only=True),
    Check("min_alpha_word_frac", "min", lambda m: m.words.alpha_word_frac, word_mode_only=True),
    Check("min_stop_words", "min", Measures.stop_words),
    Check("max_bullet_line_frac", "max", lambda m: m.lines.bullet_frac),
    Check("max_ellipsis_line_frac", "max", lambda m: m.lines.ellipsis_frac),
    Check("min_terminal_punct_line_frac", "min", lambda m: m.lines.terminal_punct_frac),
    Check("max_short_line_frac", "max", lambda m: m.lines.short_frac),
    Check(
        "max_newline_word_ratio", "max", lambda m: m.words.newline_word_ratio, word_mode_only=True
    ),
    Check("max_javascript_line_frac", "max", lambda m: m.lines.javascript_frac),
    Check("dup_line_frac", "max", lambda m: m.lines.dup_frac),
    Check("dup_line_char_frac", "max", lambda m: m.lines.dup_char_frac),
    Check("char_dup_ratio", "max", lambda m: m.lines.dup_char_frac),
    Check("dup_para_frac", "max", lambda m: m.paragraph_dups[0]),
    Check("dup_para_char_frac", "max", lambda m: m.paragraph_dups[1]),
    *(_top(n) for n in (2, 3, 4)),
    *(_dup(n) for n in range(5, 11)),
)


def text_mode(text: str, lang: str | None, default_lang: str | None) -> tuple[Mode, str | None]:
    """Word or character mode and the language whose stop words and overrides apply.

    A declared language decides; otherwise text whose letters are mostly CJK or Thai is in
    character mode, with the language its scripts point to, and any other text is in word mode
    in `default_lang`.
    """
    base = base_lang(lang)
    if base:
        return ("char" if base in CHAR_MODE_LANGS else "word"), base
    counts = script_counts(text)
    if char_mode_share(counts) > 0.5:
        return "char", script_lang(counts)
    return "word", base_lang(default_lang)


@dataclass(frozen=True)
class Failure:
    """A failed check: its name (the reject reason), its bound, the value and the threshold."""

    name: str
    bound: Literal["min", "max"]
    value: float
    threshold: float


@dataclass(frozen=True)
class Verdict:
    """What the checks found for one text: the mode and language used, the measured values by
    check name, and the failed checks in check order."""

    mode: Mode
    lang: str | None
    values: dict[str, float]
    failed: list[Failure]

    def to_meta(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "lang": self.lang,
            "values": self.values,
            "failed": [f.name for f in self.failed],
        }


def _rounded(value: float) -> float:
    return value if isinstance(value, int) else round(value, 4)


def evaluate(text: str, lang: str | None, cfg: FiltersConfig, all_checks: bool = False) -> Verdict:
    """Runs the checks on a text; stops at the first failure unless `all_checks` (tag mode)."""
    mode, lang = text_mode(text, lang, cfg.default_lang)
    if not text.strip():
        return Verdict(mode, lang, {}, [Failure(EMPTY, "min", 0, 1)])
    cfg = cfg.for_text(mode, lang)
    measures = Measures(text, mode, cfg, lang)
    values: dict[str, float] = {}
    failed: list[Failure] = []
    for check in CHECKS:
        threshold = getattr(cfg, check.name)
        if threshold is None or (check.word_mode_only and mode == "char"):
            continue
        value = check.measure(measures)
        if value is None:
            continue
        values[check.name] = _rounded(value)
        if check.fails(value, threshold):
            failed.append(Failure(check.name, check.bound, values[check.name], threshold))
            if not all_checks:
                break
    return Verdict(mode, lang, values, failed)


class QualityFilters(
    RecordStage,
    stage="filters",
    config=FiltersConfig,
    summary="Gopher, C4 and FineWeb quality heuristics; character mode for CJK and Thai",
):
    """Drops (or, with `action: tag`, annotates) records that fail a quality check."""

    def __init__(self, config: FiltersConfig | None = None, context: StageContext | None = None):
        super().__init__(config, context)

    def apply(self, record: Record) -> Record | Drop:
        tag = self.config.action == "tag"
        verdict = evaluate(record.text, record.lang, self.config, all_checks=tag)
        if tag:
            return dataclasses.replace(record, meta={**record.meta, "filters": verdict.to_meta()})
        if not verdict.failed:
            return record
        first = verdict.failed[0]
        if first.name == EMPTY:
            return Drop(EMPTY, "nothing but whitespace")
        bound = "at least" if first.bound == "min" else "at most"
        return Drop(
            first.name,
            f"measured {first.value}, must be {bound} {first.threshold} "
            f"({verdict.mode} mode, lang {verdict.lang})",
        )
