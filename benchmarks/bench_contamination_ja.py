"""Calibrates the n-gram detector's window for Japanese: false positives on clean text against
recall of planted benchmark items, per window length.

    apt-get install -y --no-install-recommends debian-reference-ja developers-reference-ja \
        maint-guide-ja debian-faq-ja manpages-ja
    .venv/bin/python benchmarks/bench_contamination_ja.py      # about 10 minutes on one core

Everything is generated here from installed Debian packages (nothing is committed):
- the benchmark-like set: paragraphs of the Japanese Debian guides (Reference, Developer's
  Reference, New Maintainers' Guide, FAQ) as JSQuAD-like examples
  (`context`: the paragraph but its last sentence, `question`: that sentence), plus
  JCommonsenseQA-like short ones (`question` only: one sentence of 15 to 40 characters);
- clean documents: the Japanese man pages (manpages-ja), a different text by other translators
  on the same subject (commands, options, files), cut at paragraph breaks into documents of
  about 1,500 characters. No example is taken from them, so a flag is a false positive unless
  the document really shares a passage with the example: each flag is checked, and one whose
  longest common folded passage with the example is at least `REAL_CHARS` letters is counted as
  a real overlap (the two packages quote the same command descriptions now and then);
- planted items: each of `--planted` examples copied into a clean document three ways:
  verbatim; edited (spaces, line breaks and punctuation changed, as the recall tests do, and one
  letter in every 100 replaced); a fragment (a contiguous 40% of the text, at least 40
  characters, about 10 English words); 30-character fragments are shown too.

For each window (`ngram_spaceless`), the share of clean documents flagged and the recall of
each planted kind, by the n-gram detector alone and by the stage's default union (n-gram,
substring, exact). Results: benchmarks/results/contamination_ja.json and Markdown on stdout.
"""

from __future__ import annotations

import argparse
import difflib
import json
import random
import re
from pathlib import Path
from typing import Any

from textsources import SOURCES, _read, html_paragraphs, package_files, roff_paragraphs

from iptkit.transforms.reading.benchmarks import BenchExample
from iptkit.transforms.stages.decontaminate import (
    DecontaminateConfig,
    build_index,
    find_matches,
)
from iptkit.transforms.text.contam_text import fold

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
WORK = HERE / ".work" / "contamination_ja"
WINDOWS = (13, 16, 18, 19, 20, 21, 22, 24, 26)
ITEM_PACKAGES = (
    "debian-reference-ja",
    "developers-reference-ja",
    "maint-guide-ja",
    "debian-faq-ja",
)
DOC_CHARS = 1500
REAL_CHARS = 40  # a shared passage this long (folded letters) is real overlap, not a stock phrase
_SENTENCE = re.compile(r"(?<=[。！？])")
_KANA = re.compile(r"[\u3040-\u30ff]")


def paragraphs(package: str) -> list[list[str]]:
    """The Japanese paragraphs of each file of `package`, files in `dpkg -L` order."""
    (source,) = [s for s in SOURCES if s.package == package and s.lang == "ja"]
    out = []
    for path in package_files(source):
        raw = _read(path)
        if source.kind == "man" and raw.lstrip().startswith(".so "):
            continue
        paras = roff_paragraphs(raw, "ja") if source.kind == "man" else html_paragraphs(raw, "ja")
        out.append([p for p in paras if len(_KANA.findall(p)) >= 5])
    return out


