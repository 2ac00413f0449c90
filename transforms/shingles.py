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

import re
import sys
import unicodedata
import zlib
from collections.abc import Iterable
from functools import cache
from typing import Literal

import numpy as np

Unit = Literal["word", "char"]

# Languages written without spaces between words: their shingles are character n-grams.
SPACELESS_LANGS = frozenset({"ja", "zh", "th", "lo", "km", "my"})
# ISO 639-3 and macrolanguage codes (GlotLID, FineWeb-2 labels) of those languages.
_LANG_ALIASES = {
    "jpn": "ja",
    "zho": "zh",
    "cmn": "zh",
    "yue": "zh",
    "wuu": "zh",
    "tha": "th",
    "lao": "lo",
    "khm": "km",
    "mya": "my",
}
# Letters of these scripts mark spaceless text: Thai and Lao, Myanmar, Khmer, kana, Han (with
# its extensions and compatibility block) and half-width katakana. Hangul is not among them.
_SPACELESS_RANGES = (
    (0x0E00, 0x0EFF),
    (0x1000, 0x109F),
    (0x1780, 0x17FF),
    (0x3040, 0x30FF),
    (0x31F0, 0x31FF),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0xFF66, 0xFF9D),
    (0x20000, 0x3134F),
)
# "Most of the letters": the same rule as the quality filters' character mode.
SPACELESS_SHARE = 0.5

_OTHER, _PUNCT, _LETTER, _SPACELESS = 0, 1, 2, 3


@cache
def _classes() -> np.ndarray:
    """The class of every code point: punctuation (Unicode category P*), letter (L* or M*: the
    vowel signs of Thai are marks), letter of a spaceless script, or other.

    One table lookup per character then replaces a regular expression or a per-character
    Python call; the table (1.1 MB) is built once per process, in about 0.3 s.
    """
    majors = np.frombuffer(
        "".join(unicodedata.category(chr(c))[0] for c in range(sys.maxunicode + 1)).encode(),
        dtype=np.uint8,
    )
    table = np.full(majors.size, _OTHER, dtype=np.uint8)
    table[majors == ord("P")] = _PUNCT
    table[(majors == ord("L")) | (majors == ord("M"))] = _LETTER
    for first, last in _SPACELESS_RANGES:
        block = table[first : last + 1]
        block[block == _LETTER] = _SPACELESS
    return table


def _codes(text: str) -> np.ndarray:
    # `surrogatepass` keeps lone surrogates (undecodable input bytes) as code points.
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def strip_punctuation(text: str) -> str:
    """The text without punctuation of any script (Unicode categories Pc, Pd, Ps, Pe, Pi, Pf,
    Po): ASCII marks, `「」。、`, `¿¡`, `«»` and the like. Symbols ($, +, emoji) stay."""
    codes = _codes(text)
    return codes[_classes()[codes] != _PUNCT].tobytes().decode("utf-32-le", "surrogatepass")


def comparable_text(text: str) -> str:
    """The text as shingles see it: case-folded (Unicode-aware lower case) and without
    punctuation."""
    return strip_punctuation(text.casefold())


def spaceless_share(text: str) -> float:
    """The share of the text's letters that belong to a script written without spaces."""
    classes = _classes()[_codes(text)]
    letters = np.count_nonzero(classes >= _LETTER)
    return np.count_nonzero(classes == _SPACELESS) / letters if letters else 0.0


def base_lang(code: str | None) -> str | None:
    """The base language of a tag: `zh-Hant` -> zh, `jpn_Jpan` -> ja, `JA` -> ja."""
    if not code:
        return None
    base = re.split(r"[-_]", code.strip().lower(), maxsplit=1)[0]
    return _LANG_ALIASES.get(base, base) or None


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
