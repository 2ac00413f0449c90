"""Near-dedup precision and recall on real man pages: dedup_near against today's default (the
tree this branch started from) and DataTrove's MinhashDedup, measured in one run.

    .venv/bin/python benchmarks/bench_dedup_precision.py [--repeats 3] [--peer-repeats 1] [--no-peer]

The corpus (built at benchmark time, cached under benchmarks/.work/dedup-precision, never
committed): the man pages installed by `manpages`, `manpages-ja` and `manpages-pl` (and every
other package's pages in sections 2, 3, 5, 7 and 8, plus a seeded sample of section 1), each
rendered to text with `man -l` and `col -bx`. Man pages are full of natural near-duplicates:
pages of one family (the same options, the same boilerplate) that resemble each other in
chains. On top, planted near copies: per language, originals drawn with a seeded RNG and
edited word by word (Polish, English) or by runs of characters (Japanese) with corpus.py's
`near_copy` to a true Jaccard drawn in [0.85, 0.98] on iptkit's own shingles.

Measured, for each system on the same docs.jsonl.gz:
- precision: the share of removed documents that have a surviving document with a true
  Jaccard >= 0.7 on iptkit's shingles (0.1 under the threshold 0.8). It is computed exactly,
  with prefix filtering (a pair at >= 0.7 shares a token of their prefixes in one global
  order of rare shingles first), not sampled;
- recall: the share of planted pairs, per language, of which not both documents survive;
- time: iptkit's RUN/timings.json wall (pipeline build and run), DataTrove's executor times;
  the systems run interleaved, `--repeats` times (DataTrove `--peer-repeats`), medians
  reported.

"baseline" is dedup_near with default options from the commit this branch forked from main
(`git merge-base HEAD main`: connected components, lowest id survives), extracted with `git
archive` and imported in place of the working tree's code. Results go to
benchmarks/results/dedup_precision.json and .md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml
from corpus import near_copy, vocabulary

from iptkit.transforms.text.shingles import jaccard, shingle_hashes, shingle_unit, shingles

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / ".work" / "dedup-precision"
RESULTS = HERE / "results"
PEER_PYTHON = HERE / ".venv-peer" / "bin" / "python"
MAN = Path("/usr/share/man")
SECTIONS = ("man2", "man3", "man5", "man7", "man8")
MIN_CHARS = 300
RENDER_TIMEOUT = 30
PRECISION_BAR = 0.7
PLANT_RANGE = (0.85, 0.98)
OPTIONS = {"threshold": 0.8, "num_perm": 128, "shingle_size": 5}
BEAM_FLAGS = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
ENV = {"OMP_NUM_THREADS": "1", "LC_ALL": "C.UTF-8", "MANWIDTH": "80"}


# --- the corpus --------------------------------------------------------------------------------


def man_files(man1: int, seed: int) -> list[tuple[str, Path]]:
    """(lang, file) of the pages to render: every ja and pl page, English sections 2-8 and a
    seeded sample of section 1."""
    files = [("ja", p) for p in sorted((MAN / "ja").glob("man*/*"))]
    files += [("pl", p) for p in sorted((MAN / "pl").glob("man*/*"))]
    files += [("en", p) for s in SECTIONS for p in sorted((MAN / s).glob("*"))]
    section1 = sorted((MAN / "man1").glob("*"))
    files += [("en", p) for p in random.Random(seed).sample(section1, min(man1, len(section1)))]
    return files


def render(path: Path) -> str:
    """A page as text, as `man` shows it (overstrikes removed); empty when man fails or runs
    past RENDER_TIMEOUT (troff loops on a few pages)."""
    shell = f"man -E UTF-8 -l {json.dumps(str(path))} 2>/dev/null | col -bx"
    proc = subprocess.Popen(
        ["sh", "-c", shell],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        env={**os.environ, **ENV},
        start_new_session=True,  # one process group: a page that loops troff is killed whole
    )
    try:
        out, _ = proc.communicate(timeout=RENDER_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return ""
    return out.decode("utf-8", "replace")


def natural_docs(man1: int, seed: int) -> list[dict]:
    files = man_files(man1, seed)
    with ThreadPoolExecutor(2) as pool:
        texts = list(pool.map(render, (p for _, p in files)))
    docs = []
    for (lang, path), text in zip(files, texts, strict=True):
        if len(text.strip()) >= MIN_CHARS:
            name = f"{lang}/{path.parent.name}/{path.name.removesuffix('.gz')}"
            docs.append({"id": name, "lang": lang, "text": text})
    return docs


def shingle_set(doc: dict) -> np.ndarray:
    text = doc["text"]
    return shingle_hashes(shingles(text, 5, shingle_unit(text, doc["lang"])))


def plant(docs: list[dict], per_lang: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Near copies of `per_lang` originals per language, with their true Jaccard."""
    rng = random.Random(seed)
    copies, truth = [], []
    for lang in ("en", "ja", "pl"):
        same = [d for d in docs if d["lang"] == lang]
        vocab = vocabulary(docs, lang, rng)
        for i, original in enumerate(rng.sample(same, min(per_lang, len(same)))):
            target = rng.uniform(*PLANT_RANGE)
            text, _ = near_copy(original["text"], lang, target, vocab, rng)
            copy = {"id": f"plant/{lang}/{i:04d}", "lang": lang, "text": text}
            value = jaccard(shingle_set(copy), shingle_set(original))
            copies.append(copy)
            truth.append({"copy": copy["id"], "original": original["id"], "lang": lang, "j": value})
    return copies, truth


