"""Peak memory of the SDK worker, where iptkit's code runs, apart from the runner's, per corpus size.

    .venv/bin/python benchmarks/bench_worker_memory.py                   # 10k, 25k, 50k, the flow
    .venv/bin/python benchmarks/bench_worker_memory.py --sizes 25000 --rows flow dedup_near

Why this split: on the in-memory DirectRunner (bench_scaling.py) one process is both the runner
and the worker, so the runner holding every shuffled collection hides whether anything of
iptkit's grows. Here the job runs on the PortableRunner against Beam's local job service with
one EXTERNAL SDK worker from Beam's worker pool (the worker-pool model Flink and Spark use, as
in tests/test_portable_external.py): the job service process is the runner (it holds the
collections, as a Flink TaskManager or Dataflow's shuffle does, in memory here), and the worker
process runs every DoFn of iptkit's: reading, each stage, the sinks, packing. A worker's peak
RSS that stays flat as the corpus grows is "nothing on one worker grows with the corpus",
measured. One thing of the local runner's own does grow on the worker: it hands a worker its
whole part of a GroupByKey's output as one gRPC message, where Flink and Dataflow stream it in
bounded pieces; the job service is therefore started through benchmarks/chunked_job_service.py,
which cuts that part into pieces of ~4 MB (same elements, same order). `--whole-messages` runs
Beam's job service as shipped instead, for comparison.

The bounds a worker does hold are set smaller than the corpora so that they bind at every size
measured: `output_shard_bytes` 8 MiB (one output or rejects file's lines reach one worker
whole), pack's `bucket_tokens` 1 Mi (one packing group's tokens) and synthesize's
`chain_window` 1,000 (a chaining bucket holds 1,000 to 2,000 records). With the defaults
(128 MiB, 32 Mi tokens, 10,000 records) the worker's share grows up to those sizes and stops
there.

Rows: `flow` is the whole CPU flow in one run (langid, filters, dedup_exact, dedup_near,
synthesize with the rule miner, decontaminate, mix, pack: the stages of bench_scaling.py's
rows, in that order); any row of bench_scaling.py runs its stages alone, and its bare-Beam rows
(`beam`, `beam lsh`, ...) run with no iptkit code: the harness's and the runner's own. Peak RSS is the
kernel's high-water mark (VmHWM) of the worker and job service processes, read every 0.2 s while
they run (the last 0.2 s of a process's life can be missed); the submitting `iptkit run` is
measured by rusage. Results: benchmarks/results/worker_memory.json and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

import corpus
import yaml
from bench_cleaning import IPTKIT, RESULTS, WORK, measured
from bench_scaling import BARE, PACK, ROWS, mb_per_1k, results_file, work_folder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from portable_helpers import JOB_SERVICE, external_workers  # noqa: E402

CHUNKED = Path(__file__).with_name("chunked_job_service.py")

SHARD_BYTES = 8 * 2**20
BUCKET_TOKENS = 2**20
CHAIN_WINDOW = 1000
CAPS = {"pack": {"bucket_tokens": BUCKET_TOKENS}, "synthesize": {"chain_window": CHAIN_WINDOW}}
FLOW_ROWS = ["langid", "filters", "dedup_exact", "dedup_near", "synthesize", "decontaminate"]
MIX = ROWS["mix+pack"][0]


def stages_of(row: str) -> list[dict[str, Any]]:
    """A row's stages, with pack's and synthesize's groups capped (CAPS)."""
    if row == "flow":
        stages = [stage for name in FLOW_ROWS for stage in ROWS[name]] + [MIX, {"pack": PACK}]
    else:
        stages = ROWS[row]
    return [
        {name: {**options, **CAPS.get(name, {})}}
        for stage in stages
        for name, options in stage.items()
    ]


class HighWater:
    """The largest VmHWM (MB) seen per kind of process, a process being of a kind when the
    marker is in its /proc file (`cmdline` or `environ`): markers unique to this run, so other
    jobs on the machine are not counted."""

    def __init__(self, markers: dict[str, tuple[str, str]], every: float = 0.2):
        self.markers, self.every = markers, every
        self.peaks: dict[str, float] = dict.fromkeys(markers, 0.0)
        self.processes: dict[str, set[int]] = {name: set() for name in markers}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> HighWater:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            for pid in filter(str.isdigit, os.listdir("/proc")):
                for name, (where, marker) in self.markers.items():
                    try:
                        if marker.encode() not in Path(f"/proc/{pid}/{where}").read_bytes():
                            continue
                        status = Path(f"/proc/{pid}/status").read_text()
                    except OSError:
                        continue  # gone meanwhile, or not ours to read
                    hwm = next(
                        ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM")
                    )
                    self.peaks[name] = max(self.peaks[name], int(hwm) / 1024)
                    self.processes[name].add(int(pid))


