"""Loader of the math tasks' data: local question/answer files, GSM8K's or MGSM's own included.

A file is JSONL with `question` and either `answer_number` (MGSM's field, and the bundled sets')
or `answer` ending in `#### N` (GSM8K's), or MGSM's TSV (`question<TAB>answer_number`, no
header). `test` holds the questions scored, `train` the few-shot examples; a relative path is
read next to this module, so the bundled tasks run from anywhere (an installed package
included), and an absolute one points a task at the real set (docs/eval.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets

DATA = Path(__file__).resolve().parent / "data"


def _number(text: str) -> str:
    """A number as the answer extraction leaves it: no thousands separators, no trailing .0."""
    text = text.strip().replace(",", "")
    return text[:-2] if text.endswith(".0") else text


def _row(path: Path, number: int, line: str) -> dict[str, str]:
    where = f"{path}:{number}"
    if path.suffix == ".tsv":
        question, tab, answer = line.rstrip("\n").rpartition("\t")
        if not tab or not question:
            raise ValueError(f"{where}: expected question<TAB>answer_number")
        return {"question": question, "answer_number": _number(answer)}
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not JSON: {exc}") from None
    if not isinstance(row, dict) or not isinstance(row.get("question"), str):
        raise ValueError(f"{where}: expected an object with a string `question`")
    if "answer_number" in row:
        return {"question": row["question"], "answer_number": _number(str(row["answer_number"]))}
    answer = row.get("answer")
    if isinstance(answer, str) and "####" in answer:
        return {"question": row["question"], "answer_number": _number(answer.split("####")[-1])}
    raise ValueError(f"{where}: no `answer_number`, and no `answer` ending in `#### N` (GSM8K)")


def read(file: str) -> list[dict[str, str]]:
    path = DATA / file  # an absolute `file` stays itself
    with path.open(encoding="utf-8") as lines:
        return [_row(path, n, line) for n, line in enumerate(lines, 1) if line.strip()]


def load(test: str, train: str, **_: Any) -> datasets.DatasetDict:
    """The test questions and the few-shot examples as lm-eval's splits. lm-eval also hands
    over its metadata (the model arguments) as keywords; they are ignored."""
    return datasets.DatasetDict(
        {
            "test": datasets.Dataset.from_list(read(test)),
            "train": datasets.Dataset.from_list(read(train)),
        }
    )
