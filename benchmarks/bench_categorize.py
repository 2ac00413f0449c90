"""Accuracy of the categorize stage's methods on the held-out labelled set, per language.

    .venv/bin/python benchmarks/bench_categorize.py            # rules and classifier
    .venv/bin/python benchmarks/bench_categorize.py --llm-base-url http://HOST:8000/v1 \\
        --llm-model NAME                                        # and an LLM endpoint

Every method runs as the stage does, in an `iptkit run` over the held-out file
(tests/data/categorize_heldout.jsonl, never used to write the rules or to choose the
classifier's settings): `method: rules`; `method: classifier` with the model
`iptkit categorize train` writes from tests/data/categorize_labelled.jsonl; with the flags,
`method: llm` at an OpenAI-compatible endpoint (the tiny test models answer nothing meaningful,
so no LLM figure is measured without a real model). It also prints the classifier's 5-fold
cross-validation accuracy on the training file for the settings compared when its defaults
were chosen. Results: benchmarks/results/categorize.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
TRAIN, HELDOUT = DATA / "categorize_labelled.jsonl", DATA / "categorize_heldout.jsonl"
IPTKIT = Path(sys.executable).parent / "iptkit"


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run_method(work: Path, name: str, options: str) -> dict[str, str]:
    """Each held-out text's category, from an `iptkit run` of the stage with `options`."""
    data = work / "heldout.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": str(i), "text": r["text"]}) + "\n"
            for i, r in enumerate(rows(HELDOUT))
        )
    )
    spec = work / f"{name}.yaml"
    spec.write_text(
        f"seed: 0\noutput: {work / name}\nsources:\n"
        f"  - {{name: held, format: jsonl, path: {data}, kind: instruction, id_field: id}}\n"
        f"stages:\n  - categorize: {options}\n"
    )
    subprocess.run([str(IPTKIT), "run", str(spec)], check=True, capture_output=True)
    out = {}
    for path in sorted((work / name / "output").glob("*.jsonl.gz")):
        for line in gzip.decompress(path.read_bytes()).splitlines():
            record = json.loads(line)
            out[record["text"]] = record["category"]
    return out


def score(predicted: dict[str, str]) -> dict:
    right, seen = Counter(), Counter()
    for row in rows(HELDOUT):
        seen[row["lang"]] += 1
        right[row["lang"]] += predicted.get(row["text"]) == row["category"]
    n = sum(seen.values())
    return {"n": n, "overall": round(sum(right.values()) / n, 3)} | {
        lang: round(right[lang] / seen[lang], 3) for lang in sorted(seen)
    }


def cross_validation() -> list[dict]:
    """5-fold accuracy on the training file (folds by a hash of the text) for each setting."""
    from iptkit.hashing import keyed_int
    from iptkit.transforms.text.linear_classifier import FeatureOptions, TrainOptions, train

    data = rows(TRAIN)
    fold = [keyed_int(r["text"]) % 5 for r in data]
    results = []
    for (epochs, lr), l2, max_n in itertools.product(
        [(300, 2.0), (1000, 2.0), (300, 8.0)], [1e-4, 1e-3], [4, 5]
    ):
        right = 0
        for k in range(5):
            fit = [r for r, f in zip(data, fold, strict=True) if f != k]
            test = [r for r, f in zip(data, fold, strict=True) if f == k]
            model = train(
                [r["text"] for r in fit],
                [r["category"] for r in fit],
                FeatureOptions(max_n=max_n),
                TrainOptions(epochs, lr, l2),
            )
            got = model.predict([r["text"] for r in test])
            right += sum(p == r["category"] for (p, _), r in zip(got, test, strict=True))
        results.append(
            {
                "epochs": epochs,
                "lr": lr,
                "l2": l2,
                "max_n": max_n,
                "cv": round(right / len(data), 3),
            }
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--llm-base-url", help="an OpenAI-compatible endpoint to measure too")
    parser.add_argument("--llm-model", help="the served model's name")
    parser.add_argument("--no-cv", action="store_true", help="skip the cross-validation")
    args = parser.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = work / "categories.npz"
        subprocess.run(
            [str(IPTKIT), "categorize", "train", str(TRAIN), "--out", str(model)],
            check=True,
            capture_output=True,
        )
        methods = {
            "rules": "{trust_declared: false}",
            "classifier": f"{{method: classifier, model: {model}}}",
        }
        if args.llm_base_url:
            methods["llm"] = (
                f"{{method: llm, base_url: '{args.llm_base_url}', model: '{args.llm_model}', "
                "max_new_tokens: 8, endpoint: chat, unparsed: rules}"
            )
        for name, options in methods.items():
            results[name] = score(run_method(work, name, options))
    if not args.no_cv:
        results["cross_validation"] = cross_validation()
    out = REPO / "benchmarks" / "results" / "categorize.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    langs = [k for k in results["rules"] if k not in ("n", "overall")]
    print("| method | overall | " + " | ".join(langs) + " |")
    print("|---|---|" + "---|" * len(langs))
    for name in methods:
        r = results[name]
        print(f"| {name} | {r['overall']} | " + " | ".join(str(r[k]) for k in langs) + " |")
    for row in results.get("cross_validation", []):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
