"""One huge record through each stage alone, with its bounds and with them lifted.

    .venv/bin/python benchmarks/bench_huge_record.py                 # 12 M characters
    .venv/bin/python benchmarks/bench_huge_record.py --stages dedup_near --chars 30000000

Writes one JSONL record of about `--chars` characters (seeded random six-letter words, in
sentences) and one short record under benchmarks/.work/huge-record/, then runs `iptkit run`
with one stage at a time, in a fresh process started by benchmarks/rusage.py (so its peak RSS
is its own): once with the defaults (`max_record_chars`, 10 M: the record is a
`record_too_large` reject before the stage's work) and once with every bound of the stage
lifted (`max_record_chars` and the stage's own caps such as dedup_near's `max_chars`). Prints
each run's stage time (RUN/timings.json), peak RSS and exit code, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / ".work" / "huge-record"
EXAMPLES = REPO / "pipelines" / "examples"
IPTKIT = [sys.executable, "-m", "iptkit.pipelines.cli"]
BENCH = EXAMPLES / "data" / "bench" / "arc_mini_en.jsonl"

# Each stage's options in the benchmark spec, and the stage-specific caps lifted besides
# `max_record_chars` (the `--set` keys; a value of None takes twice the record's size).
STAGES: dict[str, tuple[str, dict[str, int | None]]] = {
    "normalize": ("{}", {}),
    "langid": ("{}", {"max_chars": None}),
    "filters": ("{}", {}),
    "dedup_exact": ("{}", {}),
    "dedup_near": ("{}", {"max_chars": None}),
    "categorize": ("{}", {"max_chars": None}),
    "decontaminate": (f"{{benchmarks: [{BENCH}], action: report}}", {}),
    "synthesize": ("{backend: rules, fraction: 1.0}", {}),
}


def write_corpus(chars: int) -> Path:
    rng = random.Random(1)
    vocab = ["".join(rng.choice("abcdefghij") for _ in range(6)) for _ in range(50_000)]
    words: list[str] = []
    size = 0
    while size < chars:
        sentence = " ".join(rng.choice(vocab) for _ in range(rng.randint(8, 20)))
        words.append(sentence.capitalize() + ".")
        size += len(words[-1]) + 1
    text = " ".join(words)[:chars]
    WORK.mkdir(parents=True, exist_ok=True)
    data = WORK / "big.jsonl"
    rows = [{"text": text}, {"text": "A short record next to it, about rivers and the sea."}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


def measure(stage: str, data: Path, sets: dict[str, int]) -> dict[str, float]:
    """One run of `stage` alone in a fresh process: its stage time, peak RSS and exit code."""
    options = STAGES[stage][0]
    spec = WORK / f"{stage}.yaml"
    spec.write_text(
        f"seed: 1\noutput: run\nsources:\n  - {{name: big, format: jsonl, path: {data}}}\n"
        f"stages:\n  - {stage}: {options}\n"
    )
    out = WORK / f"run-{stage}"
    command = [*IPTKIT, "run", str(spec), "--out", str(out), "--force"]
    for key, value in sets.items():
        command += ["--set", f"stages.{stage}.{key}={value}"]
    usage = WORK / "rusage.json"
    subprocess.run(
        [sys.executable, str(HERE / "rusage.py"), str(usage), *command],
        stdout=subprocess.DEVNULL,
        check=False,
    )
    got = json.loads(usage.read_text())
    result = {"exit_code": got["exit_code"], "peak_rss_gb": round(got["maxrss_mb"] / 1024, 2)}
    timings = out / "timings.json"
    if got["exit_code"] == 0 and timings.exists():
        seconds = json.loads(timings.read_text())["stage_seconds"][stage]
        stats = json.loads((out / "stats.json").read_text())["stages"][stage]
        result.update(stage_seconds=round(seconds, 2), dropped=stats["dropped"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chars", type=int, default=12_000_000)
    parser.add_argument("--stages", default=",".join(STAGES))
    args = parser.parse_args()
    data = write_corpus(args.chars)
    results = {}
    for stage in args.stages.split(","):
        lifted = {"max_record_chars": args.chars * 2}
        lifted.update({k: v or args.chars * 2 for k, v in STAGES[stage][1].items()})
        bounded = measure(stage, data, {})
        unbounded = measure(stage, data, lifted)
        ratios = {
            k: round(unbounded[k] / bounded[k], 1)
            for k in ("stage_seconds", "peak_rss_gb")
            if bounded.get(k) and unbounded.get(k)
        }
        results[stage] = {"bounded": bounded, "lifted": unbounded, "lifted/bounded": ratios}
        print(json.dumps({stage: results[stage]}), flush=True)
    (WORK / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
