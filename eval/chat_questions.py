"""Chat benchmark questions in MT-Bench's schema, read and checked.

One JSON object a line, as FastChat's `llm_judge/data/mt_bench/question.jsonl` (and the
Japanese MT-Bench's) writes them: `question_id` (a number or a string), `category`, `turns` (the
user's turns, in order) and, for the categories judged against a reference (math, reasoning,
coding), `reference` (one reference answer per turn). FastChat keeps some reference answers in a
separate answer file (`reference_answer/gpt-4.jsonl`: `question_id`, `choices[0].turns`);
`read_references` reads that form, and a question's own `reference` wins over it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from iptkit.errors import EvalError
from iptkit.jsonl import json_objects

# The categories MT-Bench grades with a reference answer (FastChat's NEED_REF_CATS).
REFERENCE_CATEGORIES = frozenset({"math", "reasoning", "coding"})


@dataclass(frozen=True)
class Question:
    """One multi-turn question; `reference` holds one answer per turn, or is empty."""

    id: str
    category: str
    turns: tuple[str, ...]
    reference: tuple[str, ...] = ()

    @property
    def needs_reference(self) -> bool:
        return self.category in REFERENCE_CATEGORIES


def _json_lines(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each non-blank line's object with its place `FILE:LINE`; a bad line is an error."""
    return json_objects(path, "question_id, category, turns", EvalError)


def _texts(value: Any, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
        raise EvalError(f"{where}: `{key}` must be a non-empty list of strings")
    return tuple(value)


def _id(row: dict[str, Any], where: str) -> str:
    value = row.get("question_id")
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise EvalError(f"{where}: `question_id` must be a number or a non-empty string")
    return str(value)


def read_references(path: Path) -> dict[str, tuple[str, ...]]:
    """FastChat's reference answer file: question id -> the reference's turns."""
    references: dict[str, tuple[str, ...]] = {}
    for where, row in _json_lines(path):
        choices = row.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise EvalError(f"{where}: `choices` must be a list of objects with `turns`")
        references[_id(row, where)] = _texts(choices[0].get("turns"), where, "choices[0].turns")
    return references


def read_questions(
    path: Path, turns: int, references: dict[str, tuple[str, ...]] | None = None
) -> list[Question]:
    """The questions, each cut to its first `turns` turns; an error names the file, the line and
    the field (a duplicate id, too few turns, a reference category without a reference)."""
    questions: list[Question] = []
    seen: set[str] = set()
    for where, row in _json_lines(path):
        qid = _id(row, where)
        if qid in seen:
            raise EvalError(f"{where}: duplicate question_id {qid!r}")
        seen.add(qid)
        category = row.get("category")
        if not isinstance(category, str) or not category:
            raise EvalError(f"{where}: `category` must be a non-empty string")
        asked = _texts(row.get("turns"), where, "turns")
        if len(asked) < turns:
            raise EvalError(f"{where}: {len(asked)} turn(s); the suite answers {turns}")
        question = Question(qid, category, asked[:turns])
        given = row.get("reference")
        reference = (
            _texts(given, where, "reference")
            if given is not None
            else (references or {}).get(qid, ())
        )
        if question.needs_reference and len(reference) < turns:
            raise EvalError(
                f"{where}: question {qid} ({category}) is graded against a reference answer "
                f"per turn and has {len(reference)} of {turns}: add `reference` to the line, or "
                "name FastChat's reference answer file in the suite's chat.references"
            )
        questions.append(replace(question, reference=reference[:turns]))
    if not questions:
        raise EvalError(f"{path}: no questions")
    return questions
