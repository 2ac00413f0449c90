"""Writing systems of text: which script each letter belongs to, and language tags' base codes.

Shared by language ID (the target-script ratio: a "Japanese" page that is 80% English
boilerplate is not Japanese data), the quality filters (character mode for scripts written
without spaces) and shingling for near-dedup. One table maps every code point to its script, so
counting a megabyte of text is a NumPy bincount, not a Python loop.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from functools import cache

import numpy as np

# Letter ranges per script. A code point counts only where it is a letter or a combining mark
# (Thai vowel signs are marks); digits, punctuation, symbols and spaces count for no script.
SCRIPT_RANGES: dict[str, tuple[tuple[int, int], ...]] = {
    "latin": ((0x0041, 0x005A), (0x0061, 0x007A), (0x00C0, 0x024F), (0x1E00, 0x1EFF),
              (0xFF21, 0xFF3A), (0xFF41, 0xFF5A)),
    "cyrillic": ((0x0400, 0x052F), (0x1C80, 0x1C8F), (0xA640, 0xA69F)),
    "greek": ((0x0370, 0x03FF), (0x1F00, 0x1FFF)),
    "arabic": ((0x0600, 0x06FF), (0x0750, 0x077F), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)),
    "hebrew": ((0x0590, 0x05FF),),
    "devanagari": ((0x0900, 0x097F),),
    "thai": ((0x0E00, 0x0E7F),),
    "lao": ((0x0E80, 0x0EFF),),
    "myanmar": ((0x1000, 0x109F),),
    "khmer": ((0x1780, 0x17FF),),
    "hangul": ((0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xAC00, 0xD7FF),
               (0xFFA0, 0xFFDC)),
    # Kana with its repeat marks (U+3031-3035), the masu mark and half-width sound marks.
    "kana": ((0x3031, 0x3035), (0x303C, 0x303C), (0x3040, 0x30FF), (0x31F0, 0x31FF),
             (0xFF66, 0xFF9F), (0x1B000, 0x1B16F)),
    # Han with the ideographic iteration and closing marks that Japanese uses daily (々, 〆, 〻).
    "han": ((0x3005, 0x3007), (0x303B, 0x303B), (0x3400, 0x4DBF), (0x4E00, 0x9FFF),
            (0xF900, 0xFAFF), (0x20000, 0x3134F)),
}  # fmt: skip
SCRIPTS = tuple(SCRIPT_RANGES)
OTHER = "other"  # letters of scripts not listed above
# Scripts written without spaces between words: whitespace-split "words" there are sentences.
SPACELESS_SCRIPTS = frozenset({"kana", "han", "thai", "lao", "myanmar", "khmer"})

# The scripts a language is written in, for the target-script ratio.
_LATIN = """en pl de fr es it pt nl sv da no nb nn fi cs sk sl hr bs sq ro hu et lv lt tr id ms
vi tl sw eu ca gl ga cy is af""".split()
_CYRILLIC = "ru uk be bg sr mk kk ky mn tg".split()
LANG_SCRIPTS: dict[str, frozenset[str]] = {
    "ja": frozenset({"kana", "han"}),
    "zh": frozenset({"han"}),
    "ko": frozenset({"hangul", "han"}),
    "th": frozenset({"thai"}),
    "lo": frozenset({"lao"}),
    "my": frozenset({"myanmar"}),
    "km": frozenset({"khmer"}),
    "el": frozenset({"greek"}),
    "he": frozenset({"hebrew"}),
    "yi": frozenset({"hebrew"}),
    **{lang: frozenset({"arabic"}) for lang in ("ar", "fa", "ur", "ps")},
    **{lang: frozenset({"devanagari"}) for lang in ("hi", "mr", "ne", "sa")},
    **{lang: frozenset({"cyrillic"}) for lang in _CYRILLIC},
    **{lang: frozenset({"latin"}) for lang in _LATIN},
}
# Script subtags of GlotLID / FineWeb-2 labels (`jpn_Jpan`, `srp_Latn`): they name the script
# outright, which beats the language's usual one (Serbian is written in both).
_SUBTAG_SCRIPTS = {
    "latn": frozenset({"latin"}),
    "cyrl": frozenset({"cyrillic"}),
    "grek": frozenset({"greek"}),
    "arab": frozenset({"arabic"}),
    "hebr": frozenset({"hebrew"}),
    "deva": frozenset({"devanagari"}),
    "thai": frozenset({"thai"}),
    "jpan": frozenset({"kana", "han"}),
    "hani": frozenset({"han"}),
    "hans": frozenset({"han"}),
    "hant": frozenset({"han"}),
    "hang": frozenset({"hangul"}),
    "kore": frozenset({"hangul", "han"}),
}
# ISO 639-3 and macrolanguage codes of GlotLID / FineWeb-2 labels, to the two-letter codes used
# everywhere else in iptkit.
LANG_ALIASES = {
    "jpn": "ja", "zho": "zh", "cmn": "zh", "yue": "zh", "wuu": "zh", "kor": "ko", "tha": "th",
    "lao": "lo", "khm": "km", "mya": "my", "eng": "en", "pol": "pl", "deu": "de", "fra": "fr",
    "spa": "es", "rus": "ru", "ukr": "uk", "ita": "it", "por": "pt", "nld": "nl",
}  # fmt: skip


def base_lang(code: str | None) -> str | None:
    """The base language of a tag: `zh-Hant` -> zh, `jpn_Jpan` -> ja, `EN` -> en."""
    if not code:
        return None
    base = re.split(r"[-_]", code.strip().lower(), maxsplit=1)[0]
    return LANG_ALIASES.get(base, base) or None


def lang_scripts(code: str | None) -> frozenset[str] | None:
    """The scripts a language tag is written in, or None where iptkit does not know them."""
    if not code:
        return None
    parts = re.split(r"[-_]", code.strip().lower())
    for subtag in parts[1:]:
        if subtag in _SUBTAG_SCRIPTS:
            return _SUBTAG_SCRIPTS[subtag]
    return LANG_SCRIPTS.get(base_lang(code) or "")


def check_script_ratios(value: dict[str, float]) -> dict[str, float]:
    """Validate a `{lang: minimum target-script ratio}` option (langid, translation checks):
    every language must have known scripts and every ratio lie in [0, 1]."""
    unknown = [lang for lang in value if lang_scripts(lang) is None]
    if unknown:
        raise ValueError(
            f"no known script for {', '.join(unknown)}; known: "
            f"{', '.join(sorted(LANG_SCRIPTS))} and tags with a script subtag (jpn_Jpan)"
        )
    if any(not 0.0 <= ratio <= 1.0 for ratio in value.values()):
        raise ValueError("ratios are between 0 and 1")
    return value


_NOT_LETTER = 0
_OTHER_ID = 1


@cache
def unicode_majors() -> np.ndarray:
    """The major general category (`L`, `M`, `N`, `P`, `S`, `Z`, `C`) of every code point, as
    ASCII bytes: one table lookup per character then replaces a regular expression or a
    per-character Python call. Built once per process (about 0.3 s)."""
    return np.frombuffer(
        "".join(unicodedata.category(chr(c))[0] for c in range(sys.maxunicode + 1)).encode(),
        dtype=np.uint8,
    )


@cache
def _script_table() -> np.ndarray:
    """The script id of every code point (0: not a letter, 1: a letter of another script)."""
    majors = unicode_majors()
    table = np.zeros(majors.size, dtype=np.uint8)
    is_letter = (majors == ord("L")) | (majors == ord("M"))
    table[is_letter] = _OTHER_ID
    for script_id, ranges in enumerate(SCRIPT_RANGES.values(), start=2):
        for first, last in ranges:
            block = table[first : last + 1]
            block[block == _OTHER_ID] = script_id
    return table


def code_points(text: str) -> np.ndarray:
    """The text's code points (lone surrogates from undecodable input bytes included)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


