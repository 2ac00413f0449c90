"""Builds the cleaning benchmark's corpus from real Debian documentation, with planted duplicates.

    .venv/bin/python benchmarks/corpus.py --docs 100000 --out benchmarks/.work/corpus-100000

writes `docs.jsonl.gz` (`id`, `text`, `lang`), `truth.json` (every planted pair with its exact
Jaccard similarity) and `manifest.json` (package versions, seed, counts). Same packages, same
seed, same bytes.

How documents are made, and why:
- Paragraphs come from the packages in `textsources.SOURCES`. A paragraph seen before anywhere
  (licence blurbs, colophons, untranslated copies) is dropped, and so is one whose language
  (script, stopwords) is not its file's, so the base corpus has no duplicates we did not plant
  and its `lang` labels do not come from the classifier being benchmarked.
- Consecutive paragraphs of a file form blocks of at least `BLOCK_CHARS` characters; a document
  is a run of blocks up to a length drawn from a log-normal (median about 1,500 characters,
  like short web pages). First every file is cut into such documents in reading order
  ("natural" documents). The installed text gives roughly ten thousand of them, far fewer than
  the 100k the benchmark needs, so the rest are **deterministic recombinations**: blocks of one
  language drawn at random (seeded), at least `MIN_RECOMBINED_BLOCKS` per document, never the
  same pair of blocks in two documents, no block over 40% of a document: two documents share
  at most one block, a Jaccard similarity far below any dedup threshold, so the only near
  duplicates are the planted ones.
- Planted duplicates: byte-identical copies (groups of 2 or 3), and near copies edited word by
  word (English, Polish) or character run by character run (Japanese) until their Jaccard
  similarity with the original, on iptkit's own shingles, reaches a drawn target. The exact value
  reached is recorded. Each original is used once, so every planted group is disjoint.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from textsources import TextFile, package_versions, paragraph_lang, read_files

from iptkit.transforms.text.shingles import shingle_unit, shingles

HERE = Path(__file__).resolve().parent
# The files whose content decides the corpus: a change to any of them means a rebuild.
DEFINING_FILES = (HERE / "corpus.py", HERE / "textsources.py", Path(shingles.__code__.co_filename))

LANG_SHARES = {"en": 0.60, "ja": 0.25, "pl": 0.15}
BLOCK_CHARS = 250
MIN_RECOMBINED_BLOCKS = 3
MAX_BLOCK_SHARE = 0.4
DOC_CHARS_MEDIAN = 1500
DOC_CHARS_SIGMA = 0.7
DOC_CHARS_RANGE = (400, 12000)
EXACT_SHARE = 0.04  # of all documents: byte-identical copies
NEAR_SHARE = 0.10  # of all documents: edited copies
# Near-copy targets: most at or above a usual dedup threshold, the rest spread below it, so
# both recall (high buckets) and false positives (low buckets) are measured.
NEAR_TARGETS = ((0.6, (0.80, 1.0)), (0.4, (0.40, 0.80)))
SHINGLE_SIZE = 5


# --- shingles ----------------------------------------------------------------------------------


def shingle_set(text: str, lang: str) -> set[str]:
    """The document's shingles exactly as iptkit's dedup_near makes them (5 words, or 5
    characters for Japanese; case-folded, punctuation dropped), so planted Jaccard values are
    on the sets the stage estimates."""
    return shingles(text, SHINGLE_SIZE, shingle_unit(text, lang))


def jaccard(a: set[str], b: set[str]) -> float:
    """Exact Jaccard similarity of two shingle sets."""
    return len(a & b) / len(a | b) if a or b else 1.0


# --- base documents ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """Consecutive paragraphs of one file, the unit documents are made of."""

    lang: str
    paragraphs: tuple[str, ...]

    @property
    def chars(self) -> int:
        return sum(len(p) for p in self.paragraphs)


def clean_paragraphs(files: Iterator[TextFile]) -> Iterator[tuple[TextFile, list[str]]]:
    """Each file's paragraphs less those seen before and those in another language."""
    seen: set[bytes] = set()
    for file in files:
        kept = []
        for paragraph in file.paragraphs:
            key = hashlib.blake2b(" ".join(paragraph.split()).encode(), digest_size=16).digest()
            if key in seen:
                continue
            seen.add(key)
            lang = paragraph_lang(paragraph)
            if lang == file.lang or (lang is None and file.lang == "en"):
                kept.append(paragraph)
        yield file, kept


