"""Shingles: the sets of word or character n-grams that near-duplicate detection compares.

Two texts are near-duplicates when their shingle sets overlap (Jaccard similarity). What a
shingle is depends on the writing system: English, Polish or Korean separate words with spaces,
so a shingle is `size` consecutive words; Japanese, Chinese, Thai, Lao, Khmer and Burmese do not,
and whitespace-split "words" there would be whole sentences, so a shingle is `size` consecutive
characters (whitespace left out). A record's declared language decides; without one, the share
of its letters in those scripts does.

Texts are compared case-folded and without punctuation, so "Hello, World!" and "hello world"
have the same shingles. Everything here is a pure function of the text, for the dedup stages and
for the contamination check alike; nothing here knows about Beam.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from functools import cache
from typing import Literal

import numpy as np

from iptkit.transforms.text.scripts import base_lang, code_points, spaceless_share, unicode_majors

Unit = Literal["word", "char"]

# Languages written without spaces between words: their shingles are character n-grams.
SPACELESS_LANGS = frozenset({"ja", "zh", "th", "lo", "km", "my"})
# "Most of the letters": the same rule as the quality filters' character mode.
SPACELESS_SHARE = 0.5


@cache
def _is_punctuation() -> np.ndarray:
    """Whether each code point is punctuation (Unicode category P*)."""
    return unicode_majors() == ord("P")


def strip_punctuation(text: str) -> str:
    """The text without punctuation of any script (Unicode categories Pc, Pd, Ps, Pe, Pi, Pf,
    Po): ASCII marks, `「」。、`, `¿¡`, `«»` and the like. Symbols ($, +, emoji) stay."""
    codes = code_points(text)
    return codes[~_is_punctuation()[codes]].tobytes().decode("utf-32-le", "surrogatepass")


def comparable_text(text: str) -> str:
    """The text as shingles see it: case-folded (Unicode-aware lower case) and without
    punctuation."""
    return strip_punctuation(text.casefold())


def shingle_unit(text: str, lang: str | None) -> Unit:
    """Words or characters: from the declared language when there is one (Korean is written
    with spaces: words), else from the text's letters."""
    base = base_lang(lang)
    if base:
        return "char" if base in SPACELESS_LANGS else "word"
    return "char" if spaceless_share(text) > SPACELESS_SHARE else "word"


def shingles(text: str, size: int, unit: Unit) -> set[str]:
    """The set of `size`-grams of the comparable text, words joined by one space or characters
    with whitespace left out, so line breaks and spacing never make two texts differ.

    A text too short for one n-gram is a single shingle: its whole comparable text, or the text
    itself when nothing comparable is left (only punctuation, or empty). It then still has a
    signature, which equals only that of a text with the same shingle.
    """
    canonical = comparable_text(text)
    if unit == "word":
        words = canonical.split()
        if len(words) < size:
            return {" ".join(words) or text}
        return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}
    chars = "".join(canonical.split())
    if len(chars) < size:
        return {chars or text}
    return {chars[i : i + size] for i in range(len(chars) - size + 1)}


def shingle_hashes(items: Iterable[str]) -> np.ndarray:
    """The shingles' 32-bit hashes (CRC-32: C speed, stable across processes and machines,
    unlike Python's `hash`), sorted and unique, as `uint32`.

    MinHash premixes its input hash, so CRC-32's linearity does not show in the signatures; two
    shingles of one text colliding (about n²/2³³ for n shingles) merely merge them.
    """
    return np.unique(
        np.fromiter(
            (zlib.crc32(s.encode("utf-8", "surrogatepass")) for s in items), dtype=np.uint32
        )
    )


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sets given as sorted unique arrays (`shingle_hashes`)."""
    common = np.intersect1d(a, b, assume_unique=True).size
    union = a.size + b.size - common
    return common / union if union else 1.0
