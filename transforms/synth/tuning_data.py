"""Synthesizer tuning data: context-based task datasets -> the synthesizer's tuning sequences
(Cheng et al. 2024, section 2.1 and Appendix A/B).

Input: JSONL, one context per line with its tasks::

    {"context": "...", "questions": ["..."], "answers": ["..."],
     "options": [["a", "b"], null], "cots": [null, "..."], "dataset": "coqa"}

`options` and `cots` are optional (per question, null for none); `dataset` defaults to the
name given for the file. Each question/answer becomes one pair in the Table 7 format (options
as `- ` lines, `Let's think step by step.` with its reasoning), each context one example in the
synthesizer's format (`synth_format.cook_example`).

Per dataset, the `cap` examples with the most pairs are kept (paper: 10k, "to enhance task
diversity while avoiding dataset predominance"); they are ordered by a hash of the seed and
their id and concatenated greedily into sequences of at most `max_len` tokens of the
synthesizer's tokenizer, so each sequence is a few-shot example of one dataset. An example
alone over `max_len` loses its last pairs until it fits (dropped if even one pair does not).

Output: JSONL, one sequence per line: `id`, `dataset`, `text`, `examples` (source ids),
`pairs`, `tokens`, and `loss_spans`, the [start, end) character spans of each example's
pairs and its closing `</s>`, on which the trainer's `synth_tune` mode computes the loss (the
synthesizer learns to write pairs and to stop, not to reproduce the text). Read back as a
source with `kind: tuning, origin: converted, id_field: id`, these fields land in the record's
meta. A report with counts and the first problems found (by file and line) is written beside.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iptkit.errors import ConfigError
from iptkit.files import atomic_write
from iptkit.hashing import seeded_int
from iptkit.transforms.synth.lmops_format import (
    EOS,
    answer_text,
    cook_pairs,
    cook_read,
    question_text,
)

DEFAULT_CAP = 10_000
MAX_PROBLEMS = 20


@dataclass(frozen=True)
class TaskExample:
    """One context and its pairs, already in the synthesizer's pair format."""

    id: str
    dataset: str
    context: str
    pairs: list[dict[str, str]]

    def cooked(self, n_pairs: int | None = None) -> tuple[str, str]:
        """The example's text part and its pairs part (pairs + `</s>`, the loss span)."""
        pairs = self.pairs if n_pairs is None else self.pairs[:n_pairs]
        return cook_read(self.context), cook_pairs(pairs) + EOS


class BadLine(ValueError):
    """A line that cannot be an example; the message names the field."""


def _list(obj: dict[str, Any], name: str, n: int | None) -> list[Any] | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or (n is not None and len(value) != n):
        want = "a list" if n is None else f"a list of {n} (one per question)"
        raise BadLine(f"{name}: must be {want}")
    return value


def parse_example(obj: Any, example_id: str, dataset: str) -> TaskExample:
    """A TaskExample from one JSON line, or BadLine naming the field at fault."""
    if not isinstance(obj, dict):
        raise BadLine("line must be a JSON object")
    context = obj.get("context")
    if not isinstance(context, str) or not context.strip():
        raise BadLine("context: must be a non-empty string")
    questions = _list(obj, "questions", None) or []
    answers = _list(obj, "answers", len(questions))
    options = _list(obj, "options", len(questions)) or [None] * len(questions)
    cots = _list(obj, "cots", len(questions)) or [None] * len(questions)
    if not questions or answers is None:
        raise BadLine("questions, answers: need at least one question and its answer")
    pairs = []
    for i, (q, a, opts, cot) in enumerate(zip(questions, answers, options, cots, strict=True)):
        if not isinstance(q, str) or not isinstance(a, str) or not q.strip() or not a.strip():
            raise BadLine(f"questions[{i}], answers[{i}]: must be non-empty strings")
        if opts is not None and not (
            isinstance(opts, list) and all(isinstance(o, str) for o in opts)
        ):
            raise BadLine(f"options[{i}]: must be a list of strings or null")
        if cot is not None and not isinstance(cot, str):
            raise BadLine(f"cots[{i}]: must be a string or null")
        pairs.append(
            {
                "instruction": question_text(q.strip(), opts, bool(cot)),
                "response": answer_text(a.strip(), cot.strip() if cot else None),
            }
        )
    name = obj.get("dataset", dataset)
    return TaskExample(example_id, str(name), context.strip(), pairs)


def read_examples(path: Path, dataset: str, problems: list[str]) -> Iterator[TaskExample]:
    """The examples of one JSONL file; bad lines are reported in `problems` as file:line."""
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield parse_example(json.loads(line), f"{dataset}:{path.name}:{n}", dataset)
            except (json.JSONDecodeError, BadLine) as exc:
                problems.append(f"{path}:{n}: {exc}")


def select(examples: list[TaskExample], cap: int, seed: int) -> list[TaskExample]:
    """The `cap` examples with the most pairs (ties broken by a seeded hash of the id)."""
    ordered = sorted(examples, key=lambda e: (-len(e.pairs), seeded_int(seed, e.id), e.id))
    return ordered[:cap]


