"""Text statistics behind the quality filters: pure functions, one per family of statistics.

Every function is linear in the text's length (or n log n where it sorts n-gram hashes), so a
megabyte-long line or a text of one repeated character costs what any megabyte costs. The
filters stage compares the numbers to thresholds; nothing here knows about thresholds.

Word mode splits on whitespace, as Gopher, C4 and FineWeb did for English. Chinese, Japanese,
Korean and Thai do not (reliably) separate words with spaces, so in character mode a "unit" is
one non-space character; `CHARS_PER_WORD` converts the papers' word counts into characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from iptkit.transforms.text.scripts import (
    SCRIPT_RANGES,
    SPACELESS_SCRIPTS,
    code_points,
    script_counts,
    share,
)

# Segmented Chinese and Japanese text has roughly two characters a word or a little fewer, so a
# word n-gram of the papers is compared with a character n-gram twice as long, and a length in
# words with twice as many characters. Without the scaling, common 5-character phrases of
# ordinary Japanese (することが, ています) count as repetition in any long article.
CHARS_PER_WORD = 2

CHAR_MODE_LANGS = frozenset({"ja", "zh", "ko", "th"})
# Scripts of the character-mode languages. Hangul is among them: Korean is spaced, but its
# eojeol are not the words Gopher's statistics were calibrated on.
CHAR_MODE_SCRIPTS = frozenset({"kana", "han", "hangul", "thai"})
_LETTER = re.compile(r"[^\W\d_]")
_LETTER_OR_DIGIT = re.compile(r"[^\W_]")
_SCRIPT_LANG = {"han": "zh", "hangul": "ko", "thai": "th"}

BULLETS = ("-", "*", "\u2022", "\u2023", "\u2043", "\u25aa", "\u25ab", "\u25a0", "\u25a1",
           "\u25cf", "\u25cb", "\u25e6", "\u25b6", "\u2013", "\u30fb", "\u2219")  # fmt: skip
ELLIPSES = ("...", "\u2026")
# C4's terminal marks (period, exclamation and question marks, closing quotes) in their Latin,
# full-width and CJK forms; FineWeb's list covers the same across scripts.
TERMINAL_PUNCT = tuple(".!?\"'\u201d\u2019\u00bb\u3002\uff01\uff1f\uff0e\uff61\u300d\u300f\u2026")
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n")
_WHITESPACE_CODES = np.array([c for c in range(0x3001) if chr(c).isspace()], dtype=np.uint32)
_HASH_MULT = np.uint64(0x100000001B3)  # FNV-1 64-bit prime


def char_mode_share(counts: dict[str, int]) -> float:
    """The share of letters (from `scripts.script_counts`) in a character-mode script."""
    return share(counts, CHAR_MODE_SCRIPTS)


def script_lang(counts: dict[str, int]) -> str:
    """The character-mode language a text's letters point to: any kana means Japanese (Japanese
    mixes kana into Han text, Chinese never does), else the larger of Han, Hangul and Thai."""
    if counts["kana"]:
        return "ja"
    return _SCRIPT_LANG[max(_SCRIPT_LANG, key=lambda name: counts[name])]


@dataclass(frozen=True)
class WordStats:
    """Gopher's word-level quality statistics (Rae et al. 2021), with FineWeb's list ratio."""

    words: int
    mean_word_len: float
    symbol_word_ratio: float  # the larger of hash-to-word and ellipsis-to-word
    alpha_word_frac: float  # words with at least one letter
    newline_word_ratio: float  # FineWeb's list ratio


def word_stats(text: str) -> WordStats:
    """Word statistics of a whitespace-separated text."""
    words = text.split()
    n = len(words)
    if not n:
        return WordStats(0, 0.0, 0.0, 0.0, 0.0)
    symbols = max(text.count("#"), sum(text.count(e) for e in ELLIPSES))
    alpha = sum(map(bool, map(_LETTER.search, words)))
    return WordStats(
        words=n,
        mean_word_len=sum(map(len, words)) / n,
        symbol_word_ratio=symbols / n,
        alpha_word_frac=alpha / n,
        newline_word_ratio=text.count("\n") / n,
    )


def stop_words_found(text: str, stop_words: Iterable[str], char_mode: bool) -> int:
    """How many distinct stop words occur: as whole words (any case) in word mode, as substrings
    in character mode, where Japanese particles are written without spaces around them."""
    if char_mode:
        return sum(1 for w in set(stop_words) if w in text)
    words = set(re.findall(r"[^\W\d_]+", text.lower()))
    return len(words & {w.lower() for w in stop_words})


def duplicate_fractions(items: Sequence[str]) -> tuple[float, float]:
    """The share of items that repeat an earlier item, by count and by characters."""
    seen: set[str] = set()
    dup_count = dup_chars = 0
    for item in items:
        if item in seen:
            dup_count += 1
            dup_chars += len(item)
        else:
            seen.add(item)
    total_chars = sum(map(len, items))
    return (
        dup_count / len(items) if items else 0.0,
        dup_chars / total_chars if total_chars else 0.0,
    )


@dataclass(frozen=True)
class LineStats:
    """Line statistics of Gopher (bullets, ellipses, duplicates), C4 (terminal punctuation,
    javascript) and FineWeb (short lines), over the non-empty lines."""

    lines: int
    bullet_frac: float
    ellipsis_frac: float
    terminal_punct_frac: float
    short_frac: float
    javascript_frac: float
    dup_frac: float
    dup_char_frac: float


def line_stats(text: str, short_line_chars: int) -> LineStats:
    """Statistics of the text's non-empty lines (stripped); a line is short at or under
    `short_line_chars` characters."""
    lines = [s for s in (line.strip() for line in text.split("\n")) if s]
    n = len(lines)
    if not n:
        return LineStats(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    dup_frac, dup_char_frac = duplicate_fractions(lines)
    return LineStats(
        lines=n,
        bullet_frac=sum(1 for s in lines if s.startswith(BULLETS)) / n,
        ellipsis_frac=sum(1 for s in lines if s.endswith(ELLIPSES)) / n,
        terminal_punct_frac=sum(1 for s in lines if s.endswith(TERMINAL_PUNCT)) / n,
        short_frac=sum(1 for s in lines if len(s) <= short_line_chars) / n,
        javascript_frac=sum(1 for s in lines if "javascript" in s.lower()) / n,
        dup_frac=dup_frac,
        dup_char_frac=dup_char_frac,
    )


def paragraphs(text: str) -> list[str]:
    """The text's paragraphs (separated by blank lines), stripped, empty ones left out."""
    return [s for s in (p.strip() for p in _PARAGRAPH_BREAK.split(text)) if s]


