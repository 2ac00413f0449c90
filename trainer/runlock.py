"""One trainer per run directory: ``run_dir/trainer.lock``, held by rank 0 for the whole run.

The lock is an exclusive ``flock`` on the file, so it ends with its process however that
process ends, and the file records who holds it (pid, host, when it started). A second trainer
on the same run_dir is refused with that record. A file left behind by a holder that was
killed is stale: on the same host, where the pid can be checked, it is taken over with a note;
a record from another host is never taken over (that run may still be going), and the error
says which file to delete once it is not.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import psutil

from iptkit.errors import IptkitError

LOCK_NAME = "trainer.lock"


class RunLocked(IptkitError):
    """Another trainer holds the run directory."""

    exit_code = 2


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: what the lock file records."""

    pid: int
    host: str
    started: str
    """When the lock was taken, local time with its UTC offset."""
    process_start: float | None = None
    """The holder's process creation time (seconds since the epoch): tells it from a later
    process that reuses its pid."""

    def __str__(self) -> str:
        return f"pid {self.pid} on host {self.host}, started {self.started}"

    def alive(self) -> bool:
        """Whether the holder still runs (meaningful on its own host only)."""
        try:
            process = psutil.Process(self.pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return False
            created = process.create_time()
        except psutil.Error:
            return False
        return self.process_start is None or abs(created - self.process_start) < 1.0

    @classmethod
    def me(cls) -> Holder:
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            started=datetime.now().astimezone().isoformat(timespec="seconds"),
            process_start=psutil.Process().create_time(),
        )


class RunLock:
    """The held lock of one run directory; `release()` (or leaving `with`) gives it up."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, run_dir: Path) -> RunLock:
        """Lock `run_dir`, or raise `RunLocked` naming the holder; a stale lock left on this host
        by a dead process is taken over with a note on stderr."""
        path = run_dir / LOCK_NAME
        fd = _open_locked(path, run_dir)
        previous = _read_holder(fd)
        if previous is not None:
            problem = None
            if previous.host != socket.gethostname():
                problem = (
                    f"{run_dir} is locked by a trainer on another host: {previous}. If that run "
                    f"is no longer going, delete {path} and start again"
                )
            elif previous.alive():  # a filesystem whose flock does not lock
                problem = _in_use(run_dir, previous, path)
            if problem is not None:
                os.close(fd)
                raise RunLocked(problem)
            print(
                f"note: taking over the lock of {run_dir} left by {previous}, which is no "
                "longer running",
                file=sys.stderr,
                flush=True,
            )
        record = json.dumps(asdict(Holder.me())) + "\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
        os.fsync(fd)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is None:
            return
        # Removed before it is unlocked: a trainer that opened the file meanwhile finds, once it
        # gets the flock, that its file is no longer the lock file, and opens the new one.
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _open_locked(path: Path, run_dir: Path) -> int:
    """Open the lock file and hold its flock; raise RunLocked while another process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunLocked(_in_use(run_dir, holder, path)) from None
        except OSError:
            pass  # no flock on this filesystem: the record alone decides (see acquire)
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            return fd
        os.close(fd)  # released and removed by its holder between our open and flock


def _in_use(run_dir: Path, holder: Holder | None, path: Path) -> str:
    who = str(holder) if holder is not None else f"a process that has not written {path} yet"
    return (
        f"{run_dir} is in use by another trainer: {who}. Wait for it to finish or stop it; "
        "two trainers on one run_dir would overwrite each other's checkpoints and metrics"
    )


def _read_holder(fd: int) -> Holder | None:
    raw = os.pread(fd, 4096, 0)
    try:
        fields = json.loads(raw)
        return Holder(**fields)
    except (ValueError, TypeError):
        return None  # empty (new, or being written) or not ours