@dataclass(frozen=True)
class TuningSequence:
    id: str
    dataset: str
    text: str
    loss_spans: list[list[int]]
    examples: list[str]
    pairs: list[dict[str, str]]
    tokens: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dataset": self.dataset,
            "text": self.text,
            "loss_spans": self.loss_spans,
            "examples": self.examples,
            "pairs": self.pairs,
            "tokens": self.tokens,
        }


def pack(
    examples: list[TaskExample],
    count_tokens: Callable[[str], int],
    max_len: int,
    seed: int,
    stats: Counter,
) -> list[TuningSequence]:
    """Examples of one dataset concatenated greedily, in seeded order, into sequences of at
    most `max_len` tokens (each example counted alone: `</s><s>` is a clean token boundary)."""
    sequences: list[TuningSequence] = []
    parts: list[tuple[TaskExample, str, str, int, int]] = []  # example, read, pairs, tokens, n

    def close() -> None:
        text, spans, pairs, pos = "", [], [], 0
        for example, read, compre, _, n_pairs in parts:
            text += read + compre
            spans.append([pos + len(read), pos + len(read) + len(compre)])
            pos = len(text)
            pairs += example.pairs[:n_pairs]
        first = parts[0][0]
        sequences.append(
            TuningSequence(
                f"tuning:{first.dataset}:{len(sequences)}",
                first.dataset,
                text,
                spans,
                [p[0].id for p in parts],
                pairs,
                sum(p[3] for p in parts),
            )
        )
        parts.clear()

    used = 0
    for example in sorted(examples, key=lambda e: (seeded_int(seed, e.id), e.id)):
        n_pairs = len(example.pairs)
        while True:
            read, compre = example.cooked(n_pairs)
            n = count_tokens(read + compre)
            if n <= max_len or n_pairs == 1:
                break
            n_pairs -= 1
        if n > max_len:
            stats["too_long"] += 1
            continue
        if n_pairs < len(example.pairs):
            stats["pairs_cut"] += len(example.pairs) - n_pairs
        if parts and used + n > max_len:
            close()
            used = 0
        parts.append((example, read, compre, n, n_pairs))
        used += n
    if parts:
        close()
    return sequences


def convert(
    inputs: list[tuple[Path, str]],
    count_tokens: Callable[[str], int],
    max_len: int,
    cap: int = DEFAULT_CAP,
    seed: int = 0,
) -> tuple[list[TuningSequence], dict[str, Any]]:
    """All datasets' tuning sequences and a report; `inputs` are (file, dataset name)."""
    problems: list[str] = []
    by_dataset: dict[str, list[TaskExample]] = defaultdict(list)
    for path, dataset in inputs:
        for example in read_examples(path, dataset, problems):
            by_dataset[example.dataset].append(example)
    sequences: list[TuningSequence] = []
    report: dict[str, Any] = {"datasets": {}, "bad_lines": len(problems)}
    for dataset in sorted(by_dataset):
        stats: Counter = Counter()
        kept = select(by_dataset[dataset], cap, seed)
        packed = pack(kept, count_tokens, max_len, seed, stats)
        sequences += packed
        report["datasets"][dataset] = {
            "examples": len(by_dataset[dataset]),
            "selected": len(kept),
            "sequences": len(packed),
            "pairs": sum(len(s.pairs) for s in packed),
            **dict(sorted(stats.items())),
        }
    report["problems"] = problems[:MAX_PROBLEMS]
    return sequences, report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `iptkit synth tuning-data`."""
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="FILE[=DATASET]",
        help="JSONL files; dataset defaults to the file stem",
    )
    parser.add_argument("--out", required=True, help="output JSONL of tuning sequences")
    parser.add_argument(
        "--tokenizer",
        required=True,
        help="the synthesizer's tokenizer: a folder, or hub:ORG/NAME for the Hugging Face Hub",
    )
    parser.add_argument(
        "--max-len", type=int, default=4096, help="tokens per sequence (paper: 4096)"
    )
    parser.add_argument(
        "--cap", type=int, default=DEFAULT_CAP, help="examples per dataset (paper: 10k)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the example order")


def run_cli(args: argparse.Namespace) -> int:
    """`iptkit synth tuning-data`: write the sequences and OUT.report.json; print the report."""
    from iptkit.transforms.inference.core import load_tokenizer
    from iptkit.transforms.inference.model_files import is_hub

    if not is_hub(args.tokenizer) and not Path(args.tokenizer).exists():
        raise ConfigError(
            f"--tokenizer: no such folder: {Path(args.tokenizer).resolve()} (a tokenizer on the "
            f"Hugging Face Hub is written hub:{args.tokenizer})"
        )
    tokenizer = load_tokenizer(args.tokenizer)
    inputs = []
    for item in args.inputs:
        path, _, name = item.partition("=")
        inputs.append((Path(path), name or Path(path).name.split(".")[0]))
    sequences, report = convert(
        inputs,
        lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]),
        args.max_len,
        args.cap,
        args.seed,
    )
    out = Path(args.out)
    lines = (json.dumps(s.to_json(), ensure_ascii=False, sort_keys=True) + "\n" for s in sequences)
    atomic_write(out, "".join(lines))
    atomic_write(
        out.with_name(out.name + ".report.json"),
        json.dumps(report, indent=2, sort_keys=True) + "\n",
    )
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0
