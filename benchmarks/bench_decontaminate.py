"""Benchmarks the decontaminate stage with 10,000 benchmark examples in its index.

    .venv/bin/python benchmarks/bench_decontaminate.py            # about 5 minutes on 2 cores
    .venv/bin/python benchmarks/bench_decontaminate.py --docs 10000 --examples 10000
    .venv/bin/python benchmarks/bench_decontaminate.py --vs-baseline --docs 25000 \
        --pipeline-docs 3000 --examples 20000 --example-words 200   # a ~50 MB index

On the Debian-text corpus of `corpus.py` (built if missing), one core:
- the benchmark set: `--examples` synthetic examples generated here (seeded): English ones are
  the words of a real corpus sentence shuffled, Japanese ones its characters shuffled, so they
  look like the corpus's language but occur nowhere in it; `--planted` of them are then copied
  verbatim into as many documents (the recall check);
- the index: build time, its arrays' bytes, and the Python heap it took (tracemalloc);
- iptkit's decision (`decide`, all three detectors, and n-grams alone) over every document in
  memory: docs/s per core;
- `iptkit run` with only the stage (DirectRunner, one worker, in memory): wall and the stage's
  own time (process_us), peak RSS through rusage.py;
- the bare baselines over the same texts: a plain-Python set of 13-word-gram strings with
  lm-eval's normalisation (lowercase, string.punctuation deleted, split on whitespace), and
  lm-eval's own Janitor (`register_contaminant` + `clean`, pure-Python mode: its C++ helper is
  not built by pip).
Results: benchmarks/results/decontaminate.json and a Markdown table on stdout. With
`--vs-baseline`, only `iptkit run` of this tree (the index built once into a file, loaded once
per process through Beam's `Shared`) against the fork point's (the index a pickled side input),
interleaved: wall, peak RSS and the output bytes (benchmarks/results/decontaminate-index.json).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import gzip
import hashlib
import io
import json
import os
import random
import string
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import yaml
from bench_dedup_exact import LAUNCH
from bench_dedup_precision import baseline_tree

from iptkit.transforms.reading.benchmarks import BenchExample
from iptkit.transforms.record import Record
from iptkit.transforms.stages.decontaminate import DecontaminateConfig, build_index, decide

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "decontaminate"
RESULTS = HERE / "results"
NGRAM = 13


def corpus_docs(size: int) -> list[dict[str, Any]]:
    folder = HERE / ".work" / f"corpus-{size}"
    if not (folder / "docs.jsonl.gz").exists():
        subprocess.run(
            [sys.executable, str(HERE / "corpus.py"), "--docs", str(size), "--out", str(folder)],
            check=True,
        )
    with gzip.open(folder / "docs.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def synthetic_examples(
    docs: list[dict[str, Any]], count: int, seed: int, words: int = 15
) -> list[BenchExample]:
    """Examples that read like the corpus's languages but occur nowhere in it: `words` to
    `words` + 10 words (four letters a word in Japanese)."""
    rng = random.Random(seed)
    examples = []
    while len(examples) < count:
        doc = docs[rng.randrange(len(docs))]
        text = doc["text"]
        if doc["lang"] == "ja":
            start = rng.randrange(max(1, len(text) - 4 * words))
            chars = [c for c in text[start : start + 4 * words] if not c.isspace()]
            rng.shuffle(chars)
            question = "".join(chars)
        else:
            tokens = text.split()
            start = rng.randrange(max(1, len(tokens) - words - 10))
            chosen = tokens[start : start + rng.randint(words, words + 10)]
            rng.shuffle(chosen)
            question = " ".join(chosen)
        if len(question) >= 30:
            examples.append(BenchExample("synthetic", f"s{len(examples):05d}", question))
    return examples


def plant(docs, examples, count: int, seed: int) -> tuple[list[dict[str, Any]], set[str]]:
    """`count` documents with one example each copied into their middle."""
    rng = random.Random(seed + 1)
    docs = [dict(d) for d in docs]
    chosen = rng.sample(range(len(examples)), count)
    hosts = rng.sample(range(len(docs)), count)
    for e, h in zip(chosen, hosts, strict=True):
        text = docs[h]["text"]
        middle = len(text) // 2
        docs[h]["text"] = f"{text[:middle]}\n{examples[e].question}\n{text[middle:]}"
    return docs, {examples[e].id for e in chosen}


def timed(fn, *args) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def heap_of(build) -> tuple[Any, int, float]:
    """(result, bytes still held on the Python heap, seconds) of `build()`."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    result = build()
    seconds = time.perf_counter() - start
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return result, held, seconds


# --- bare baselines -----------------------------------------------------------------------------

_TABLE = str.maketrans(string.ascii_uppercase, string.ascii_lowercase, string.punctuation)


def bare_ngrams(text: str) -> set[str]:
    words = text.translate(_TABLE).split()
    return {" ".join(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1)}


