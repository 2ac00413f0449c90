"""Instruction-augmented texts on real prose: pairs per text and tokens per pair beside Cheng et
al. 2024 (section 3.1: about 5 pairs per raw text, about 52 tokens per pair), and the layouts.

The corpus is installed Debian documentation (benchmarks/textsources.py): documents of
`--paragraphs` consecutive paragraphs of one file and one language (en, ja, pl), at most
`--docs` per language, taken in file order. `iptkit run` synthesizes with the rules backend
(the AdaptLLM miner; the paper's synthesizer needs a GPU), 2 rounds over every text, and
counts pair tokens with `--tokenizer` (default: the bundled demo tokenizer, a small en/ja BPE,
so token counts are not Mistral's: characters per pair are given too). Only packages that are
installed are read; the figures say which.

    .venv/bin/python benchmarks/bench_ipt_text.py --out /tmp/ipt-text

prints a Markdown table (RESULTS.md) and writes OUT/results.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from textsources import (
    SOURCES,
    _read,
    html_paragraphs,
    package_files,
    paragraph_lang,
    roff_paragraphs,
)

REPO = Path(__file__).resolve().parents[1]
LANGS = ("en", "ja", "pl")


def installed(package: str) -> bool:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Status}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() == "installed"


def documents(max_docs: int, paragraphs: int) -> tuple[dict[str, list[str]], list[str]]:
    """Up to `max_docs` documents per language and the packages read."""
    docs: dict[str, list[str]] = defaultdict(list)
    used = []
    for source in SOURCES:
        if source.lang not in LANGS or len(docs[source.lang]) >= max_docs:
            continue
        if not installed(source.package):
            continue
        used.append(source.package)
        for path in package_files(source):
            raw = _read(path)
            if source.kind == "man":
                if raw.lstrip().startswith(".so "):
                    continue
                paras = roff_paragraphs(raw, source.lang)
            else:
                paras = html_paragraphs(raw, source.lang)
            paras = [p for p in paras if paragraph_lang(p) == source.lang]
            for i in range(0, len(paras) - paragraphs + 1, paragraphs):
                docs[source.lang].append("\n".join(paras[i : i + paragraphs]))
                if len(docs[source.lang]) >= max_docs:
                    break
            if len(docs[source.lang]) >= max_docs:
                break
    return dict(docs), sorted(set(used))


def write_spec(out: Path, docs: dict[str, list[str]], tokenizer: Path) -> Path:
    sources = []
    for lang, texts in docs.items():
        path = out / f"{lang}.jsonl.gz"
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            for i, text in enumerate(texts):
                fh.write(json.dumps({"id": f"{lang}-{i:05d}", "text": text}, ensure_ascii=False))
                fh.write("\n")
        sources.append(
            f"  - {{name: {lang}, format: jsonl, path: {path}, lang: {lang}, id_field: id}}"
        )
    spec = out / "spec.yaml"
    spec.write_text(
        "seed: 15\n"
        f"output: {out / 'run'}\n"
        "sources:\n" + "\n".join(sources) + "\n"
        "stages:\n"
        "  - synthesize: {backend: rules, rounds: 2, fraction: 1.0, "
        f"tokenizer: {tokenizer}}}\n"
    )
    return spec


def per_language(run: Path, tokenizer: Path) -> dict[str, dict[str, float]]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer / "tokenizer.json"))
    sums: dict[str, Counter] = defaultdict(Counter)
    for path in sorted((run / "output").glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                record = json.loads(line)
                row = sums[record["lang"]]
                row["records"] += 1
                if record["kind"] != "augmented":
                    row["raw_left"] += 1
                    continue
                pairs = record["pairs"]
                row["augmented"] += 1
                row["texts"] += record["meta"]["synth"]["rounds"]
                row["pairs"] += len(pairs)
                texts = [f"{p['instruction']}\n{p['response']}" for p in pairs]
                row["tokens"] += sum(len(e.ids) for e in tok.encode_batch(texts))
                row["chars"] += sum(len(t) - 1 for t in texts)
                row["words"] += sum(len(t.split()) for t in texts)
    out = {}
    for lang, row in sorted(sums.items()):
        pairs = row["pairs"] or 1
        out[lang] = {
            "augmented_records": row["augmented"],
            "texts_with_pairs": row["texts"],
            "texts_without_pairs": row["raw_left"],
            "pairs_per_text": round(row["pairs"] / max(row["texts"], 1), 2),
            "tokens_per_pair": round(row["tokens"] / pairs, 1),
            "chars_per_pair": round(row["chars"] / pairs, 1),
            "words_per_pair": round(row["words"] / pairs, 1),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--docs", type=int, default=400, help="documents per language")
    parser.add_argument("--paragraphs", type=int, default=6, help="paragraphs per document")
    parser.add_argument(
        "--tokenizer", type=Path, default=REPO / "pipelines" / "examples" / "tokenizer"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    docs, packages = documents(args.docs, args.paragraphs)
    spec = write_spec(args.out, docs, args.tokenizer.resolve())
    start = time.time()
    iptkit = Path(sys.executable).with_name("iptkit")
    subprocess.run([str(iptkit), "run", str(spec)], check=True, env={**os.environ})
    seconds = time.time() - start
    run = args.out / "run"
    overall = json.loads((run / "synthesize" / "pairs.json").read_text())
    langs = per_language(run, args.tokenizer)
    results = {
        "packages": packages,
        "documents": {k: len(v) for k, v in docs.items()},
        "paragraphs_per_document": args.paragraphs,
        "tokenizer": str(args.tokenizer),
        "seconds": round(seconds, 1),
        "overall": overall,
        "by_language": langs,
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print("| language | documents | augmented records | texts with pairs | texts without | "
          "pairs per text | tokens per pair | characters per pair | words per pair |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for lang, row in langs.items():
        print(
            f"| {lang} | {len(docs.get(lang, []))} | {row['augmented_records']} | "
            f"{row['texts_with_pairs']} | {row['texts_without_pairs']} | "
            f"{row['pairs_per_text']} | {row['tokens_per_pair']} | {row['chars_per_pair']} | "
            f"{row['words_per_pair']} |"
        )
    print(
        f"| all | {sum(len(v) for v in docs.values())} | {overall['augmented_records']} | "
        f"{overall['raw_texts']} | | {overall['pairs_per_text']} | {overall['tokens_per_pair']} | "
        f"{overall['chars_per_pair']} | |"
    )
    print("| Cheng et al. 2024 (3.1) | | | | | about 5 | about 52 (Mistral tokens) | | |")
    print(f"\nlayouts: {overall['layouts']}; pairs first: {overall['question_first']}")
    print(f"packages: {', '.join(packages)}; {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