def build(args: argparse.Namespace) -> tuple[Path, list[dict]]:
    out = WORK / f"corpus-{args.man1}-{args.plant}-{args.seed}"
    docs_path, truth_path = out / "docs.jsonl.gz", out / "truth.json"
    if not truth_path.exists():
        started = time.perf_counter()
        docs = natural_docs(args.man1, args.seed)
        copies, truth = plant(docs, args.plant, args.seed)
        out.mkdir(parents=True, exist_ok=True)
        with gzip.open(docs_path, "wt", encoding="utf-8") as f:
            for doc in docs + copies:
                f.write(json.dumps(doc, ensure_ascii=False) + "\n")
        truth_path.write_text(json.dumps(truth))
        print(f"corpus: {len(docs)} pages + {len(copies)} planted copies, "
              f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    return docs_path, json.loads(truth_path.read_text())


# --- the systems -------------------------------------------------------------------------------


def baseline_tree() -> tuple[str, Path]:
    """Today's default: the fork point's tree, as a package directory to put on PYTHONPATH."""
    sha = subprocess.check_output(["git", "merge-base", "HEAD", "main"], cwd=ROOT, text=True)
    sha = sha.strip()
    src = WORK / f"baseline-{sha[:10]}"
    pkg = src / "pkg" / "iptkit"
    if not pkg.exists():
        src.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
        pkg.mkdir(parents=True)
        for entry in (src / "iptkit").iterdir():
            (pkg / entry.name).symlink_to(entry)
        for folder in ("pipelines", "transforms", "trainer", "eval", "configs"):
            (pkg / folder).symlink_to(src / folder)
    return sha, pkg.parent


def run_iptkit(docs: Path, work: Path, extra: dict, pythonpath: Path | None = None) -> dict:
    run = work / "run"
    spec = {
        "seed": 1234,
        "output": str(run),
        "sources": [
            {
                "name": "man",
                "format": "jsonl",
                "path": str(docs),
                "id_field": "id",
                "lang_field": "lang",
            }
        ],  # fmt: skip
        "stages": [{"dedup_near": {**OPTIONS, **extra}}],
    }
    work.mkdir(parents=True, exist_ok=True)
    (work / "spec.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True))
    code = (
        "import sys, iptkit.transforms.stages.dedup_near as m; print('code:', m.__file__);"
        "from iptkit.pipelines.cli import main; sys.exit(main())"
    )
    env = {**os.environ, **ENV}
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    cmd = [sys.executable, "-c", code, "run", str(work / "spec.yaml"), "--out", str(run)]
    # cwd outside the repository: its iptkit/ folder would shadow the baseline's.
    proc = subprocess.run(cmd + BEAM_FLAGS, cwd=work, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"iptkit run failed in {work}:\n{proc.stderr[-3000:]}")
    code_file = proc.stdout.split("code:", 1)[1].split()[0]
    removed = set()
    for path in sorted((run / "rejects" / "dedup_near").glob("*.jsonl")):
        removed |= {json.loads(line)["id"] for line in path.read_text().splitlines()}
    wall = json.loads((run / "timings.json").read_text())["wall_seconds"]
    clusters = json.loads((run / "dedup_near" / "clusters.json").read_text())
    unsettled = clusters.get("unsettled_nodes")
    return {"wall_seconds": wall, "removed": removed, "code": code_file, "unsettled": unsettled}


def run_peer(docs: Path, work: Path) -> dict:
    from iptkit.transforms.stages.dedup_near import DedupNearConfig, lsh_params

    bands, rows = lsh_params(DedupNearConfig(**OPTIONS))
    params = {"num_perm": 128, "shingle_size": 5, "bands": bands, "rows": rows}
    result = work / "result.json"
    cmd = [str(PEER_PYTHON), str(HERE / "peer_datatrove.py"), "dedup_near", "--input", str(docs),
           "--work", str(work / "w"), "--result", str(result), "--params", json.dumps(params)]  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(cmd, env={**os.environ, **ENV}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"DataTrove failed:\n{proc.stderr[-3000:]}")
    out = json.loads(result.read_text())
    return {"wall_seconds": out["wall_seconds"], "removed": set(out["dropped"])}


# --- scoring -----------------------------------------------------------------------------------


def prefix_index(sets: dict[str, np.ndarray], bar: float) -> tuple[dict, dict]:
    """Prefix filtering for Jaccard >= bar: shingles ordered rare first (ties by hash); a pair
    at >= bar shares a shingle of their prefixes of length |A| - ceil(bar |A|) + 1."""
    unique, counts = np.unique(np.concatenate(list(sets.values())), return_counts=True)
    prefixes, index = {}, defaultdict(list)
    for doc_id, s in sets.items():
        ordered = s[np.lexsort((s, counts[np.searchsorted(unique, s)]))]
        prefix = ordered[: len(ordered) - math.ceil(bar * len(ordered)) + 1].tolist()
        prefixes[doc_id] = prefix
        for h in prefix:
            index[h].append(doc_id)
    return prefixes, index


def precision(removed: set[str], sets: dict, prefixes: dict, index: dict) -> tuple[float, int]:
    """Share of removed documents with a survivor at true Jaccard >= PRECISION_BAR."""
    good = 0
    for doc_id in removed:
        candidates = {c for h in prefixes[doc_id] for c in index[h]} - removed
        if any(jaccard(sets[doc_id], sets[c]) >= PRECISION_BAR for c in candidates):
            good += 1
    return (good / len(removed) if removed else 1.0), good


def recall(removed: set[str], truth: list[dict]) -> dict[str, float]:
    by_lang: dict[str, list[bool]] = defaultdict(list)
    for pair in truth:
        by_lang[pair["lang"]].append(bool({pair["copy"], pair["original"]} & removed))
    return {lang: sum(found) / len(found) for lang, found in sorted(by_lang.items())}


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--man1", type=int, default=1000, help="English section-1 pages")
    parser.add_argument("--plant", type=int, default=150, help="planted copies per language")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each iptkit system")
    parser.add_argument("--peer-repeats", type=int, default=1, help="runs of DataTrove (slow)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()

    docs_path, truth = build(args)
    sha, baseline = baseline_tree()
    systems = {
        "baseline (main, default)": lambda w: run_iptkit(docs_path, w, {}, baseline),
        "baseline (main, verify)": lambda w: run_iptkit(docs_path, w, {"verify": True}, baseline),
        "iptkit (default)": lambda w: run_iptkit(docs_path, w, {}),
        "iptkit (verify)": lambda w: run_iptkit(docs_path, w, {"verify": True}),
    }
    if not args.no_peer:
        systems["DataTrove MinhashDedup"] = lambda w: run_peer(docs_path, w)
    walls: dict[str, list[float]] = defaultdict(list)
    last: dict[str, dict] = {}
    for repeat in range(args.repeats):
        for i, (name, fn) in enumerate(systems.items()):
            if name.startswith("DataTrove") and repeat >= args.peer_repeats:
                continue
            result = fn(WORK / "runs" / f"{i}-{repeat}")
            walls[name].append(result["wall_seconds"])
            last[name] = result
            print(f"repeat {repeat + 1}: {name}: {result['wall_seconds']:.1f} s", flush=True)

    docs = [json.loads(line) for line in gzip.open(docs_path, "rt", encoding="utf-8")]
    sets = {d["id"]: shingle_set(d) for d in docs}
    prefixes, index = prefix_index(sets, PRECISION_BAR)
    base_wall = statistics.median(walls["baseline (main, default)"])
    rows = {}
    for name, result in last.items():
        share, good = precision(result["removed"], sets, prefixes, index)
        wall = statistics.median(walls[name])
        rows[name] = {
            "removed": len(result["removed"]),
            "with_survivor_at_0.7": good,
            "precision": share,
            "recall": recall(result["removed"], truth),
            "wall_seconds": walls[name],
            "wall_median": wall,
            "wall_vs_baseline_default": wall / base_wall,
            "code": result.get("code"),
            "unsettled_nodes": result.get("unsettled"),
        }
    langs = Counter(d["lang"] for d in docs)
    planted = {lang: sum(p["lang"] == lang for p in truth) for lang in sorted(langs)}
    report = {
        "baseline_commit": sha,
        "documents": len(docs),
        "by_lang": dict(sorted(langs.items())),
        "planted": planted,
        "planted_jaccard": [min(p["j"] for p in truth), max(p["j"] for p in truth)],
        "options": OPTIONS,
        "repeats": args.repeats,
        "peer_repeats": args.peer_repeats,
        "systems": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dedup_precision.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"{len(docs):,} documents ({', '.join(f'{k} {v:,}' for k, v in langs.items())}); "
        f"planted copies {planted}, true J {report['planted_jaccard'][0]:.3f}–"
        f"{report['planted_jaccard'][1]:.3f}; baseline = {sha[:10]}",
        "",
        "| system | removed | precision (survivor at J ≥ 0.7) | recall en | recall ja | recall pl "
        "| wall s (median) | wall / baseline default |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        rec = row["recall"]
        lines.append(
            f"| {name} | {row['removed']:,} | {row['precision']:.3f} | {rec.get('en', 0):.3f} "
            f"| {rec.get('ja', 0):.3f} | {rec.get('pl', 0):.3f} | {row['wall_median']:.1f} "
            f"| {row['wall_vs_baseline_default']:.2f} |"
        )
    table = "\n".join(lines) + "\n"
    (RESULTS / "dedup_precision.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
