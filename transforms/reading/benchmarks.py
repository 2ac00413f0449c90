"""Benchmark sets for the contamination check: local JSONL or Parquet files, or lm-eval tasks.

A file's rows map onto one example shape (question, context, choices, answer, id) through a
field mapping, so ARC-, BoolQ- or MMLU-shaped files load without conversion; dotted names reach
into nested objects (`question.stem`). An lm-eval task is loaded offline only: its dataset must
already be in the local Hugging Face datasets cache (nothing is downloaded at run time), and a
task that is not there is a clear error naming the task and how to cache it.
"""

from __future__ import annotations

import glob
import json
import os
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from iptkit.errors import IptkitError
from iptkit.extras import require
from iptkit.transforms.stage_config import BASE_DIR

ROLES = ("question", "context", "choices", "answer", "id")


@dataclass(frozen=True)
class BenchExample:
    """One evaluation example; `context` + `question` is what the detectors look for."""

    benchmark: str
    id: str
    question: str
    context: str = ""
    choices: tuple[str, ...] = ()
    answer: str = ""

    def text(self, fields: tuple[str, ...] = ("context", "question")) -> str:
        """The example's text to look for: the named fields, one per line."""
        parts = [
            " ".join(self.choices) if name == "choices" else getattr(self, name) for name in fields
        ]
        return "\n".join(p for p in parts if p)