def benchmark_set(files: list[list[str]], rng: random.Random, count: int) -> list[BenchExample]:
    """JSQuAD-like examples (context + question) and JCommonsenseQA-like short questions."""
    long_items, short_items, seen = [], [], set()
    for paras in files:
        for para in paras:
            sentences = [s.strip() for s in _SENTENCE.split(para) if s.strip()]
            if para in seen:
                continue
            seen.add(para)
            if len(sentences) >= 2 and len(para) >= 80:
                long_items.append((" ".join(sentences[:-1]), sentences[-1]))
            short_items += [("", s) for s in sentences if 15 <= len(s) <= 40 and s not in seen]
            seen.update(sentences)
    rng.shuffle(long_items)
    rng.shuffle(short_items)
    chosen = long_items[: count * 3 // 4] + short_items[: count - count * 3 // 4]
    return [
        BenchExample("jbench", f"j{i:05d}", question, context)
        for i, (context, question) in enumerate(chosen)
    ]


def clean_documents(files: list[list[str]]) -> list[str]:
    """Each file's paragraphs in reading order, cut into documents of about DOC_CHARS."""
    docs, seen = [], set()
    for paras in files:
        current: list[str] = []
        for para in paras:
            if para in seen:  # boilerplate repeated across pages (the translators' credits)
                continue
            seen.add(para)
            current.append(para)
            if sum(map(len, current)) >= DOC_CHARS:
                docs.append("\n".join(current))
                current = []
        if sum(map(len, current)) >= DOC_CHARS // 3:
            docs.append("\n".join(current))
    return docs


def edited(text: str, rng: random.Random) -> str:
    """Reformatted (punctuation dropped or changed, spaces and line breaks inserted), and one
    letter in every 100 replaced (none in a shorter item: a changed letter in a short question
    makes another question)."""
    chars = list(re.sub(r"[、。，．]", lambda m: rng.choice(["", " ", "，", m.group(0)]), text))
    for _ in range(3):
        chars.insert(rng.randrange(1, len(chars)), rng.choice([" ", "\n", "\u3000"]))
    for _ in range(len(chars) // 100):
        chars[rng.randrange(len(chars))] = rng.choice("あいうえおかきくけこアイウエオ")
    return "".join(chars)


def fragment(text: str, rng: random.Random, shortest: int = 40) -> str:
    """A contiguous 40% of the item, at least `shortest` characters (the whole of a shorter
    item). 40 Japanese characters are about 10 English words (3.99 characters a word on the
    Debian Reference, bench_filters_calibration.py), less than the 15-word fragments of the
    English recall tests and than lm-eval's 13-word window."""
    length = min(len(text), max(shortest, int(len(text) * 0.4)))
    start = rng.randrange(len(text) - length + 1)
    return text[start : start + length]


TRANSFORMS = {
    "verbatim": lambda t, _: t,
    "edited": edited,
    "fragment": fragment,
    "fragment30": lambda t, rng: fragment(t, rng, 30),  # shown, not a target: ~7 English words
}


def plant(item: str, host: str, rng: random.Random) -> str:
    lines = host.split("\n")
    at = rng.randrange(len(lines) + 1)
    return "\n".join(lines[:at] + [item] + lines[at:])


def real_overlap(text: str, example: BenchExample) -> int:
    """The longest passage (folded letters) the text shares with the example."""
    a, b = fold(text).text(), fold(example.text()).text()
    match = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return match.find_longest_match(0, len(a), 0, len(b)).size


def measure(window: int, bench: Path, examples, docs, planted, detectors) -> dict[str, Any]:
    cfg = DecontaminateConfig.model_validate(
        {"benchmarks": [str(bench)], "detectors": list(detectors), "ngram_spaceless": window}
    )
    index = build_index(examples, cfg, seed=1234)
    flagged, real, shown = 0, 0, []
    for doc in docs:
        matches = find_matches(doc, index, detectors)
        if not matches:
            continue
        overlap = max(real_overlap(doc, examples[m.example]) for m in matches)
        if overlap >= REAL_CHARS:
            real += 1
            continue
        flagged += 1
        if len(shown) < 5:
            shown.append(doc[matches[0].start : matches[0].end])
    recall = {}
    for kind, items in planted.items():
        found = sum(
            any(m.example == number for m in find_matches(text, index, detectors))
            for number, text in items
        )
        recall[kind] = found / len(items)
    return {
        "window": window,
        "detectors": "+".join(detectors),
        "false_positives": flagged,
        "real_overlaps": real,
        "fp_rate": flagged / len(docs),
        "recall": recall,
        "examples_of_false_matches": shown,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--planted", type=int, default=600)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    item_files = [f for package in ITEM_PACKAGES for f in paragraphs(package)]
    examples = benchmark_set(item_files, rng, args.examples)
    docs = clean_documents(paragraphs("manpages-ja"))
    WORK.mkdir(parents=True, exist_ok=True)
    bench = WORK / "jbench.jsonl"
    rows_out = [{"id": e.id, "question": e.question, "context": e.context} for e in examples]
    bench.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows_out))
    planted: dict[str, list[tuple[int, str]]] = {}
    for kind, transform in TRANSFORMS.items():
        chosen = rng.sample(range(len(examples)), args.planted)
        planted[kind] = [
            (n, plant(transform(examples[n].text(), rng), rng.choice(docs), rng)) for n in chosen
        ]
    rows = []
    for window in WINDOWS:
        for detectors in (("ngram",), ("ngram", "substring", "exact")):
            rows.append(measure(window, bench, examples, docs, planted, detectors))
    short = sum(1 for e in examples if not e.context)
    summary = {
        "examples": len(examples),
        "short_examples": short,
        "clean_docs": len(docs),
        "clean_chars": sum(map(len, docs)),
        "planted_per_kind": args.planted,
        "real_chars": REAL_CHARS,
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "contamination_ja.json"
    out.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print(
        f"{len(examples)} examples ({short} short), {len(docs)} clean documents "
        f"({summary['clean_chars']:,} characters), {args.planted} planted of each kind\n"
    )
    print("| window (letters) | detectors | false positives | FP rate | real overlaps | "
          "recall verbatim | edited | fragment | 30-character fragment |")  # fmt: skip
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        rec = r["recall"]
        print(
            f"| {r['window']} | {r['detectors']} | {r['false_positives']} | "
            f"{100 * r['fp_rate']:.2f}% | {r['real_overlaps']} | {rec['verbatim']:.3f} | "
            f"{rec['edited']:.3f} | {rec['fragment']:.3f} | {rec['fragment30']:.3f} |"
        )


if __name__ == "__main__":
    main()
