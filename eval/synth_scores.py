"""The scores of `iptkit synth eval` (Table 5 of Cheng et al. 2024) as pure functions: token F1
of a response, the F1 of a set of pairs against the gold set, and the summary rows with their
intervals. `eval/synth_quality.py` says which parts are the paper's and which are iptkit's own.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from iptkit.hashing import seeded_int
from iptkit.transforms.synth.lmops_format import END, EOS

SUITE = "synth-eval"
BOOTSTRAP = 1000  # resamples of the percentile-bootstrap interval

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_CJK = re.compile(r"([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af])")


def normalize(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(c for c in text.lower() if c not in set(string.punctuation))
    return " ".join(_ARTICLES.sub(" ", text).split())


def tokens(text: str) -> list[str]:
    """The normalised text's white-space tokens, each CJK character a token of its own."""
    return _CJK.sub(r" \1 ", normalize(text)).split()


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD's token F1: the harmonic mean of the shared-token precision and recall."""
    pred, ref = tokens(prediction), tokens(gold)
    common = sum((collections.Counter(pred) & collections.Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def pair_text(pair: dict[str, str]) -> str:
    return f"{pair['instruction']}\n{pair['response']}"


@dataclass(frozen=True)
class PairScore:
    """A set of generated pairs against the gold pairs: iptkit's matched set F1, the literal
    whole-text F1, and the matches as (gold index, generated index, similarity)."""

    precision: float
    recall: float
    f1: float
    text_f1: float
    matches: list[tuple[int, int, float]]


def pair_score(generated: list[dict[str, str]], gold: list[dict[str, str]]) -> PairScore:
    """Generated pairs scored against gold pairs (see the module docstring for both readings)."""
    text_f1 = token_f1(
        "\n".join(pair_text(p) for p in generated), "\n".join(pair_text(p) for p in gold)
    )
    if not generated or not gold:
        return PairScore(0.0, 0.0, 0.0, text_f1, [])
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    sims = np.array([[token_f1(pair_text(p), pair_text(g)) for p in generated] for g in gold])
    rows, cols = linear_sum_assignment(sims, maximize=True)
    matches = [(int(r), int(c), float(sims[r, c])) for r, c in zip(rows, cols, strict=True)]
    matched = sum(s for _, _, s in matches)
    precision, recall = matched / len(generated), matched / len(gold)
    f1 = 0.0 if matched == 0 else 2 * precision * recall / (precision + recall)
    return PairScore(precision, recall, f1, text_f1, matches)


def response_text(generated: str) -> str:
    """A response as the synthesizer ends it: before its `</END>` (or `</s>`), stripped."""
    return generated.split(END, 1)[0].split(EOS, 1)[0].strip()


def mean_interval(
    values: Sequence[float], seed: int
) -> tuple[float, float | None, tuple[float, float] | None]:
    """The mean, its standard error and a 95% percentile-bootstrap interval (seeded)."""
    import numpy as np

    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if len(data) < 2:
        return mean, None, None
    stderr = float(data.std(ddof=1) / np.sqrt(len(data)))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), (BOOTSTRAP, len(data)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return mean, stderr, (float(low), float(high))


def _groups(item: dict[str, Any], unseen: set[str] | None) -> list[tuple[int, str, str | None]]:
    """The rows an item counts in, as (level, group, category): its dataset, its split (when
    `--unseen` named any), and all."""
    split = None if unseen is None else ("unseen" if item["dataset"] in unseen else "seen")
    groups = [(0, item["dataset"], split)]
    if split is not None:
        groups.append((1, split, split))
    return [*groups, (2, "all", None)]


MEASURES = ("response_f1", "pair_f1", "pair_text_f1")


def summary_rows(items: Iterable[dict[str, Any]], unseen: set[str] | None, seed: int) -> list:
    """One row per group (datasets, splits, all), measure and shot count, in that order."""
    from iptkit.eval.summary import Row

    values: dict[tuple[int, str, str | None, int, int], list[float]] = collections.defaultdict(list)
    failed: collections.Counter = collections.Counter()
    for item in items:
        measures = (
            [("response_f1", item["f1"])]
            if item["kind"] == "response"
            else [("pair_f1", item["f1"]), ("pair_text_f1", item["text_f1"])]
        )
        for level, group, category in _groups(item, unseen):
            for metric, value in measures:
                key = (level, group, category, MEASURES.index(metric), item["shots"])
                values[key].append(value)
                failed[key] += int(item["error"] is not None)
    rows = []
    for key in sorted(values, key=lambda k: (k[0], k[1], k[3], k[4])):
        _, group, category, measure, shots = key
        mean, stderr, interval = mean_interval(values[key], seeded_int(seed, repr(key)) >> 33)
        metric = MEASURES[measure]
        name = metric if metric == "response_f1" else f"{metric}_{shots}shot"
        rows.append(
            Row(
                task=f"synth/{group}",
                metric=name,
                value=mean,
                stderr=stderr,
                n=len(values[key]),
                num_fewshot=None if metric == "response_f1" else shots,
                source=SUITE,
                flag=f"synth/{group} {name}: {failed[key]} failed generation(s) scored 0"
                if failed[key]
                else None,
                category=category,
                interval=interval,
            )
        )
    return rows
