"""How much instruction data the augmented texts carry, beside the paper's figures.

Cheng et al. 2024 (§3.1): "about 5 instruction-response pairs are created per raw text, where
each pair contains about 52 tokens". synthesize sums, over its augmented records, the raw texts
joined into them (the rounds), their pairs, the pairs' characters and, where the stage has a
tokenizer (the synthesizer's, or `tokenizer:` for the rules backend), the pairs' tokens
(instruction + response); and counts the layouts drawn. `pair_report` turns the sums into
RUN/synthesize/pairs.json, which the run report shows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam

PAPER_PAIRS_PER_TEXT = 5
PAPER_TOKENS_PER_PAIR = 52


@dataclass
class PairTally:
    """Sums over augmented records (one record's tally, or a combination of many)."""

    augmented: int = 0
    texts: int = 0
    pairs: int = 0
    pair_chars: int = 0
    pair_tokens: int = 0
    tokenized_pairs: int = 0
    layouts: Counter[str] = field(default_factory=Counter)
    question_first: int = 0
    by_lang: Counter[str] = field(default_factory=Counter)

    def add(self, other: PairTally) -> PairTally:
        self.augmented += other.augmented
        self.texts += other.texts
        self.pairs += other.pairs
        self.pair_chars += other.pair_chars
        self.pair_tokens += other.pair_tokens
        self.tokenized_pairs += other.tokenized_pairs
        self.layouts.update(other.layouts)
        self.question_first += other.question_first
        self.by_lang.update(other.by_lang)
        return self


def record_tally(
    pairs: list[dict[str, str]], synth: dict[str, Any], lang: str | None, tokens: list[int] | None
) -> PairTally:
    """One augmented record's tally; `tokens` per pair where a tokenizer counted them."""
    return PairTally(
        augmented=1,
        texts=int(synth.get("rounds", 1)),
        pairs=len(pairs),
        pair_chars=sum(len(p["instruction"]) + len(p["response"]) for p in pairs),
        pair_tokens=sum(tokens or ()),
        tokenized_pairs=len(tokens) if tokens is not None else 0,
        layouts=Counter([synth.get("layout", "classic")]),
        question_first=int(bool(synth.get("question_first"))),
        by_lang=Counter([lang or "null"]),
    )


def pair_report(tally: PairTally) -> dict[str, Any]:
    """pairs.json: pairs per raw text and tokens per pair, with the paper's figures beside."""

    def ratio(a: int, b: int) -> float | None:
        return round(a / b, 3) if b else None

    return {
        "augmented_records": tally.augmented,
        "raw_texts": tally.texts,
        "pairs": tally.pairs,
        "pairs_per_text": ratio(tally.pairs, tally.texts),
        "chars_per_pair": ratio(tally.pair_chars, tally.pairs),
        "tokens_per_pair": ratio(tally.pair_tokens, tally.tokenized_pairs),
        "paper": {"pairs_per_text": PAPER_PAIRS_PER_TEXT, "tokens_per_pair": PAPER_TOKENS_PER_PAIR},
        "layouts": dict(sorted(tally.layouts.items())),
        "question_first": tally.question_first,
        "languages": dict(sorted(tally.by_lang.items())),
    }


class CombineTallies(beam.CombineFn):
    """Sums PairTally values (order-free, so any runner gives the same report)."""

    def create_accumulator(self) -> PairTally:
        return PairTally()

    def add_input(self, acc: PairTally, value: PairTally) -> PairTally:
        return acc.add(value)

    def merge_accumulators(self, accs) -> PairTally:
        out = PairTally()
        for acc in accs:
            out.add(acc)
        return out

    def extract_output(self, acc: PairTally) -> PairTally:
        return acc
