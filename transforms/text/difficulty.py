"""Difficulty of a record for a curriculum (X-CIT's self-paced learning: easy before hard).

The default proxy needs no model: longer texts and texts with more structure (code blocks, list
items, equations) count as harder. Length is in `text_stats.word_units`, so a Japanese record
and its English original score alike. The score is `log2(1 + units)` plus one per code block,
a quarter per list item and a tenth per math symbol (at most 20 counted): the log keeps one very
long record from dwarfing the rest, and the order, not the scale, is what a curriculum uses.
"""

from __future__ import annotations

import math
import re

from iptkit.transforms.record import Record
from iptkit.transforms.text.text_stats import word_units

_LIST_ITEM = re.compile(r"(?m)^\s*(?:[-*\u2022\u30fb]|\d+[.)\u3002])\s*\S")
_MATH = re.compile(r"[=+\u00d7\u00f7^\u221a\u222b\u2211\u2264\u2265]|\\frac|\\sum|\\int")
MAX_MATH_SYMBOLS = 20


def length_structure(text: str) -> float:
    """The length-and-structure difficulty of one text."""
    code_blocks = text.count("```") // 2
    list_items = len(_LIST_ITEM.findall(text))
    symbols = min(len(_MATH.findall(text)), MAX_MATH_SYMBOLS)
    score = math.log2(1 + word_units(text)) + code_blocks + 0.25 * list_items + 0.1 * symbols
    return round(score, 4)


def record_text(record: Record) -> str:
    """Everything a model is trained on in a record: its text and its pairs, the instruction
    of a pair left out where it repeats the text."""
    parts = [record.text]
    for pair in record.pairs:
        if pair.get("instruction") != record.text:
            parts.append(pair.get("instruction", ""))
        parts.append(pair.get("response", ""))
    return "\n".join(parts)


def record_difficulty(record: Record) -> float:
    return length_structure(record_text(record))
