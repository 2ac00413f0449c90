"""One huge record through dedup_near, with and without the per-record cap (`max_chars`).

    .venv/bin/python benchmarks/bench_huge_record.py            # 30 M characters, ~2 minutes

Writes one JSONL record of about `--chars` characters (seeded random six-letter words) and one
short record under benchmarks/.work/huge-record/, then runs `iptkit run` with dedup_near alone
twice in fresh processes: with the default cap and with the cap lifted. Reports each run's
stage time (RUN/timings.json) and the peak resident memory of the process (ru_maxrss of the
child), and their ratios.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "huge-record"
IPTKIT = [sys.executable, "-m", "iptkit.pipelines.cli"]


def write_corpus(chars: int) -> Path:
    rng = random.Random(1)
    vocab = ["".join(rng.choice("abcdefghij") for _ in range(6)) for _ in range(50_000)]
    text = " ".join(rng.choice(vocab) for _ in range(chars // 7 + 1))[:chars]
    WORK.mkdir(parents=True, exist_ok=True)
    data = WORK / "big.jsonl"
    rows = [{"text": text}, {"text": "a short record next to it"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = WORK / "spec.yaml"
    spec.write_text(
        f"seed: 1\noutput: {WORK / 'run'}\nsources:\n  - {{name: big, format: jsonl, path: {data}}}\n"
        "stages:\n  - dedup_near: {}\n"
    )
    return spec


def measure(spec: Path, out: Path, *sets: str) -> dict[str, float]:
    """One run in a fresh process: the stage's time and the process's peak memory (GB)."""
    command = [*IPTKIT, "run", str(spec), "--out", str(out), "--force"]
    for item in sets:
        command += ["--set", item]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak_kb <= before:
        raise SystemExit("a later run peaked lower than an earlier one: run each side alone")
    seconds = json.loads((out / "timings.json").read_text())["stage_seconds"]["dedup_near"]
    return {"stage_seconds": round(seconds, 2), "peak_rss_gb": round(peak_kb / 2**20, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chars", type=int, default=30_000_000)
    args = parser.parse_args()
    spec = write_corpus(args.chars)
    # The capped run first: ru_maxrss of children only grows, so the larger peak comes second.
    capped = measure(spec, WORK / "capped")
    uncapped = measure(spec, WORK / "uncapped", f"stages.dedup_near.max_chars={args.chars * 2}")
    ratios = {k: round(uncapped[k] / capped[k], 1) for k in capped}
    print(json.dumps({"capped": capped, "uncapped": uncapped, "uncapped/capped": ratios}, indent=2))


if __name__ == "__main__":
    main()