@cache
def _spaceless_ids() -> np.ndarray:
    return np.array([i for i, name in enumerate(SCRIPTS, start=2) if name in SPACELESS_SCRIPTS])


def spaceless_letters(codes: np.ndarray) -> np.ndarray:
    """Whether each code point is a letter of a script written without spaces (kana, Han,
    Thai...): there every character is a word of its own for n-gram matching."""
    return np.isin(_script_table()[codes], _spaceless_ids())


def script_counts(text: str) -> dict[str, int]:
    """Letters per script (and `other`), plus `letters`, their total."""
    counts = np.bincount(_script_table()[code_points(text)], minlength=len(SCRIPTS) + 2)
    result = {name: int(counts[i]) for i, name in enumerate(SCRIPTS, start=2)}
    result[OTHER] = int(counts[_OTHER_ID])
    result["letters"] = int(counts[1:].sum())
    return result


def share(counts: dict[str, int], scripts: frozenset[str] | set[str]) -> float:
    """The share of letters in `scripts`; 0 for a text without letters."""
    return sum(counts[s] for s in scripts) / counts["letters"] if counts["letters"] else 0.0


def script_shares(text: str) -> dict[str, float]:
    """Each script's share of the text's letters (digits, punctuation and spaces left out)."""
    counts = script_counts(text)
    return {name: share(counts, {name}) for name in (*SCRIPTS, OTHER) if counts[name]}


def target_script_ratio(text: str, lang: str | None) -> float | None:
    """The share of the text's letters written in `lang`'s own script(s) (kana + Han for
    Japanese), or None when iptkit does not know the language's script."""
    scripts = lang_scripts(lang)
    return None if scripts is None else share(script_counts(text), scripts)


def spaceless_share(text: str) -> float:
    """The share of letters in scripts written without spaces between words (CJK, Thai...)."""
    return share(script_counts(text), SPACELESS_SCRIPTS)
