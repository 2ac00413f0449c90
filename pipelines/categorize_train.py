"""`iptkit categorize train`: the categorize stage's classifier, from labelled local data.

LABELLED is JSON Lines, one `{"text": ..., "category": ...}` per line (other keys, such as
`lang`, are kept for the report); categories are the stage's (coding, general, math,
reasoning). The command trains `transforms/text/linear_classifier` on it and writes the model
(MODEL, an `.npz` the stage reads with `method: classifier, model: MODEL`). With `--heldout`,
it prints the accuracy of the classifier and of the rules on that file, overall and per `lang`,
so the two methods are compared on items neither saw.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from iptkit.errors import IptkitError
from iptkit.files import atomic_write
from iptkit.jsonl import json_objects


class LabelledDataError(IptkitError, ValueError):
    """A labelled file that cannot be read; the message names the file, line and field."""


@dataclass(frozen=True)
class Labelled:
    """One labelled text."""

    text: str
    category: str
    lang: str


def read_labelled(path: str | Path, categories: Sequence[str]) -> list[Labelled]:
    """The labelled texts of a JSONL file; a bad line is an error naming it and the fix."""
    rows = []
    for where, item in json_objects(path, "text and category", LabelledDataError):
        text, category = item.get("text"), item.get("category")
        if not isinstance(text, str) or not text.strip():
            raise LabelledDataError(f"{where}: field text must be a non-empty string")
        if category not in categories:
            raise LabelledDataError(
                f"{where}: field category is {category!r}; use one of {', '.join(categories)}"
            )
        rows.append(Labelled(text, category, str(item.get("lang") or "und")))
    if len({r.category for r in rows}) < 2:
        raise LabelledDataError(f"{path}: a classifier needs texts of at least two categories")
    return rows


def accuracy(rows: Sequence[Labelled], predict: Callable[[list[str]], list[str]]) -> dict:
    """Share of rows whose predicted category is their label: overall, per language (and n)."""
    got = predict([r.text for r in rows])
    right, seen = Counter(), Counter()
    for row, label in zip(rows, got, strict=True):
        seen[row.lang] += 1
        right[row.lang] += label == row.category
    by_lang = {lang: round(right[lang] / seen[lang], 4) for lang in sorted(seen)}
    return {"n": len(rows), "overall": round(sum(right.values()) / len(rows), 4), **by_lang}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `iptkit categorize train`."""
    parser.add_argument("labelled", help="JSONL of {text, category[, lang]}")
    parser.add_argument("--out", required=True, help="the model file to write (MODEL.npz)")
    parser.add_argument(
        "--heldout", help="JSONL of the same form: print both methods' accuracy on it"
    )
    parser.add_argument("--epochs", type=int, default=300, help="full gradient-descent passes")


def run_cli(args: argparse.Namespace) -> int:
    """Train, write the model and print a JSON report (held-out accuracy when asked)."""
    from iptkit.transforms.stages.categorize import CATEGORIES, classify
    from iptkit.transforms.text.linear_classifier import TrainOptions, train

    rows = read_labelled(args.labelled, CATEGORIES)
    model = train(
        [r.text for r in rows], [r.category for r in rows], options=TrainOptions(args.epochs)
    )
    atomic_write(args.out, model.to_bytes())
    report: dict = {"model": args.out, "trained_on": dict(Counter(r.category for r in rows))}
    if args.heldout:
        heldout = read_labelled(args.heldout, CATEGORIES)
        report["heldout"] = {
            "classifier": accuracy(heldout, lambda ts: [p[0] for p in model.predict(ts)]),
            "rules": accuracy(heldout, lambda ts: [classify(t)[0] for t in ts]),
        }
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0
