"""The bare-library loops iptkit's stages are measured against, run by bench_cleaning.py.

    .venv/bin/python benchmarks/bare.py STAGE --input DOCS.jsonl.gz --result RESULT.json \
        [--model lid.176.ftz] [--params JSON]

Each loop is what a user would write with the library alone, in one process on one core, over
texts already in memory (reading the file is not timed): fastText's predict per document;
datasketch MinHash signatures over the very shingles iptkit's dedup_near makes, with the
library's default hashing and permutations shared across documents (`MinHash.generator`, as
its documentation recommends for many sets), then MinHashLSH to turn them into clusters; and a
dict of BLAKE2b digests for exact duplicates. Separate processes keep each loop's peak RSS its own.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import resource
import time
from collections import Counter
from collections.abc import Callable

from iptkit.transforms.text.shingles import shingle_unit, shingles


def load(path: str) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def langid(docs: list[dict], args: argparse.Namespace) -> dict:
    """fastText (fasttext-predict, iptkit's binding) predict, top label, one document at a time.

    fastText reads one line: newlines become spaces, as every wrapper does.
    """
    import fasttext

    started = time.perf_counter()
    model = fasttext.load_model(args.model)
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    labels = {}
    for doc in docs:
        (label,), (score,) = model.predict(doc["text"].replace("\n", " "), k=1)
        labels[doc["id"]] = [label.removeprefix("__label__"), float(score)]
    return {
        "seconds": time.perf_counter() - started,
        "load_seconds": load_seconds,
        "labels": labels,
    }


def dedup_exact(docs: list[dict], args: argparse.Namespace) -> dict:
    """A dict of 128-bit BLAKE2b digests of the raw text: the first copy stays."""
    started = time.perf_counter()
    first: dict[bytes, str] = {}
    removed = {}
    for doc in docs:
        digest = hashlib.blake2b(doc["text"].encode(), digest_size=16).digest()
        kept = first.setdefault(digest, doc["id"])
        if kept != doc["id"]:
            removed[doc["id"]] = kept
    return {"seconds": time.perf_counter() - started, "removed": removed}


def dedup_near(docs: list[dict], args: argparse.Namespace) -> dict:
    """Shingles (iptkit's function), datasketch signatures, then MinHashLSH clusters.

    Timed in three parts: shingling, signatures (the part iptkit's Sign step is held to), and
    the LSH insert-and-query with a union-find over the matches (in memory, one process).
    """
    from datasketch import MinHash, MinHashLSH

    p = args.params
    started = time.perf_counter()
    sets = [
        [
            s.encode("utf-8", "surrogatepass")
            for s in shingles(d["text"], p["shingle_size"], shingle_unit(d["text"], d["lang"]))
        ]
        for d in docs
    ]
    shingle_seconds = time.perf_counter() - started
    started = time.perf_counter()
    signatures = list(MinHash.generator(sets, num_perm=p["num_perm"], seed=1))
    signature_seconds = time.perf_counter() - started
    started = time.perf_counter()
    lsh = MinHashLSH(num_perm=p["num_perm"], params=(p["bands"], p["rows"]))
    parent = {d["id"]: d["id"] for d in docs}

    def root(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for doc, signature in zip(docs, signatures, strict=True):
        for other in lsh.query(signature):
            a, b = sorted((root(doc["id"]), root(other)))
            parent[b] = a
        lsh.insert(doc["id"], signature)
    clusters = {d["id"]: root(d["id"]) for d in docs}
    lsh_seconds = time.perf_counter() - started
    sizes = Counter(clusters.values())
    return {
        "seconds": shingle_seconds + signature_seconds + lsh_seconds,
        "shingle_seconds": shingle_seconds,
        "signature_seconds": signature_seconds,
        # What iptkit's Sign step does: shingles, then a signature.
        "signature_step_seconds": shingle_seconds + signature_seconds,
        "lsh_seconds": lsh_seconds,
        "clusters": {k: v for k, v in clusters.items() if sizes[v] > 1},
    }


def tokenize(docs: list[dict], args: argparse.Namespace) -> dict:
    """Hugging Face tokenizers' batch encode of every text, as a user writes it, batches of
    `batch_size` (the ids are kept, as a packer would need them); `method` encode_batch, or
    encode_batch_fast (no character offsets)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(args.params["tokenizer"])
    batch = args.params.get("batch_size", 1000)
    encode = getattr(tok, args.params.get("method", "encode_batch"))
    texts = [d["text"] for d in docs]
    started = time.perf_counter()
    tokens = 0
    for i in range(0, len(texts), batch):
        encoded = encode(texts[i : i + batch], add_special_tokens=False)
        tokens += sum(len(e.ids) for e in encoded)
    return {"seconds": time.perf_counter() - started, "tokens": tokens}


LOOPS: dict[str, Callable[[list[dict], argparse.Namespace], dict]] = {
    "langid": langid,
    "dedup_exact": dedup_exact,
    "dedup_near": dedup_near,
    "tokenize": tokenize,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=sorted(LOOPS))
    parser.add_argument("--input", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--model")
    parser.add_argument("--params", type=json.loads, default={})
    args = parser.parse_args()
    docs = load(args.input)
    result = LOOPS[args.stage](docs, args)
    result["documents"] = len(docs)
    result["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(args.result, "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
