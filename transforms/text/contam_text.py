"""Text as the contamination detectors compare it, with the way back to the original characters.

A text is folded once: case-folded (Unicode full case folding), punctuation, symbols and
format characters deleted (so "don't" and "dont" agree, as in lm-eval's janitor), letters,
combining marks and digits kept. Whitespace and control characters separate words. A letter of
a script written without spaces (kana, Han, Thai...) is a word of its own, so one n-gram size
works for English, Japanese and text that mixes them, and no text is ever split by a language
guess. Each kept character remembers its index in the original text, so a match becomes a span
the report can highlight and the `mask` action can cut out.

Hashes are polynomial rolling hashes modulo 2**64 computed with NumPy prefix sums (no Python
loop per character or word), finished with the SplitMix64 mixer: the hash of a window does not
depend on where it sits, so the same words hash alike in a benchmark item and in a document.
Everything here is a pure function of the text; nothing knows about Beam.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from iptkit.transforms.text.scripts import code_points, spaceless_letters, unicode_majors

_MASK64 = (1 << 64) - 1
CHAR_BASE = 0x9E3779B97F4A7C15  # odd, so it has an inverse modulo 2**64
_TOKEN_BASE = 0xC2B2AE3D27D4EB4F


@cache
def _powers(base: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """base**i and base**-i modulo 2**64 for i < length (NumPy's uint64 products wrap)."""
    inverse = pow(base, -1, 1 << 64)
    with np.errstate(over="ignore"):
        up = np.cumprod(np.full(length, base, dtype=np.uint64))
        down = np.cumprod(np.full(length, inverse, dtype=np.uint64))
    up = np.concatenate(([np.uint64(1)], up[:-1]))
    down = np.concatenate(([np.uint64(1)], down[:-1]))
    return up, down


def _power_tables(base: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Tables at least `length` long, grown by powers of two so the cache stays small."""
    size = 1024
    while size < length:
        size *= 2
    return _powers(base, size)


def mix(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: spreads the weak low bits of a polynomial hash over all 64."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64, copy=True)
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


class RollingHash:
    """Position-independent hashes of any window of a sequence of 64-bit values.

    With prefix sums Q[k] = sum_{j<k} v[j] * b**-j, the window [i, i+L) hashes to
    (Q[i+L] - Q[i]) * b**i = sum_t v[i+t] * b**-t, whatever i is.
    """

    def __init__(self, values: np.ndarray, base: int):
        n = values.size
        self._up, down = _power_tables(base, n + 1)
        with np.errstate(over="ignore"):
            self._prefix = np.concatenate(
                ([np.uint64(0)], np.cumsum(values.astype(np.uint64) * down[:n], dtype=np.uint64))
            )

    def spans(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Mixed hashes of the windows [starts[i], ends[i]), their lengths folded in."""
        with np.errstate(over="ignore"):
            raw = (self._prefix[ends] - self._prefix[starts]) * self._up[starts]
            return mix(raw + (ends - starts).astype(np.uint64) * np.uint64(_TOKEN_BASE))

    def windows(self, length: int) -> np.ndarray:
        """Hashes of every window of `length` values, in order (empty when the text is shorter)."""
        count = self._prefix.size - length
        if count <= 0:
            return np.zeros(0, dtype=np.uint64)
        starts = np.arange(count)
        return self.spans(starts, starts + length)


@dataclass(frozen=True)
class Folded:
    """A folded text: kept characters, their original indices, and its words.

    `chars[i]` is a kept code point, `origin[i]` its index in the original text; `words` holds
    the index in `chars` where each word starts, with `chars.size` appended.
    """

    chars: np.ndarray
    origin: np.ndarray
    words: np.ndarray
    spaceless: np.ndarray  # whether each word is one letter of a script written without spaces

    @property
    def n_words(self) -> int:
        return self.words.size - 1

    def text(self) -> str:
        """The kept characters as a string (letters and digits only, case-folded)."""
        return self.chars.astype(np.uint32).tobytes().decode("utf-32-le", "surrogatepass")

    def char_hashes(self) -> RollingHash:
        return RollingHash(self.chars.astype(np.uint64), CHAR_BASE)

    def word_values(self) -> np.ndarray:
        """One 64-bit hash per word."""
        return self.char_hashes().spans(self.words[:-1], self.words[1:])

    def word_hashes(self) -> RollingHash:
        return RollingHash(self.word_values(), _TOKEN_BASE)

    def ngram_spans(self, ngram: int, spaceless_chars: int) -> tuple[np.ndarray, np.ndarray]:
        """Word ranges [start, end) of every n-gram window, in order.

        A window holds `ngram` words of spaced text or `spaceless_chars` letters of text written
        without spaces, and in mixed text the same length in between: a spaced word weighs
        `spaceless_chars`, a spaceless letter `ngram`, and a window starting at each word ends
        where its weight first reaches `ngram * spaceless_chars`. The window depends only on the
        words from its start, so a passage gets the same windows in a benchmark example and in
        a document. Empty when the text is shorter than one window.
        """
        weights = np.where(self.spaceless, ngram, spaceless_chars).astype(np.int64)
        total = np.concatenate(([0], np.cumsum(weights)))
        ends = np.searchsorted(total, total[:-1] + ngram * spaceless_chars, side="left")
        starts = np.flatnonzero(ends <= self.n_words)
        return starts, ends[starts]

    def char_span(self, first: int, last: int) -> tuple[int, int]:
        """The original-text span from kept character `first` to `last` (inclusive)."""
        return int(self.origin[first]), int(self.origin[last]) + 1

    def word_span(self, first: int, count: int) -> tuple[int, int]:
        """The original-text span of `count` words from word `first`."""
        return self.char_span(int(self.words[first]), int(self.words[first + count]) - 1)


def fold(text: str) -> Folded:
    """Fold `text` for comparison (see the module docstring)."""
    folded = text.casefold()
    if len(folded) == len(text):
        origin = np.arange(len(text))
    else:  # ß -> ss, ligatures: map each folded character back to the one it came from
        pieces = [c.casefold() for c in text]
        origin = np.repeat(np.arange(len(text)), [len(p) for p in pieces])
        folded = "".join(pieces)
    codes = code_points(folded)
    majors = unicode_majors()[codes]
    keep = (majors == ord("L")) | (majors == ord("M")) | (majors == ord("N"))
    separator = (majors == ord("Z")) | ((codes < 0x20) | ((codes >= 0x7F) & (codes < 0xA0)))
    kept = np.flatnonzero(keep)
    chars = codes[kept]
    gaps = np.cumsum(separator)[kept]
    alone = spaceless_letters(chars)
    starts = np.ones(chars.size, dtype=bool)
    starts[1:] = (gaps[1:] != gaps[:-1]) | alone[1:] | alone[:-1]
    first = np.flatnonzero(starts)
    words = np.concatenate((first, [chars.size]))
    return Folded(chars=chars, origin=origin[kept], words=words, spaceless=alone[first])
