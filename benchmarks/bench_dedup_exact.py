"""Benchmarks dedup_exact against DataTrove's exact dedup and the fork point's dedup_exact.

    .venv/bin/python benchmarks/bench_dedup_exact.py                 # 25k docs, 3 repeats
    .venv/bin/python benchmarks/bench_dedup_exact.py --docs 25000 --repeats 1

On the corpus of `corpus.py` (built if missing; 1,000 planted byte-identical copies), one
process per measurement, interleaved, through rusage.py (wall, CPU, peak RSS):
- `iptkit` (this tree) and `baseline` (the commit this branch forked from main, from `git
  archive`, put first on the path): `iptkit run` of a spec with only `dedup_exact: {}`,
  DirectRunner, one worker, in memory;
- `raw text`: the stage without case folding and whitespace collapsing, DataTrove's work;
- `no stage`: the same spec without the stage (reading, writing and the ledger alone);
- `datatrove`: its three exact-dedup pipelines (benchmarks/peer_datatrove.py in
  benchmarks/.venv-peer, from benchmarks/peer_env.sh), one task, one worker.
Wall seconds are each system's own (iptkit: the graph's construction and run, timings.json;
DataTrove: its pipelines' sum); CPU seconds are the whole process's (start-up and imports
included), which the load of other processes on the machine disturbs less. Each system also
runs once on the corpus's first `--startup-docs` documents: its CPU there is its start-up
(imports, graph, runner), and CPU past start-up is the work that grows with the corpus.
Every system must remove the same documents. Results: benchmarks/results/dedup_exact.json and a
Markdown table on stdout (medians).
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import itertools
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import corpus
import yaml
from bench_cleaning import BEAM_FLAGS, PEER_PYTHON, RESULTS, WORK, measured, run_peer
from bench_dedup_precision import baseline_tree

# Imports iptkit from the first path entry that has it: the working tree's, or the baseline's
# when PYTHONPATH names it (the current folder, the repository root, is taken off the path).
LAUNCH = (
    "import os, sys; sys.path[:] = [p for p in sys.path if p not in ('', os.getcwd())];"
    "import iptkit.transforms as m; print('code:', m.__file__, flush=True);"
    "from iptkit.pipelines.cli import main; sys.exit(main())"
)


# DataTrove's exact dedup hashes the text as it is; dedup_exact's defaults fold case and
# collapse whitespace first. `raw text` runs the stage doing DataTrove's work.
RAW_TEXT = {"lowercase": False, "collapse_whitespace": False}


def run_iptkit(
    docs: Path, work: Path, stage: dict | None, pythonpath: Path | None
) -> dict[str, Any]:
    """`iptkit run` with `stage` as dedup_exact's options (None: no stage)."""
    run = work / "run"
    spec = {
        "seed": 1234,
        "output": str(run),
        "sources": [corpus.corpus_source(docs)],
        "stages": [] if stage is None else [{"dedup_exact": stage}],
    }
    work.mkdir(parents=True, exist_ok=True)
    (work / "spec.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True))
    cmd = [sys.executable, "-c", LAUNCH, "run", str(work / "spec.yaml"), "--out", str(run)]
    env = {"PYTHONPATH": str(pythonpath)} if pythonpath else {}
    result = measured(cmd + BEAM_FLAGS, work / "log.txt", env)
    log = (work / "log.txt").read_text(errors="replace")
    result["code"] = log.split("code:", 1)[1].split()[0]
    result["wall_seconds"] = json.loads((run / "timings.json").read_text())["wall_seconds"]
    rejects = sorted((run / "rejects" / "dedup_exact").glob("*.jsonl"))
    result["removed"] = sorted(
        json.loads(line)["id"] for path in rejects for line in path.read_text().splitlines()
    )
    return result


def first_documents(docs: Path, count: int, folder: Path) -> Path:
    """The corpus's first `count` lines as a gzipped file of their own."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "docs.jsonl.gz"
    with gzip.open(docs, "rb") as src, gzip.open(out, "wb") as dst:
        dst.writelines(itertools.islice(src, count))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=25_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--out", type=Path, default=RESULTS / "dedup_exact.json")
    parser.add_argument(
        "--startup-docs", type=int, default=200, help="documents of the start-up measurement"
    )
    args = parser.parse_args()
    if not PEER_PYTHON.exists():
        sys.exit(f"{PEER_PYTHON} is missing: run benchmarks/peer_env.sh first")
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    folder = corpus.ensure(args.docs, args.seed, WORK / f"corpus-{args.docs}", log)
    docs = folder / "docs.jsonl.gz"
    sha, baseline = baseline_tree()
    work = WORK / "dedup_exact" / str(args.docs)
    systems = {
        "iptkit": lambda d, w: run_iptkit(d, w, {}, None),
        "baseline": lambda d, w: run_iptkit(d, w, {}, baseline),
        "raw text": lambda d, w: run_iptkit(d, w, RAW_TEXT, None),
        "no stage": lambda d, w: run_iptkit(d, w, None, None),
        "datatrove": lambda d, w: run_peer("dedup_exact", d, w),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
    for repeat in range(args.repeats):
        for name, fn in systems.items():
            result = fn(docs, work / name.replace(" ", "-") / str(repeat))
            log(f"{name} #{repeat}: {result['wall_seconds']:.2f} s, {result['maxrss_mb']:.0f} MB")
            runs[name].append(result)
    # Start-up: each system once on the corpus's first documents. Process CPU less start-up is
    # the work that grows with the corpus, which decides the ratio at scale.
    small = first_documents(docs, args.startup_docs, work / f"startup-{args.startup_docs}")
    startup = {
        name: fn(small, work / name.replace(" ", "-") / "startup")["cpu_seconds"]
        for name, fn in systems.items()
    }
    removed = {name: rs[0].get("removed") for name, rs in runs.items() if name != "no stage"}
    removed["datatrove"] = sorted(runs["datatrove"][0]["dropped"])
    median = {
        name: {
            "wall_seconds": statistics.median(r["wall_seconds"] for r in rs),
            "maxrss_mb": statistics.median(r["maxrss_mb"] for r in rs),
            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in rs),
            "walls": [round(r["wall_seconds"], 2) for r in rs],
            "cpus": [round(r["cpu_seconds"], 2) for r in rs],
        }
        for name, rs in runs.items()
    }
    for name, m in median.items():
        m["startup_cpu_seconds"] = startup[name]
        m["cpu_seconds_past_startup"] = m["cpu_seconds"] - startup[name]
    peer_wall = median["datatrove"]["wall_seconds"]
    peer_cpu = median["datatrove"]["cpu_seconds"]
    peer_past = median["datatrove"]["cpu_seconds_past_startup"]
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "benchmarks/bench_dedup_exact.py", *sys.argv[1:]]),
        "load_average": os.getloadavg(),
        "docs": args.docs,
        "baseline_commit": sha,
        "code": {name: rs[0].get("code") for name, rs in runs.items()},
        "same_removals": len({tuple(ids) for ids in removed.values()}) == 1,
        "removed": {name: len(ids) for name, ids in removed.items()},
        "median": median,
        "docs_per_s_vs_datatrove": {
            name: peer_wall / m["wall_seconds"] for name, m in median.items()
        },
        "docs_per_cpu_s_vs_datatrove": {
            name: peer_cpu / m["cpu_seconds"] for name, m in median.items()
        },
        "startup_docs": args.startup_docs,
        "docs_per_cpu_s_past_startup_vs_datatrove": {
            name: peer_past / m["cpu_seconds_past_startup"] for name, m in median.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        "| system | wall s (median) | runs | docs/s vs DataTrove | process CPU s (median) | runs "
        f"| docs per CPU s vs DataTrove | start-up CPU s ({args.startup_docs} docs) | docs per "
        "CPU s past start-up vs DataTrove | peak RSS MB | removed |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, m in median.items():
        ratio = report["docs_per_s_vs_datatrove"][name]
        cpu_ratio = report["docs_per_cpu_s_vs_datatrove"][name]
        past_ratio = report["docs_per_cpu_s_past_startup_vs_datatrove"][name]
        print(
            f"| {name} | {m['wall_seconds']:.2f} | {m['walls']} | {ratio:.2f} | "
            f"{m['cpu_seconds']:.2f} | {m['cpus']} | {cpu_ratio:.2f} | "
            f"{m['startup_cpu_seconds']:.2f} | {past_ratio:.2f} | {m['maxrss_mb']:.0f} | "
            f"{report['removed'].get(name, '-')} |"
        )
    print(f"same removals: {report['same_removals']}; baseline {sha[:10]}")


if __name__ == "__main__":
    main()