def file_blocks(files: Iterator[tuple[TextFile, list[str]]]) -> list[list[Block]]:
    """Every file's paragraphs grouped into blocks of at least BLOCK_CHARS, in reading order."""
    out = []
    for file, paragraphs in files:
        blocks, current = [], []
        for paragraph in paragraphs:
            current.append(paragraph)
            if sum(len(p) for p in current) >= BLOCK_CHARS:
                blocks.append(Block(file.lang, tuple(current)))
                current = []
        if current and blocks:  # a short tail joins the file's last block
            blocks[-1] = Block(file.lang, blocks[-1].paragraphs + tuple(current))
        if blocks:
            out.append(blocks)
    return out


def doc_length(rng: random.Random) -> int:
    """A document length in characters: log-normal, clipped to DOC_CHARS_RANGE."""
    value = rng.lognormvariate(math.log(DOC_CHARS_MEDIAN), DOC_CHARS_SIGMA)
    return int(min(max(value, DOC_CHARS_RANGE[0]), DOC_CHARS_RANGE[1]))


def natural_documents(files: list[list[Block]], rng: random.Random) -> list[list[Block]]:
    """Each file cut into documents in reading order; every block is used once."""
    docs = []
    for blocks in files:
        current: list[Block] = []
        target = doc_length(rng)
        for block in blocks:
            current.append(block)
            if sum(b.chars for b in current) >= target:
                docs.append(current)
                current, target = [], doc_length(rng)
        if current and sum(b.chars for b in current) >= DOC_CHARS_RANGE[0]:
            docs.append(current)
    return docs


def block_pairs(indices: list[int]) -> set[tuple[int, int]]:
    """Every unordered pair of blocks in a document."""
    ordered = sorted(indices)
    return {(a, b) for i, a in enumerate(ordered) for b in ordered[i + 1 :]}


def recombined_documents(
    pool: list[Block], used: set[tuple[int, int]], count: int, rng: random.Random
) -> list[list[Block]]:
    """`count` documents of random blocks from `pool` (one language).

    Why the rules: they keep every unplanted pair of documents far below any dedup threshold.
    A document has at least MIN_RECOMBINED_BLOCKS blocks and no block over MAX_BLOCK_SHARE of
    its text, and no two documents (natural ones included, through `used`) share two blocks;
    so two documents share at most one block, under half of either.
    """
    docs: list[list[Block]] = []
    while len(docs) < count:
        target = doc_length(rng)
        picks: list[int] = []
        chars = 0
        while (
            chars < target
            or len(picks) < MIN_RECOMBINED_BLOCKS
            or max(pool[i].chars for i in picks) > MAX_BLOCK_SHARE * chars
        ):
            index = rng.randrange(len(pool))
            if index not in picks:
                picks.append(index)
                chars += pool[index].chars
        pairs = block_pairs(picks)
        if used.isdisjoint(pairs):
            used |= pairs
            docs.append([pool[i] for i in picks])
    return docs


def doc_text(blocks: list[Block]) -> str:
    """A document's text: paragraphs separated by a blank line, as web text extractors do."""
    return "\n\n".join(p for b in blocks for p in b.paragraphs)


def base_documents(count_by_lang: dict[str, int], rng: random.Random) -> tuple[list[dict], dict]:
    """Base documents per language: natural ones first (shuffled), then recombined ones."""
    files = file_blocks(clean_paragraphs(read_files()))
    stats: dict = {}
    docs = []
    for lang, count in count_by_lang.items():
        lang_files = [f for f in files if f[0].lang == lang]
        natural = natural_documents(lang_files, rng)
        rng.shuffle(natural)
        chosen = natural[:count]
        pool = [b for f in lang_files for b in f]
        index = {id(b): i for i, b in enumerate(pool)}
        used = set().union(*(block_pairs([index[id(b)] for b in doc]) for doc in natural))
        chosen += recombined_documents(pool, used, count - len(chosen), rng)
        stats[lang] = {
            "blocks": len(pool),
            "paragraphs": sum(len(b.paragraphs) for b in pool),
            "chars": sum(b.chars for b in pool),
            "natural_available": len(natural),
            "natural_used": min(count, len(natural)),
            "recombined": max(0, count - len(natural)),
        }
        docs += [{"text": doc_text(blocks), "lang": lang} for blocks in chosen]
    return docs, stats