def bare_scan(texts: list[str], index: set[str]) -> int:
    return sum(1 for t in texts if not bare_ngrams(t).isdisjoint(index))


def janitor_scan(texts: list[str], examples: list[BenchExample]):
    with contextlib.redirect_stdout(io.StringIO()):
        from lm_eval.decontamination.janitor import Janitor

        janitor = Janitor(ngram_n=NGRAM)
        _, held, build_seconds = heap_of(
            lambda: [janitor.register_contaminant(e.question) for e in examples]
        )
        start = time.perf_counter()
        flagged = sum(1 for t in texts if janitor.clean(t) != [t])
        seconds = time.perf_counter() - start
    return flagged, seconds, held, build_seconds


# --- iptkit -------------------------------------------------------------------------------------


def decide_scan(texts: list[dict[str, Any]], index, cfg) -> tuple[int, set[str]]:
    flagged, found = 0, set()
    for i, doc in enumerate(texts):
        out = decide(Record(id=str(i), source="b", text=doc["text"]), index, cfg, "d")
        if "contamination" in out.meta:
            flagged += 1
            found |= {f["example"] for f in out.meta["contamination"]}
    return flagged, found


def pipeline_run(
    docs_path: Path, bench_path: Path, repeat: int, baseline: Path | None = None
) -> dict[str, Any]:
    """`iptkit run` of the stage alone: this tree's code, or the baseline's on PYTHONPATH."""
    run = WORK / f"run-{'baseline-' if baseline else ''}{repeat}"
    spec = WORK / f"spec-{'baseline-' if baseline else ''}{repeat}.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "seed": 1234,
                "output": str(run),
                "keep_records": False,
                "sources": [{"name": "docs", "format": "jsonl", "path": str(docs_path)}],
                "stages": [{"decontaminate": {"benchmarks": [str(bench_path)]}}],
            }
        )
    )
    usage = run.with_suffix(".usage.json")
    cmd = [sys.executable, str(HERE / "rusage.py"), str(usage), sys.executable, "-c", LAUNCH]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if baseline:
        env["PYTHONPATH"] = str(baseline)
    proc = subprocess.run(
        [*cmd, "run", str(spec), "--direct_num_workers=1", "--direct_running_mode=in_memory"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    timings = json.loads((run / "timings.json").read_text())
    report = json.loads((run / "contamination" / "report.json").read_text())
    return {
        "code": proc.stdout.split("code:", 1)[1].split()[0],
        "outputs": {  # what must not change between the two ways of loading the index
            name: hashlib.sha256(
                b"".join(p.read_bytes() for p in sorted(run.glob(name)))
            ).hexdigest()
            for name in (
                "contamination/*.json",
                "contamination/stages/*.json",
                "rejects/*/*",
                "output/*",
            )
        },
        "wall_seconds": timings["wall_seconds"],
        "stage_seconds": timings["stage_seconds"].get("decontaminate"),
        "maxrss_mb": json.loads(usage.read_text())["maxrss_mb"],
        "cpu_seconds": json.loads(usage.read_text())["cpu_seconds"],
        "contaminated_examples": report["table"][0]["raw"],
    }


def index_vs_baseline(args: argparse.Namespace) -> None:
    """The index loaded once per process from a file (this tree) against the pickled side
    input of the fork point (baseline), interleaved: peak RSS and wall of `iptkit run`, and
    the same contamination report, rejects and output bytes."""
    docs = corpus_docs(args.docs)[: args.pipeline_docs]
    examples = synthetic_examples(docs, args.examples, args.seed, args.example_words)
    docs, planted = plant(docs, examples, args.planted, args.seed)
    docs_path, bench_path = WORK / "docs.jsonl", WORK / "bench.jsonl"
    docs_path.write_text(
        "".join(json.dumps({"text": d["text"]}, ensure_ascii=False) + "\n" for d in docs)
    )
    bench_path.write_text(
        "".join(
            json.dumps({"id": e.id, "question": e.question}, ensure_ascii=False) + "\n"
            for e in examples
        )
    )
    sha, baseline = baseline_tree()
    runs: dict[str, list[dict[str, Any]]] = {"file + Shared": [], "side input (baseline)": []}
    for repeat in range(args.repeats):
        runs["file + Shared"].append(pipeline_run(docs_path, bench_path, repeat))
        runs["side input (baseline)"].append(pipeline_run(docs_path, bench_path, repeat, baseline))
    result = {
        "command": " ".join(
            [".venv/bin/python", "benchmarks/bench_decontaminate.py", *sys.argv[1:]]
        ),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": os.getloadavg(),
        "docs": len(docs),
        "examples": len(examples),
        "planted": len(planted),
        "index_file_mb": max(p.stat().st_size for p in WORK.glob("run-*/*/bench-index-*.bin"))
        / 2**20,
        "baseline_commit": sha,
        "runs": runs,
        "same_outputs": len({json.dumps(r["outputs"]) for rs in runs.values() for r in rs}) == 1,
    }
    (RESULTS / "decontaminate-index.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"index file {result['index_file_mb']:.1f} MB; {len(docs)} docs; "
          f"same outputs: {result['same_outputs']}")  # fmt: skip
    print("| index | wall s | CPU s | peak RSS MB | code |\n|---|---|---|---|---|")
    for name, rs in runs.items():
        walls = ", ".join(f"{r['wall_seconds']:.1f}" for r in rs)
        cpu = ", ".join(f"{r['cpu_seconds']:.1f}" for r in rs)
        rss = ", ".join(f"{r['maxrss_mb']:.0f}" for r in rs)
        print(f"| {name} | {walls} | {cpu} | {rss} | {rs[0]['code']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=10000)
    parser.add_argument("--examples", type=int, default=10000)
    parser.add_argument("--planted", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--example-words", type=int, default=15, help="words per example, at least")
    parser.add_argument(
        "--vs-baseline",
        action="store_true",
        help="only compare `iptkit run` with the fork point's index side input (peak RSS, wall)",
    )
    parser.add_argument(
        "--pipeline-docs", type=int, default=None, help="with --vs-baseline: run on the first N"
    )
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.vs_baseline:
        index_vs_baseline(args)
        return

    docs = corpus_docs(args.docs)
    examples = synthetic_examples(docs, args.examples, args.seed)
    docs, planted = plant(docs, examples, args.planted, args.seed)
    texts = [d["text"] for d in docs]
    n = len(docs)
    docs_path, bench_path = WORK / "docs.jsonl", WORK / "bench.jsonl"
    docs_path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts))
    bench_path.write_text(
        "".join(
            json.dumps({"id": e.id, "question": e.question}, ensure_ascii=False) + "\n"
            for e in examples
        )
    )
    result: dict[str, Any] = {
        "docs": n,
        "examples": len(examples),
        "planted": len(planted),
        "chars": sum(map(len, texts)),
        "langs": {lang: sum(d["lang"] == lang for d in docs) for lang in ("en", "ja", "pl")},
    }

    full = DecontaminateConfig.model_validate({"benchmarks": [str(bench_path)]})
    ngram_only = full.model_copy(update={"detectors": ["ngram"]})
    _, held, _ = heap_of(lambda: build_index(examples, full, args.seed))
    index, build_seconds = timed(build_index, examples, full, args.seed)  # untraced: true time
    result["index"] = {
        "build_seconds": build_seconds,
        "array_mb": index.nbytes() / 2**20,
        "heap_mb": held / 2**20,
        "ngrams": int(index.ngram_keys.size),
        "substrings": int(index.substrings.keys.size),
    }
    ngram_index = build_index(examples, ngram_only, args.seed)

    def bare_build() -> set[str]:
        return set().union(*(bare_ngrams(e.question) for e in examples))

    _, bare_held, _ = heap_of(bare_build)
    bare_index, bare_build_seconds = timed(bare_build)
    result["bare_index"] = {"build_seconds": bare_build_seconds, "heap_mb": bare_held / 2**20}

    runs: dict[str, list[float]] = {"all": [], "ngram": [], "bare": []}
    for _ in range(args.repeats):
        (flagged_all, found_all), t_all = timed(decide_scan, docs, index, full)
        (flagged_ng, found_ng), t_ng = timed(decide_scan, docs, ngram_index, ngram_only)
        flagged_bare, t_bare = timed(bare_scan, texts, bare_index)
        runs["all"].append(t_all)
        runs["ngram"].append(t_ng)
        runs["bare"].append(t_bare)
    flagged_jan, t_jan, jan_held, jan_build = janitor_scan(texts, examples)
    best = {k: min(v) for k, v in runs.items()}
    result["decide"] = {
        "all_detectors": {"seconds": best["all"], "docs_per_s": n / best["all"],
                          "flagged": flagged_all, "planted_found": len(planted & found_all)},
        "ngram_only": {"seconds": best["ngram"], "docs_per_s": n / best["ngram"],
                       "flagged": flagged_ng, "planted_found": len(planted & found_ng)},
    }  # fmt: skip
    result["bare_set"] = {"seconds": best["bare"], "docs_per_s": n / best["bare"],
                          "flagged": flagged_bare}  # fmt: skip
    result["janitor"] = {"seconds": t_jan, "docs_per_s": n / t_jan, "flagged": flagged_jan,
                         "build_seconds": jan_build, "heap_mb": jan_held / 2**20}  # fmt: skip
    pipeline = [pipeline_run(docs_path, bench_path, r) for r in range(args.repeats)]
    result["pipeline"] = min(pipeline, key=lambda p: p["wall_seconds"])
    result["pipeline"]["docs_per_s_wall"] = n / result["pipeline"]["wall_seconds"]
    if result["pipeline"]["stage_seconds"]:
        result["pipeline"]["docs_per_s_stage"] = n / result["pipeline"]["stage_seconds"]
    (RESULTS / "decontaminate.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