def run_row(row: str, docs: Path, work: Path, launcher: Path = CHUNKED) -> dict[str, Any]:
    """One `iptkit run` of a row on the PortableRunner with one EXTERNAL worker, the job
    service started through `launcher`."""
    work.mkdir(parents=True, exist_ok=True)
    run = work / "run"
    spec = {
        "seed": 1234,
        "output": str(run),
        "output_shard_bytes": SHARD_BYTES,
        "sources": [{"name": "corpus", "format": "jsonl", "path": str(docs), "id_field": "id",
                     "lang_field": "lang", "kind": "raw"}],
        "stages": [] if row in BARE else stages_of(row),
    }  # fmt: skip
    (work / "spec.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True))
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    with external_workers(logs, launcher) as services:
        port = services.job_endpoint.rsplit(":", 1)[1]
        markers = {
            # The pool hands its environment, which names this run's logs, to its workers.
            "worker": ("environ", str(logs)),
            "job_service": ("cmdline", f"--port={port}"),
        }
        with HighWater(markers) as high:
            if row in BARE:  # bare Beam, no iptkit code: the harness's and runner's own
                (work / "bare_beam.py").write_text(BARE[row])
                cmd = [sys.executable, str(work / "bare_beam.py"), str(docs), str(run / "out"),
                       *services.beam_args(1)]  # fmt: skip
            else:
                cmd = [str(IPTKIT), "run", str(work / "spec.yaml"), "--out", str(run), "--force",
                       *services.beam_args(1)]  # fmt: skip
            result = measured(cmd, work / "log.txt")
    return {
        "wall_seconds": result["process_seconds"],
        "submitter_maxrss_mb": result["maxrss_mb"],
        "worker_maxrss_mb": high.peaks["worker"],
        "workers": len(high.processes["worker"]),
        "job_service_maxrss_mb": high.peaks["job_service"],
    }


def table(results: dict[str, Any]) -> str:
    sizes = results["sizes"]
    head = " | ".join(f"{n:,} docs: worker, runner MB" for n in sizes)
    lines = [
        f"| row | {head} | worker slope, MB per 1k docs | runner slope |",
        "|---" * (len(sizes) + 3) + "|",
    ]
    rows = sorted({row for by in results["runs"].values() for row in by})
    for row in rows:
        cells, worker, runner = [], {}, {}
        for n in sizes:
            got = results["runs"].get(str(n), {}).get(row)
            if got is None:
                cells.append("-")
                continue
            worker[n], runner[n] = got["worker_maxrss_mb"], got["job_service_maxrss_mb"]
            cells.append(f"{worker[n]:,.0f}, {runner[n]:,.0f}")
        slopes = [mb_per_1k(worker), mb_per_1k(runner)]
        shown = ["-" if s is None else f"{s:+.2f}" for s in slopes]
        lines.append(f"| {row} | {' | '.join(cells)} | {shown[0]} | {shown[1]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 25_000, 50_000])
    parser.add_argument("--rows", nargs="+", choices=["flow", *BARE, *ROWS], default=["flow"])
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--out", type=Path, default=RESULTS / "worker_memory.json")
    parser.add_argument(
        "--whole-messages",
        action="store_true",
        help="Beam's job service as shipped: a worker gets its part of a GroupByKey's output "
        "as one message (rows named '<row>, whole messages')",
    )
    args = parser.parse_args()
    launcher = JOB_SERVICE if args.whole_messages else CHUNKED
    caps = {"output_shard_bytes": SHARD_BYTES, **CAPS}
    results = results_file(args.out, "bench_worker_memory.py", args.sizes, caps=caps)
    for n in sorted(args.sizes):
        docs = corpus.ensure(n, args.seed, WORK / f"corpus-{n}") / "docs.jsonl.gz"
        runs = results["runs"].setdefault(str(n), {})
        for row in args.rows:
            name = f"{row}, whole messages" if args.whole_messages else row
            work = work_folder("worker_memory", n, name)
            runs[name] = run_row(row, docs, work, launcher)
            print(f"{n} {name}: {runs[name]}", file=sys.stderr, flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