@dataclass(frozen=True)
class Units:
    """A text as a sequence of units (words or characters) for n-gram statistics: an integer id
    per unit and its length in characters."""

    ids: np.ndarray
    lengths: np.ndarray

    @property
    def chars(self) -> int:
        return int(self.lengths.sum())


def ngram_units(text: str, char_mode: bool) -> Units:
    """Lower-cased words, or in character mode the non-space characters, as integer ids."""
    text = text.lower()
    if char_mode:
        codes = code_points(text)
        codes = codes[~np.isin(codes, _WHITESPACE_CODES)]
        return Units(codes.astype(np.uint64), np.ones(len(codes), dtype=np.int64))
    words = text.split()
    vocab = {word: i for i, word in enumerate(dict.fromkeys(words))}
    ids = np.fromiter(map(vocab.__getitem__, words), np.uint64, len(words))
    return Units(ids, np.fromiter(map(len, words), np.int64, len(words)))


def _sorted_ngrams(units: Units, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A 64-bit hash of the n-gram starting at each position (polynomial, wrapping), as the
    positions in hash order and the hashes in that order. The sort is stable, so among equal
    n-grams the first occurrence comes first."""
    count = len(units.ids) - n + 1
    hashes = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            hashes = hashes * _HASH_MULT + units.ids[k : k + count] + np.uint64(1)
    order = np.argsort(hashes, kind="stable")
    return order, hashes[order]


def _covered_chars(units: Units, starts: np.ndarray, n: int) -> int:
    """Characters of the units covered by n-grams starting at `starts`, each unit counted once
    where n-grams overlap."""
    depth = np.zeros(len(units.ids) + 1, dtype=np.int64)
    np.add.at(depth, starts, 1)
    np.add.at(depth, starts + n, -1)
    covered = np.cumsum(depth[:-1]) > 0
    return int(units.lengths[covered].sum())


def top_ngram_char_frac(units: Units, n: int) -> float:
    """Gopher's top n-gram character fraction: the share of characters inside occurrences of the
    most frequent n-gram (of equally frequent ones, the longest, so the result does not depend on
    hash order). An n-gram that occurs once is no repetition, so it counts as 0."""
    if len(units.ids) < n or not units.chars:
        return 0.0
    order, hashes = _sorted_ngrams(units, n)
    starts = np.flatnonzero(np.concatenate(([True], hashes[1:] != hashes[:-1])))
    counts = np.diff(np.append(starts, len(hashes)))
    if counts.max() < 2:
        return 0.0
    window = np.concatenate(([0], np.cumsum(units.lengths)))
    tied = np.flatnonzero(counts == counts.max())
    first = order[starts[tied]]
    top = tied[np.argmax(window[first + n] - window[first])]
    return _covered_chars(units, order[starts[top] : starts[top] + counts[top]], n) / units.chars


def dup_ngram_char_frac(units: Units, n: int) -> float:
    """Gopher's duplicated n-gram character fraction: the share of characters inside n-grams that
    repeat an earlier n-gram (first occurrences are not counted, overlaps count once)."""
    if len(units.ids) < n or not units.chars:
        return 0.0
    order, hashes = _sorted_ngrams(units, n)
    repeats = order[1:][hashes[1:] == hashes[:-1]]
    return _covered_chars(units, repeats, n) / units.chars


@cache
def _spaceless_run() -> re.Pattern[str]:
    ranges = "".join(
        f"{chr(first)}-{chr(last)}"
        for script in sorted(SPACELESS_SCRIPTS)
        for first, last in SCRIPT_RANGES[script]
    )
    return re.compile(f"[{ranges}]+")


def word_units(text: str) -> float:
    """A length comparable across scripts: whitespace words of spaced scripts plus letters of
    scripts written without spaces divided by `CHARS_PER_WORD`. A sentence and its Japanese
    translation come out within a factor of about two, where character counts differ three-fold,
    so a length-ratio check can use one pair of bounds for any language pair."""
    spaceless = sum(script_counts(text)[s] for s in SPACELESS_SCRIPTS)
    rest = _spaceless_run().sub(" ", text)
    words = sum(1 for token in rest.split() if _LETTER_OR_DIGIT.search(token))
    return words + spaceless / CHARS_PER_WORD
