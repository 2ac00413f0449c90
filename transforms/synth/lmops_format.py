"""The instruction synthesizer's text format (Cheng et al. 2024, Appendix B; LMOps
instruction_pretrain/utils/read_compre.py), kept character for character so that the public
synthesizer model reads our prompts as it read its tuning data.

    <s> <CON> {text} </CON>\\n\\n<QUE> {q1} <ANS> {a1} </END>\\n\\n<QUE> {q2} <ANS> {a2} </END></s>

A text is `<s>` + ` <CON> {text} </CON>` (the leading space matters) + a blank line; pairs are
`<QUE> {question} <ANS> {answer} </END>` joined by blank lines; a finished example (an earlier
round's text and pairs, or a tuning example) ends with `</s>`. Questions with options or
chain-of-thought put them in the pair's text as Table 7 shows (`question_text`, `answer_text`).

Parsing follows `parse_comprehension`: split on `</END>`; drop an unterminated last piece; a
piece must hold exactly one `<ANS>`, its question must start with `<QUE>`, its answer must not be
empty; questions are deduplicated case-insensitively. Unlike LMOps we count what each rule
dropped, and `filter_pairs` adds the pair filters (empty, answer copied from the whole context,
overlong).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

BOS = "<s>"
EOS = "</s>"
DELIMITER = "\n\n"
END = "</END>"
QUE = "<QUE>"
ANS = "<ANS>"
READ_TEMPLATE = " <CON> {context} </CON>"  # the leading space is part of the format
QA_TEMPLATE = "<QUE> {question} <ANS> {answer} </END>"
COT_TRIGGER = "Let's think step by step."
COT_ANSWER = "Therefore, the answer is"


def cook_read(text: str) -> str:
    """A text as the synthesizer reads it: `<s> <CON> {text} </CON>` and a blank line."""
    return BOS + READ_TEMPLATE.replace("{context}", text) + DELIMITER if text else BOS


def cook_pairs(pairs: list[dict[str, str]]) -> str:
    """Pairs (`instruction`, `response`) in the synthesizer's format, joined by blank lines."""
    if not pairs:
        raise ValueError("an example needs at least one pair")
    return DELIMITER.join(
        QA_TEMPLATE.replace("{question}", p["instruction"]).replace("{answer}", p["response"])
        for p in pairs
    )


def cook_example(text: str, pairs: list[dict[str, str]]) -> str:
    """A finished example: the text, its pairs and `</s>` (an earlier round, or tuning data)."""
    return cook_read(text) + cook_pairs(pairs) + EOS


def question_text(question: str, options: list[str] | None = None, cot: bool = False) -> str:
    """A pair's question as Table 7 writes it: options as `- ` lines, then the CoT trigger."""
    lines = [question]
    if options:
        lines += ["Options:", *(f"- {o}" for o in options)]
    if cot:
        lines.append(COT_TRIGGER)
    return "\n".join(lines)


def answer_text(answer: str, cot: str | None = None) -> str:
    """A pair's answer as Table 7 writes it: with CoT, the reasoning then the answer."""
    return f"{cot}\n{COT_ANSWER} {answer}" if cot else answer


@dataclass
class ParseCounts:
    """What parsing and filtering dropped, by rule; `kept` pairs survived."""

    kept: int = 0
    dropped: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, int]:
        return {"kept": self.kept, **dict(sorted(self.dropped.items()))}


def parse_pairs(generated: str, counts: ParseCounts | None = None) -> list[dict[str, str]]:
    """The pairs in a synthesizer's output, parsed as LMOps does; drops are counted in `counts`.

    Text after a `</s>` is not part of this example (a model that runs on into a new example),
    so it is cut first; LMOps relies on vLLM stopping at the EOS token for the same effect.
    """
    counts = counts if counts is not None else ParseCounts()
    generated = generated.split(EOS, 1)[0]
    pieces = generated.split(END)
    if not generated.endswith(END):
        last = pieces.pop()
        if last.strip():
            counts.dropped["unterminated"] += 1
    pairs: list[dict[str, str]] = []
    seen: set[str] = set()
    for piece in pieces:
        if not piece.strip():
            continue  # the empty tail after the final </END>
        parts = piece.split(ANS)
        if len(parts) != 2:
            counts.dropped["ans_count"] += 1
            continue
        question, answer = parts[0].strip(), parts[1].strip()
        if not question.startswith(QUE):
            counts.dropped["no_question"] += 1
            continue
        if not answer:
            counts.dropped["empty_answer"] += 1
            continue
        question = question.replace(QUE, "").strip()
        if question.lower() in seen:
            counts.dropped["duplicate_question"] += 1
            continue
        seen.add(question.lower())
        pairs.append({"instruction": question, "response": answer})
    counts.kept += len(pairs)
    return pairs


def filter_pairs(
    pairs: list[dict[str, str]], context: str, max_chars: int, counts: ParseCounts
) -> list[dict[str, str]]:
    """Pairs worth training on: no empty question, no answer that copies the whole context, none
    over `max_chars` characters (question + answer). Drops are counted in `counts`."""
    whole = " ".join(context.split())
    kept = []
    for pair in pairs:
        question, answer = pair["instruction"].strip(), pair["response"].strip()
        if not question:
            reason = "empty"
        elif len(whole) > 0 and whole in " ".join(answer.split()):
            reason = "copied_context"
        elif len(question) + len(answer) > max_chars:
            reason = "overlong"
        else:
            kept.append(pair)
            continue
        counts.dropped[reason] += 1
    counts.kept -= len(pairs) - len(kept)
    return kept


def parse_sequence(sequence: str) -> list[tuple[str, list[dict[str, str]]]]:
    """The (text, pairs) examples of an N-shot sequence (tuning data, or a prompt plus its
    output). Tolerates the space before `</s>` that the paper's Table 13 shows."""
    examples = []
    for chunk in sequence.split(EOS):
        chunk = chunk.strip()
        if not chunk:
            continue
        if not chunk.startswith(BOS + READ_TEMPLATE.split("{")[0]):
            raise ValueError(f"an example must start with '<s> <CON>': {chunk[:60]!r}")
        body = chunk[len(BOS) + len(" <CON> ") :]
        text, sep, rest = body.partition(" </CON>")
        if not sep:
            raise ValueError(f"no '</CON>' in example: {chunk[:60]!r}")
        examples.append((text, parse_pairs(rest)))
    return examples
