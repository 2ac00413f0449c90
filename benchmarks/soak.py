"""Soak: rounds of a fuzzed corpus, a run killed at a random point and rerun, nothing lost.

    .venv/bin/python benchmarks/soak.py --minutes 10            # seed 1; --rounds N instead

Each round draws a corpus with the hypothesis strategies of tests/reliability/ (JSONL lines
with invalid UTF-8 in ids, keys and text, wrong types, nulls, deep nesting, zero-width and bidi
characters, raw bytes; a Parquet file of every logical type, sometimes scribbled on), seeded by
the round, and runs a spec of record stages over it (normalize, filters, dedup_exact,
dedup_near with a small `max_record_chars`, the rule-based synthesizer):

1. a reference run (in this process);
2. a run into another directory, in a subprocess killed with SIGKILL at a seeded random moment
   of its work (up to 0.6 of the reference's time after the run directory gets its first
   file: the reference's time includes validation, which a subprocess does before that), then
   rerun (in this process) into the same directory;
3. checks (tests/reliability/killing.py, the kill tests' own): the ledger balances, every record
   read is in the output or in exactly one reject file, every JSON Lines file is strict UTF-8
   JSON, and the rerun's files are byte-identical to the reference's.

A failed round keeps its folder under benchmarks/.work/soak/ (corpus, spec, both runs) and the
summary names it; passing rounds are deleted. Prints one line per round and a JSON summary.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import shutil
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "reliability")]

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import seed as with_seed  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from killing import check_nothing_lost, files, run_killed  # noqa: E402
from test_fuzz_readers import lines, parquet_files  # noqa: E402

from iptkit.pipelines.cli import main as iptkit  # noqa: E402

WORK = HERE / ".work" / "soak"
SPEC = """\
seed: {seed}
output: run
output_shards: 2
sources:
  - {{name: a, format: jsonl, path: a.jsonl{id_field}}}
  - {{name: b, format: parquet, path: b.parquet}}
stages:
  - normalize: {{invalid_utf8: replace, save: true}}
  - filters: {{min_words: 1, min_chars: 1}}
  - dedup_exact: {{}}
  - dedup_near: {{max_record_chars: 400}}
  - synthesize: {{backend: rules, fraction: 1.0}}
"""


def draw_corpus(round_seed: int) -> dict:
    """One corpus drawn by the fuzz suite's strategies, the same for the same seed (the last of
    a few examples: hypothesis tries the simplest first)."""
    drawn: dict = {}

    @with_seed(round_seed)
    @settings(
        max_examples=3,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        jsonl=st.lists(lines(), min_size=60, max_size=200),
        parquet=parquet_files(),
        ids=st.booleans(),
    )
    def draw(jsonl, parquet, ids):
        drawn.update(jsonl=jsonl, parquet=parquet[0], ids=ids)

    draw()
    return drawn


def quiet_run(spec: Path, out: Path) -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = iptkit(["run", str(spec), "--out", str(out)])
    assert code == 0, f"iptkit run exited with {code}"


def soak_round(index: int, seed: int, rng: random.Random) -> dict:
    folder = WORK / f"round-{index:04d}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    corpus = draw_corpus(seed * 100_003 + index)
    (folder / "a.jsonl").write_bytes(b"\n".join(corpus["jsonl"]))
    (folder / "b.parquet").write_bytes(corpus["parquet"])
    spec = folder / "spec.yaml"
    id_field = ", id_field: id" if corpus["ids"] else ""
    spec.write_text(SPEC.format(seed=index, id_field=id_field))

    started = time.monotonic()
    quiet_run(spec, folder / "reference")
    span = time.monotonic() - started
    read = check_nothing_lost(folder / "reference")
    killed = run_killed(spec, folder / "run", rng.uniform(0.0, 0.6) * span)
    quiet_run(spec, folder / "run")
    assert check_nothing_lost(folder / "run") == read
    expected, got = files(folder / "reference"), files(folder / "run")
    differ = sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))
    assert not differ, f"the rerun differs from the reference in {differ}"
    shutil.rmtree(folder)
    return {"lines": len(corpus["jsonl"]), "read": read, "killed": killed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=0, help="stop after N rounds (0: by time)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    summary = {"rounds": 0, "jsonl_lines": 0, "records_read": 0, "kills_survived": 0}
    summary.update(finished_before_kill=0, failures=[])
    deadline = time.monotonic() + args.minutes * 60
    started = time.monotonic()
    index = 0
    while (args.rounds and index < args.rounds) or (
        not args.rounds and time.monotonic() < deadline
    ):
        try:
            got = soak_round(index, args.seed, rng)
        except Exception as exc:  # noqa: BLE001 (a soak reports every failure and goes on)
            folder = WORK / f"round-{index:04d}"
            summary["failures"].append({"round": index, "folder": str(folder), "error": repr(exc)})
            print(f"round {index}: FAILED {exc!r}\n{traceback.format_exc()}", flush=True)
        else:
            summary["jsonl_lines"] += got["lines"]
            summary["records_read"] += got["read"]
            summary["kills_survived"] += got["killed"]
            summary["finished_before_kill"] += not got["killed"]
            print(f"round {index}: {json.dumps(got)}", flush=True)
        index += 1
        summary["rounds"] = index
    summary["minutes"] = round((time.monotonic() - started) / 60, 1)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
