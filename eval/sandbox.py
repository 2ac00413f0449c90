"""Running untrusted Python (a model's code and a benchmark's tests) in a bounded subprocess.

Each run gets a fresh temporary directory holding `program.py`, a fresh interpreter
(`python -I -S`: no site-packages, no user site, no PYTHON* variables, the directory not on the
path), a scrubbed environment (PATH, HOME and TMPDIR only, the last two the directory) and its
stdout and stderr in files, of which `output_bytes` are kept (stdout's first, stderr's last).
`eval/sandbox_boot.py` sets the resource limits and an audit hook before the program runs.

What bounds what (see docs/eval.md, "Code and math suites"):
- time: a wall-clock limit (the whole process group, and with namespaces the whole PID
  namespace, is killed) and RLIMIT_CPU;
- memory: RLIMIT_AS; running out is reported as `memory`;
- files: RLIMIT_FSIZE per file; the audit hook refuses writes outside the directory;
- processes: the audit hook refuses fork/exec/spawn/subprocess; RLIMIT_NPROC as well, which
  Linux does not enforce for root;
- network: with `isolation: namespace` (Linux, `unshare` allowed) the program runs in new
  user, network, PID and mount namespaces: no interface but a down loopback, so no connection
  anywhere, 127.0.0.1 included, whatever the code does; `/proc` shows the namespace's own
  processes only. Without namespaces (`isolation: audit`) the audit hook refuses sockets: a
  guard against model mistakes, not against code written to escape (an audit hook is not a
  security boundary).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from iptkit.errors import EvalError

BOOT = Path(__file__).resolve().parent / "sandbox_boot.py"
MEMORY_EXIT, CPU_EXIT = 86, 87  # sandbox_boot's
# New user, network, PID and mount namespaces; the program is the PID namespace's init (so every
# process it starts dies with it) and /proc is the namespace's own.
NAMESPACE_PREFIX = (
    "unshare", "--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child",
    "--mount-proc",
)  # fmt: skip

Isolation = Literal["auto", "namespace", "audit"]
Status = Literal["passed", "failed", "timeout", "memory", "crashed"]


@dataclass(frozen=True)
class Limits:
    """The bounds of one run. HumanEval's own harness allows 3 s per problem; the defaults
    leave room for a slow shared machine."""

    wall_s: float = 10.0
    cpu_s: int = 5
    memory_mb: int = 1024
    file_size_mb: int = 16
    processes: int = 64
    output_bytes: int = 8192


@dataclass(frozen=True)
class Outcome:
    """How a run ended. `status`: passed (exit 0), failed (non-zero exit: an assertion, an
    exception, a refused operation), timeout (wall or CPU limit; `returncode` None: the wall),
    memory (the address-space limit), crashed (killed by a signal). `isolation` says which
    guarantees held."""

    status: Status
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float
    isolation: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_json(self) -> dict:
        return asdict(self)


@functools.cache
def namespaces_available() -> bool:
    """Whether this machine lets us run a program in new user, network and PID namespaces."""
    if shutil.which("unshare") is None:
        return False
    try:
        probe = subprocess.run(
            [*NAMESPACE_PREFIX, sys.executable, "-I", "-S", "-c", "pass"],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def resolve_isolation(isolation: Isolation) -> Literal["namespace", "audit"]:
    """`auto`: namespaces where the machine allows them, else the audit hook alone."""
    if isolation == "audit":
        return "audit"
    if namespaces_available():
        return "namespace"
    if isolation == "namespace":
        raise EvalError(
            "sandbox isolation `namespace` needs `unshare` with unprivileged user namespaces "
            "(Linux); this machine refuses them: set isolation to auto or audit"
        )
    return "audit"


def _wait(process: subprocess.Popen, deadline: float) -> tuple[int | None, float]:
    """Wait for the run until `deadline` (monotonic): its exit code (None: killed at the wall
    limit) and the CPU seconds of its whole process tree (wait4's usage)."""
    timed_out = False
    try:
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() >= deadline:
                timed_out = True
                break
            time.sleep(0.01)
    finally:
        if timed_out or sys.exc_info()[0] is not None:  # the wall clock, or an interrupt
            # Not yet reaped, so its id still names its group: the group dies together.
            os.killpg(process.pid, signal.SIGKILL)
            _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return (None if timed_out else process.returncode), usage.ru_utime + usage.ru_stime


def classify(returncode: int | None, cpu_s: float, limits: Limits) -> Status:
    """How a run ended, from its exit and the CPU time its process tree used. At the CPU limit
    the boot script exits with CPU_EXIT; code stuck in C is killed a second later, which `unshare`
    reports inconsistently, so the CPU time used tells that case."""
    if returncode is None:
        return "timeout"  # the wall clock
    if returncode == 0:
        return "passed"
    if returncode == MEMORY_EXIT:
        return "memory"
    if returncode == CPU_EXIT or cpu_s >= limits.cpu_s:
        return "timeout"
    if returncode < 0:
        return "crashed"
    return "failed"


def _read_capped(path: Path, limit: int, tail: bool = False) -> str:
    """At most `limit` bytes of an output file: its beginning, or its end (`tail`: where a
    traceback's last line, the error, is), marked where cut."""
    size = path.stat().st_size
    with path.open("rb") as file:
        if tail:
            file.seek(max(0, size - limit))
        data = file.read(limit)
    text = data.decode("utf-8", "replace")
    if size <= limit:
        return text
    return "[cut ...]\n" + text if tail else text + "\n[... cut]"


def run_program(program: str, limits: Limits = Limits(), isolation: Isolation = "auto") -> Outcome:
    """Run `program` (Python source) in the sandbox; never raises for what the program does."""
    mode = resolve_isolation(isolation)
    with tempfile.TemporaryDirectory(prefix="iptkit-sandbox-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        (work / "program.py").write_text(program, encoding="utf-8")
        config = {"limits": asdict(limits), "block_network": mode == "audit"}
        command = [sys.executable, "-I", "-S", "-B", str(BOOT), json.dumps(config)]
        if mode == "namespace":
            command = [*NAMESPACE_PREFIX, *command]
        env = {"PATH": os.defpath, "HOME": str(work), "TMPDIR": str(work), "LANG": "C.UTF-8"}
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        start = time.monotonic()
        with out_path.open("wb") as out, err_path.open("wb") as err:
            process = subprocess.Popen(
                command,
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own process group, killed as one
            )
            returncode, cpu = _wait(process, start + limits.wall_s)
        wall = time.monotonic() - start
        return Outcome(
            status=classify(returncode, cpu, limits),
            returncode=returncode,
            stdout=_read_capped(out_path, limits.output_bytes),
            stderr=_read_capped(err_path, limits.output_bytes, tail=True),
            wall_s=round(wall, 3),
            isolation=mode,
        )
