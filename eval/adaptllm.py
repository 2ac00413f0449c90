"""AdaptLLM's domain tasks (Cheng et al. 2023, used by Instruction Pre-Training's Table 3): their
data files, and their metrics as lm-eval hooks.

AdaptLLM ships each task's test set with the prompt already filled in (`input`: the zero-shot
question, or the few-shot demonstrations followed by the question), so the prompt format and the
shots travel with the data; lm-eval runs every task with `num_fewshot: 0` and adds nothing.
A row is `{"input", "options", "gold_index"}` for a choice task (plus `class_id` for Headline,
which asks one of nine yes/no questions about each headline) and `{"input", "label"}` for a
completion task (NER, ConvFinQA).

Scoring follows AdaptLLM's `src/utils/metric.py`, except where lm-eval cannot:

- choice tasks predict the option with the highest log-likelihood per character (lm-eval's
  `acc_norm` rule); AdaptLLM divides by the option's token count, which lm-eval's
  `process_results` cannot see;
- acc (PubMedQA, USMLE, MQP), micro F1 (ChemProt, RCT), weighted F1 (FPB, FiQA SA) and
  Headline's weighted F1 per question (`class_id`) averaged over the questions are
  scikit-learn's `f1_score`, as AdaptLLM computes them; Headline averages over the questions
  present (AdaptLLM divides by nine, the same on the full set);
- NER: entity-level F1 of `name (TYPE)` spans (nereval's text-and-type counting, each entity
  at offset 0 as AdaptLLM builds them), averaged over items;
- ConvFinQA: correct when a number in the first line of the answer is within 0.01 of the gold
  answer's first number (`%` divides by 100, thousands commas are dropped).

Values are fractions (0-1), as lm-eval reports them; AdaptLLM prints them times 100.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import datasets

DATA_ENV = "IPTKIT_ADAPTLLM_DATA"
"""A folder holding AdaptLLM's task repositories (`medicine-tasks/`, `finance-tasks/`); when set,
each task reads its real test file there (the task YAML's `dataset_kwargs.adaptllm`)."""

BUNDLED = Path(__file__).resolve().parent / "tasks" / "domain_adaptllm" / "data"


def data_file(file: str, adaptllm: str | None = None) -> Path:
    """The file a task reads: an absolute `file` as given (a suite's `overrides`), else the real
    file under `$IPTKIT_ADAPTLLM_DATA` when that is set, else the bundled toy file."""
    root = os.environ.get(DATA_ENV)
    if Path(file).is_absolute():
        path = Path(file)
    elif root and adaptllm:
        path = Path(root) / adaptllm
    else:
        path = BUNDLED / file
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such file (AdaptLLM task data: set {DATA_ENV} to the folder holding "
            "medicine-tasks/ and finance-tasks/, or give an absolute dataset_kwargs.file)"
        )
    return path


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON array file or a JSON Lines file; errors name the file and line."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        rows = json.loads(text)
        numbered = list(enumerate(rows, 1))
    else:
        numbered = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    numbered.append((number, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not JSON: {exc}") from None
    for number, row in numbered:
        if not isinstance(row, dict) or not isinstance(row.get("input"), str):
            raise ValueError(f"{path}:{number}: expected an object with a string `input`")
        if "options" in row and not (
            isinstance(row["options"], list) and isinstance(row.get("gold_index"), int)
        ):
            raise ValueError(f"{path}:{number}: `options` needs a list and an int `gold_index`")
        if "options" not in row and "label" not in row:
            raise ValueError(f"{path}:{number}: needs `options` + `gold_index`, or `label`")
    return [row for _, row in numbered]


def load(file: str, adaptllm: str | None = None, **_: Any) -> datasets.DatasetDict:
    """lm-eval's `custom_dataset`: the task's rows as its `test` split (lm-eval's other
    metadata keywords are ignored)."""
    rows = read_rows(data_file(file, adaptllm))
    columns = sorted({key for row in rows for key in row})
    return datasets.DatasetDict(
        {"test": datasets.Dataset.from_list([{k: row.get(k) for k in columns} for row in rows])}
    )


# ---------------------------------------------------------------------------------------------
# Choice tasks


def predicted_index(doc: dict[str, Any], results: list[tuple[float, bool]]) -> int:
    """The option with the highest log-likelihood per character of ` option`."""
    options = doc["options"]
    scores = [
        ll / max(1, len(" " + option)) for (ll, _), option in zip(results, options, strict=True)
    ]
    return max(range(len(scores)), key=scores.__getitem__)


def acc_results(doc: dict[str, Any], results: list[tuple[float, bool]]) -> dict[str, float]:
    return {"acc": float(predicted_index(doc, results) == doc["gold_index"])}


def f1_results(doc: dict[str, Any], results: list[tuple[float, bool]]) -> dict[str, Any]:
    pair = (doc["gold_index"], predicted_index(doc, results))
    return {"micro_f1": pair, "weighted_f1": pair}


def headline_results(doc: dict[str, Any], results: list[tuple[float, bool]]) -> dict[str, Any]:
    return {"headline_f1": (doc["class_id"], doc["gold_index"], predicted_index(doc, results))}


def micro_f1(items: list[tuple[int, int]]) -> float:
    """scikit-learn's micro F1 of (gold, predicted) pairs (on single-label data: accuracy)."""
    from sklearn.metrics import f1_score

    golds, preds = zip(*items, strict=True)
    return float(f1_score(golds, preds, average="micro"))


def weighted_f1(items: list[tuple[int, int]]) -> float:
    """scikit-learn's F1 per class weighted by the class's gold count."""
    from sklearn.metrics import f1_score

    golds, preds = zip(*items, strict=True)
    return float(f1_score(golds, preds, average="weighted"))


def headline_f1(items: list[tuple[int, int, int]]) -> float:
    """Weighted F1 within each Headline question (`class_id`), averaged over the questions."""
    by_class: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for class_id, gold, pred in items:
        by_class[class_id].append((gold, pred))
    return sum(weighted_f1(pairs) for pairs in by_class.values()) / len(by_class)


# ---------------------------------------------------------------------------------------------
# Completion tasks

_NER = re.compile(r"([^\s]+[\s]+)(\([^\s]+\))", re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?[.]?[\d]+(?:,\d\d\d)*[\.]?\d*(?:[eE][-+]?\d+)?[%]*")


def gold_text(doc: dict[str, Any]) -> str:
    label = doc["label"]
    return label[0] if isinstance(label, list) else label


def entities(text: str) -> list[tuple[str, str]]:
    """The `name (TYPE)` entities of a NER answer, first occurrence of each, in order (the
    pattern AdaptLLM parses: one word, white space, a type in parentheses)."""
    found: list[tuple[str, str]] = []
    for name, kind in _NER.findall(text):
        entity = (name[:-1] if len(name) > 1 else "", kind[1:-1] if len(kind) > 2 else "")
        if entity not in found:
            found.append(entity)
    return found


def entity_f1(gold: list[tuple[str, str]], predicted: list[tuple[str, str]]) -> float:
    """nereval's F1 for one text: each gold entity earns a point for a predicted entity with its
    text and one for one with its type (the first predicted entity matching either counts),
    out of two per gold entity (recall) and two per predicted entity (precision)."""
    correct = 0
    for text, kind in gold:
        for p_text, p_kind in predicted:
            text_match = text == p_text
            # nereval's type match also needs overlapping spans: at offset 0, any non-empty text
            type_match = kind == p_kind and bool(text) and bool(p_text)
            if text_match or type_match:
                correct += int(text_match) + int(type_match)
                break
    precision = correct / (2 * len(predicted)) if predicted else 0.0
    recall = correct / (2 * len(gold)) if gold else 0.0
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def ner_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    return {"entity_f1": entity_f1(entities(gold_text(doc)), entities(results[0]))}


def numbers(text: str) -> list[float]:
    """The numbers in the first line of `text` (`%` divides by 100; unreadable: infinity)."""
    values = []
    for match in _NUMBER.findall(text.split("\n")[0].strip()):
        digits = match.replace(",", "")
        percents = len(digits) - len(digits.rstrip("%"))
        try:
            values.append(float(digits.rstrip("%")) / 100**percents)
        except ValueError:
            values.append(math.inf)
    return values


def convfinqa_match(gold: str, answer: str) -> bool:
    """Whether a number of the answer's first line is within 0.01 of the gold's first."""
    wanted, got = numbers(gold), numbers(answer)
    return bool(wanted) and any(math.isclose(n, wanted[0], abs_tol=1e-2) for n in got)


def convfinqa_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    return {"convfinqa_em": float(convfinqa_match(gold_text(doc), results[0]))}