class FieldMap(BaseModel):
    """Which field of a row holds each part of an example (dotted names reach nested objects)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    question: str = Field("question", description="field with the question or prompt (required)")
    context: str | None = Field(
        "context", description="field with the passage the question is about, if any"
    )
    choices: str | None = Field(
        "choices",
        description="field with the answer choices: a list of strings, of {text} objects, or "
        "an object with a `text` list (the Hugging Face ARC layout)",
    )
    answer: str | None = Field("answer", description="field with the gold answer or its label")
    id: str | None = Field("id", description="field with the example id (else the row number)")


class BenchmarkSet(BaseModel):
    """A benchmark set: files (`path`) or an lm-eval task (`lm_eval_task`), one of the two."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(
        None, description="name in the report (default: the file's stem, or the task name)"
    )
    path: str | None = Field(
        None, description="JSONL or Parquet file or glob, relative to the spec's folder"
    )
    format: Literal["auto", "jsonl", "parquet"] = Field(
        "auto", description="file format; auto: from the extension (.parquet, else JSONL)"
    )
    fields: FieldMap = Field(default_factory=FieldMap, description="field mapping of the rows")
    lm_eval_task: str | None = Field(
        None, description="an lm-eval task name whose dataset is in the local datasets cache"
    )
    lm_eval_include_path: str | None = Field(
        None, description="a folder of extra lm-eval task YAMLs (lm-eval's include_path)"
    )
    split: Literal["test", "validation", "train", "auto"] = Field(
        "auto", description="lm-eval split; auto: test if the task has one, else validation"
    )

    @field_validator("path", "lm_eval_include_path")
    @classmethod
    def _resolve(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        base = (info.context or {}).get(BASE_DIR, os.getcwd())
        path = os.path.normpath(os.path.join(base, os.path.expanduser(value)))
        if not glob.glob(path):
            raise ValueError(f"no file matches {path} (paths are relative to the spec's folder)")
        return path

    @model_validator(mode="after")
    def _one_kind(self) -> BenchmarkSet:
        if (self.path is None) == (self.lm_eval_task is None):
            raise ValueError("give either path (local files) or lm_eval_task, not both or none")
        if self.lm_eval_task is not None:
            require("eval", "lm_eval_task", "lm_eval")
        return self

    def files(self) -> list[str]:
        return sorted(glob.glob(self.path)) if self.path else []


def _get(row: dict[str, Any], dotted: str) -> Any:
    value: Any = row
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(dotted)
        value = value[part]
    return value


def _choices(value: Any) -> tuple[str, ...]:
    if isinstance(value, dict) and isinstance(value.get("text"), list):
        value = value["text"]
    if not isinstance(value, list):
        raise TypeError("choices must be a list, or an object with a `text` list")
    return tuple(str(c["text"]) if isinstance(c, dict) else str(c) for c in value)


def example_from_row(
    row: Any, mapping: FieldMap, benchmark: str, where: str, position: int
) -> BenchExample:
    """One example from one row; a missing or wrong field is an IptkitError naming `where`."""
    if not isinstance(row, dict):
        raise IptkitError(f"{where}: a row must be a JSON object")
    explicit = mapping.model_fields_set
    values: dict[str, Any] = {}
    for role in ROLES:
        name = getattr(mapping, role)
        if name is None:
            continue
        try:
            value = _get(row, name)
        except KeyError:
            if role == "question" or role in explicit:
                raise IptkitError(
                    f"{where}: no field `{name}` for the {role} (set fields.{role} to the "
                    f"row's field name{'' if role == 'question' else ', or null'})"
                ) from None
            continue
        if value is None:
            continue
        try:
            values[role] = _choices(value) if role == "choices" else str(value)
        except TypeError as exc:
            raise IptkitError(f"{where}: field `{name}`: {exc}") from None
    if not values.get("question", "").strip():
        raise IptkitError(f"{where}: the question (field `{mapping.question}`) is empty")
    values.setdefault("id", str(position))
    return BenchExample(benchmark=benchmark, **values)


def _rows(path: str, fmt: str) -> list[tuple[str, Any]]:
    """(where, row) for every row of a file; `where` is `file:line` or `file:row N`."""
    if fmt == "parquet" or (fmt == "auto" and path.endswith(".parquet")):
        import pyarrow.parquet as pq

        return [
            (f"{path}:row {i}", row) for i, row in enumerate(pq.read_table(path).to_pylist(), 1)
        ]
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append((f"{path}:{number}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise IptkitError(f"{path}:{number}: not JSON ({exc.msg})") from None
    return rows


def set_name(bench: BenchmarkSet) -> str:
    if bench.name:
        return bench.name
    if bench.lm_eval_task:
        return bench.lm_eval_task
    files = bench.files()
    return Path(files[0]).name.split(".")[0] if len(files) == 1 else Path(bench.path).stem


def load_files(bench: BenchmarkSet) -> list[BenchExample]:
    name = set_name(bench)
    examples = []
    for path in bench.files():
        rows = _rows(path, bench.format)
        examples += [
            example_from_row(row, bench.fields, name, where, len(examples) + i)
            for i, (where, row) in enumerate(rows)
        ]
    if not examples:
        raise IptkitError(f"benchmark {name}: {bench.path} holds no examples")
    return examples


def _offline() -> None:
    """Forbid downloads for the datasets and hub libraries, even if already imported."""
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    import datasets.config
    import huggingface_hub.constants

    datasets.config.HF_DATASETS_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = True
    huggingface_hub.constants.HF_HUB_OFFLINE = True


def load_lm_eval(bench: BenchmarkSet) -> list[BenchExample]:
    """An lm-eval task's examples, from the local datasets cache only."""
    _offline()
    from lm_eval.tasks import TaskManager

    task_name = bench.lm_eval_task
    manager = TaskManager(include_path=bench.lm_eval_include_path)
    try:
        tasks = manager.load([task_name])["tasks"]
    except Exception as exc:  # noqa: BLE001 (lm-eval and datasets raise many types)
        raise IptkitError(
            f"lm-eval task {task_name}: cannot load it offline ({type(exc).__name__}: {exc}). "
            "iptkit never downloads benchmarks: cache the dataset first on a machine with "
            f"network (e.g. `lm_eval --tasks {task_name} --model dummy --limit 1`), or export it "
            "to JSONL and give `path` with a field mapping"
        ) from None
    if task_name not in tasks:
        raise IptkitError(f"lm-eval task {task_name}: a group, not a task; name its tasks")
    task = tasks[task_name]
    split = bench.split
    if split == "auto":
        split = "test" if task.has_test_docs() else "validation"
    docs = {
        "test": task.test_docs,
        "validation": task.validation_docs,
        "train": task.training_docs,
    }[split]()
    if docs is None:
        raise IptkitError(f"lm-eval task {task_name} has no {split} split")
    name = set_name(bench)
    examples = []
    for i, doc in enumerate(docs):
        choices = task.doc_to_choice(doc) if task.config.doc_to_choice else []
        target = task.doc_to_target(doc)
        if isinstance(target, int) and choices and 0 <= target < len(choices):
            target = choices[target]
        examples.append(
            BenchExample(
                benchmark=name,
                id=str(i),
                question=str(task.doc_to_text(doc)),
                choices=tuple(str(c) for c in choices),
                answer=str(target),
            )
        )
    return examples


@lru_cache(maxsize=32)
def load_set(bench: BenchmarkSet) -> tuple[BenchExample, ...]:
    """A benchmark set's examples (cached: validation and the run load each set once)."""
    examples = load_lm_eval(bench) if bench.lm_eval_task else load_files(bench)
    counts = Counter(e.id for e in examples)
    if len(counts) != len(examples):
        duplicate = next(i for i, n in counts.items() if n > 1)
        raise IptkitError(
            f"benchmark {set_name(bench)} ({bench.path or bench.lm_eval_task}): example id "
            f"{duplicate} is not unique; give each row its own id, or set fields.id to null to "
            "number the rows"
        )
    return tuple(examples)
