"""Kill a run at a chosen moment and check what a rerun leaves: shared by the kill tests and
benchmarks/soak.py (which imports it), so both judge a run by the same rules."""

from __future__ import annotations

import gzip
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IPTKIT = [sys.executable, "-m", "iptkit.pipelines.cli"]
# What a run writes that holds times or a wall clock: everything else must be the same bytes.
TIMED = {"stats.json", "timings.json", "report.html"}
SPEC_RESOLVED = "spec.resolved.yaml"


def env() -> dict[str, str]:
    """The environment of a run in a subprocess: the repository importable, one Beam worker."""
    return {**os.environ, "PYTHONHASHSEED": "0"}


def written(path: Path):
    """A predicate: whether `path` has been (re)written since now (atomic writes rename a new
    file into place, so its inode or time changes)."""

    def stamp() -> tuple[int, int] | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    before = stamp()
    return lambda: (now := stamp()) is not None and now != before


def start(spec: Path, out: Path) -> subprocess.Popen:
    """`iptkit run` in a subprocess, its output discarded."""
    return subprocess.Popen(
        [*IPTKIT, "run", str(spec), "--out", str(out)],
        cwd=REPO,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def timed_run(spec: Path, out: Path, timeout: float = 300) -> float:
    """One uninterrupted run; returns the seconds from its run directory's first file (the
    resolved spec, written once the run is known to start) to its end: where kills land."""
    marker = written(out / SPEC_RESOLVED)
    proc = start(spec, out)
    wait_for(marker, timeout, proc)
    started = time.monotonic()
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    return time.monotonic() - started


def run_killed(spec: Path, out: Path, after_s: float, timeout: float = 300) -> bool:
    """`iptkit run` killed with SIGKILL `after_s` seconds after its run directory gets its
    first file (the resolved spec); False when it finished first (then it must have passed)."""
    marker = written(out / SPEC_RESOLVED)
    proc = start(spec, out)
    if wait_for(marker, timeout, proc):
        try:
            proc.wait(timeout=after_s)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
    _, err = proc.communicate()
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    return False


def files(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run directory that must be identical between runs, by relative path
    (the resolved spec without its `output:` line, which names the run directory)."""
    found = {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name not in TIMED
    }
    spec = found.get(SPEC_RESOLVED, b"").splitlines(keepends=True)
    found[SPEC_RESOLVED] = b"".join(line for line in spec if not line.startswith(b"output: "))
    return found


def strict_jsonl_rows(path: Path) -> list[dict]:
    """The rows of a JSON Lines file (gzip or not), failing unless it is strict UTF-8 JSON:
    no NaN, no lone surrogate, a newline after the last row."""
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8")
    lines = text.split("\n")  # not splitlines(): U+2028 and U+0085 are plain characters in JSON
    assert lines[-1] == "", f"{path}: the last line has no newline"

    def refuse(name: str) -> float:
        raise AssertionError(f"{path}: {name} is not JSON")

    rows = [json.loads(line, parse_constant=refuse) for line in lines[:-1]]
    for row in rows:
        json.dumps(row, ensure_ascii=False).encode("utf-8")  # no lone surrogate in any string
    assert all(not isinstance(v, float) or math.isfinite(v) for r in rows for v in r.values())
    return rows


def check_nothing_lost(run_dir: Path) -> int:
    """The run's ledger balances and every record read is in the output or in exactly one
    reject file (a record stage's output; the tail's documents are counted by the ledger):
    returns how many records were read."""
    stats = json.loads((run_dir / "stats.json").read_text())
    assert stats["violations"] == [], stats["violations"]
    output: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    for path in sorted(run_dir.rglob("*.jsonl*")):
        rows = strict_jsonl_rows(path)
        top = path.relative_to(run_dir).parts[0]
        if top == "output":
            output.update(r["id"] for r in rows)
        elif top == "rejects" and path.parent.name in stats["stages"]:
            rejected.update(r["id"] for r in rows if not _from_tail(stats, r["stage"]))
    read = stats["stages"]["read"]["in"]
    assert sum(output.values()) == stats["output_records"]
    assert max(output.values(), default=1) == 1, "an id twice in the output"
    added = sum(sum(s.get("added", {}).values()) for s in stats["stages"].values())
    assert sum(output.values()) + sum(rejected.values()) == read + added
    return read


def _from_tail(stats: dict, stage: str) -> bool:
    """Whether `stage` works on tokenized documents (after RUN/output was written)."""
    names = list(stats["stages"])
    return "format" in names and names.index(stage) >= names.index("format")


def wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """Poll `predicate` every half millisecond (a checkpoint write may last a few, and a busy
    loop would take the CPU the polled process needs) until it holds (True), the timeout
    passes or `proc` exits (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.0005)
    return False