# --- planted duplicates ------------------------------------------------------------------------


def edit_script(units: list[str], vocab: list[str], rng: random.Random, ja: bool) -> list[tuple]:
    """A random sequence of unit edits (substitute, delete, insert).

    Japanese edits replace, drop or insert runs of 1-3 characters; the others, single words.
    Half as many edits as units take any document below the lowest target (each edit breaks
    about five shingles).
    """
    script = []
    for _ in range(len(units) // 2 + 10):
        op = rng.choices(("sub", "del", "ins"), weights=(0.7, 0.15, 0.15))[0]
        run = rng.randint(1, 3) if ja else 1
        script.append((op, rng.random(), [rng.choice(vocab) for _ in range(run)], run))
    return script


def apply_edits(units: list[str], script: list[tuple], k: int) -> list[str]:
    """The units after the first `k` edits; positions are fractions, so any prefix applies."""
    out = list(units)
    for op, where, new, run in script[:k]:
        i = min(int(where * len(out)), max(len(out) - 1, 0))
        if op == "sub" and out:
            out[i : i + run] = new
        elif op == "del" and len(out) > run:
            del out[i : i + run]
        else:
            out[i:i] = new
    return out


def tokens(text: str, ja: bool) -> list[str]:
    """Editable units that keep the text's layout: characters for Japanese, else words with the
    whitespace after them (so joining gives the text back, paragraph breaks included)."""
    return list(text) if ja else re.findall(r"\S+\s*", text)


def near_copy(
    text: str, lang: str, target: float, vocab: list[str], rng: random.Random
) -> tuple[str, float]:
    """An edited copy of `text` whose Jaccard similarity with it is as close to `target` as the
    edit script allows (binary search on the number of edits); returns it with its exact value."""
    ja = lang == "ja"
    units = tokens(text, ja)
    original = shingle_set(text, lang)
    script = edit_script(units, vocab, rng, ja)
    lo, hi = 1, len(script)
    best = ("", -1.0)
    while lo <= hi:
        k = (lo + hi) // 2
        copy = "".join(apply_edits(units, script, k))
        value = jaccard(original, shingle_set(copy, lang))
        # A copy equal to the original (an edit that put back what it took) is no near copy.
        if copy != text and abs(value - target) < abs(best[1] - target):
            best = (copy, value)
        if value > target:
            lo = k + 1
        else:
            hi = k - 1
    return best


def vocabulary(docs: list[dict], lang: str, rng: random.Random, size: int = 20000) -> list[str]:
    """Replacement units for edits, from the corpus itself: words (with a trailing space) or, for
    Japanese, characters."""
    same = [d for d in docs if d["lang"] == lang]
    sample = rng.sample(same, min(500, len(same)))
    units = [
        u for d in sample for u in (d["text"] if lang == "ja" else re.findall(r"\S+ ", d["text"]))
    ]
    units = [u for u in units if not u.isspace()]
    return [rng.choice(units) for _ in range(size)]


def near_target(rng: random.Random) -> float:
    """A target Jaccard similarity from NEAR_TARGETS."""
    (_, low), (_, high) = NEAR_TARGETS
    weight = NEAR_TARGETS[0][0]
    lo, hi = low if rng.random() < weight else high
    return rng.uniform(lo, hi)


def plant(
    base: list[dict], n_exact: int, n_near: int, rng: random.Random
) -> tuple[list[dict], list[dict]]:
    """Add exact and near copies of distinct base documents; returns (copies, planted pairs).

    Pairs name documents by their index in base + copies; ids are given after shuffling.
    """
    order = list(range(len(base)))
    rng.shuffle(order)
    vocab = {lang: vocabulary(base, lang, rng) for lang in LANG_SHARES}
    copies: list[dict] = []
    pairs: list[dict] = []
    originals = iter(order)
    while len(copies) < n_exact:
        src = next(originals)
        group = [src]
        for _ in range(min(rng.choice((1, 1, 2)), n_exact - len(copies))):
            copies.append(dict(base[src]))
            group.append(len(base) + len(copies) - 1)
        pairs += [
            {"a": a, "b": b, "kind": "exact", "jaccard": 1.0}
            for i, a in enumerate(group)
            for b in group[i + 1 :]
        ]
    for _ in range(n_near):
        src = next(originals)
        doc = base[src]
        text, value = near_copy(doc["text"], doc["lang"], near_target(rng), vocab[doc["lang"]], rng)
        copies.append({"text": text, "lang": doc["lang"]})
        pairs.append(
            {"a": src, "b": len(base) + len(copies) - 1, "kind": "near", "jaccard": round(value, 6)}
        )
    return copies, pairs


# --- the corpus --------------------------------------------------------------------------------


def lang_counts(total: int) -> dict[str, int]:
    """Documents per language for `total`, by LANG_SHARES (the last language takes the rest)."""
    counts = {lang: int(total * share) for lang, share in LANG_SHARES.items()}
    last = list(LANG_SHARES)[-1]
    counts[last] += total - sum(counts.values())
    return counts


def build(total: int, seed: int) -> tuple[list[dict], list[dict], dict]:
    """Documents (shuffled, with ids), planted pairs (by id) and the manifest for `total` docs."""
    rng = random.Random(seed)
    n_exact = int(total * EXACT_SHARE)
    n_near = int(total * NEAR_SHARE)
    base, pool_stats = base_documents(lang_counts(total - n_exact - n_near), rng)
    copies, pairs = plant(base, n_exact, n_near, rng)
    docs = base + copies
    order = list(range(len(docs)))
    rng.shuffle(order)
    ids = {index: f"doc-{position:07d}" for position, index in enumerate(order)}
    rows = [{"id": ids[i], "text": docs[i]["text"], "lang": docs[i]["lang"]} for i in order]
    truth = sorted(
        ({**p, "a": ids[p["a"]], "b": ids[p["b"]], "lang": docs[p["a"]]["lang"]} for p in pairs),
        key=lambda p: (p["a"], p["b"]),
    )
    manifest = {
        "documents": len(rows),
        "seed": seed,
        "shingles": f"iptkit.transforms.text.shingles, size {SHINGLE_SIZE}: words (en, pl) or "
        "characters (ja), case-folded, punctuation and whitespace dropped",
        "build_key": build_key(),
        "planted_exact_copies": n_exact,
        "planted_near_copies": n_near,
        "by_lang": {lang: sum(r["lang"] == lang for r in rows) for lang in LANG_SHARES},
        "text_pool": pool_stats,
        "packages": package_versions(),
    }
    return rows, truth, manifest


def write(out: Path, rows: list[dict], truth: list[dict], manifest: dict) -> None:
    """Write the three files; gzip without a timestamp so the same build gives the same bytes."""
    out.mkdir(parents=True, exist_ok=True)
    with (
        open(out / "docs.jsonl.gz", "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f,
    ):
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False).encode() + b"\n")
    (out / "truth.json").write_text(json.dumps(truth, indent=0, ensure_ascii=False) + "\n")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def build_key() -> str:
    """A digest of the code that decides the corpus (this builder, the text extraction and
    iptkit's shingles), so a cached corpus is reused only when it would come out the same."""
    digest = hashlib.blake2b(digest_size=8)
    for path in DEFINING_FILES:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure(total: int, seed: int, out: Path, log: Callable[[str], None] = print) -> Path:
    """Build the corpus into `out` unless the same build (size, seed, code) is there."""
    manifest = out / "manifest.json"
    if manifest.exists():
        built = json.loads(manifest.read_text())
        if (built.get("documents"), built.get("seed"), built.get("build_key")) == (
            total,
            seed,
            build_key(),
        ):
            return out
    started = time.perf_counter()
    rows, truth, meta = build(total, seed)
    meta["build_seconds"] = round(time.perf_counter() - started, 1)
    write(out, rows, truth, meta)
    log(
        f"corpus: {total} documents, {len(truth)} planted pairs -> {out} ({meta['build_seconds']} s)"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--docs", type=int, default=100_000, help="documents in all, copies included"
    )
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    ensure(args.docs, args.seed, args.out)


if __name__ == "__main__":
    main()


def corpus_source(docs: Path | str) -> dict:
    """The spec source of a generated corpus file: ids and languages from its own fields."""
    return {
        "name": "corpus",
        "format": "jsonl",
        "path": str(docs),
        "id_field": "id",
        "lang_field": "lang",
    }
