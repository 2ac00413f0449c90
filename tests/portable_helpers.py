"""Runner parity, and Beam's portable services as separate local processes.

- `assert_same_bytes_as_default_runner(spec, *beam_args)`: a spec run on the DirectRunner and
  with other Beam flags writes the same bytes (`outputs`: records, rejects, kept data, shards,
  the ledger).
- `job_service()`: Beam's local job service (`local_job_service_main`, started through
  `tests/portable_job_service.py`, which hands its runner the job's `direct_num_workers`), the
  job server a PortableRunner submits to; with LOOPBACK the SDK harness runs inside the
  submitting process.
- `external_workers()`: the job service plus Beam's worker pool (`worker_pool_main`), the
  EXTERNAL environment Flink and Spark use: the runner asks the pool for SDK workers, and the
  pool starts each as a process of its own through its boot executable, as a worker image's
  boot does. Ours is `tests/portable_worker.py`, which notes, for every part of an input file a
  worker parses, the worker's process id in a log, so a test can show that several worker
  processes did the reading.

Everything listens on 127.0.0.1 ports picked free, needs nothing from outside, and every
process started is stopped when the context ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conftest import files_under, run_cli

WORKER_BOOT = Path(__file__).with_name("portable_worker.py")
JOB_SERVICE = Path(__file__).with_name("portable_job_service.py")
READ_LOG_ENV = "IPTKIT_TEST_READ_LOG"


def outputs(run: Path) -> dict[str, bytes]:
    """What must be byte-identical between runs: records, rejects, kept data, shards and the
    ledger."""
    found = {
        k: v
        for k, v in files_under(run).items()
        if k.startswith(("output/", "rejects/", "data/", "shards/")) or k == "stats.json"
    }
    assert found, f"no outputs under {run}"
    return found


def assert_same_bytes_as_default_runner(
    spec: Path, *beam_args: str, base: Path | None = None
) -> dict[str, bytes]:
    """Runs the spec on the default DirectRunner and with `beam_args`, into `base` (the spec's
    folder unless given); the outputs must match byte for byte. Returns them."""
    base = base or spec.parent
    assert run_cli("run", spec, "--out", base / "default") == 0
    assert run_cli("run", spec, "--out", base / "other", *beam_args) == 0
    found = outputs(base / "default")
    assert outputs(base / "other") == found
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(command: list[str], port: int, log: Path, env: dict | None = None):
    """`python command`, its output in `log`, once it listens on `port`."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, *command],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: the workers it starts go with it
        )
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{command} exited with {proc.returncode}: {log.read_text()[-2000:]}"
            )
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.2)
    _stop(proc)
    raise RuntimeError(
        f"{command} did not listen on port {port} in 60 s: {log.read_text()[-2000:]}"
    )


def _stop(proc: subprocess.Popen) -> None:
    """Stops a service and every process it started (its process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def job_service(logs: Path, launcher: Path = JOB_SERVICE) -> Iterator[str]:
    """Beam's local job service (through `launcher`, by default `tests/portable_job_service.py`,
    which gives its runner the job's `direct_num_workers`); yields its endpoint."""
    port = free_port()
    proc = _serve([str(launcher), f"--port={port}"], port, logs / "job_service.log")
    try:
        yield f"localhost:{port}"
    finally:
        _stop(proc)


@dataclass
class ExternalWorkers:
    """A running job service and worker pool, and the read log their workers write."""

    job_endpoint: str
    pool_endpoint: str
    read_log: Path

    def beam_args(self, workers: int) -> list[str]:
        """Flags for a run on the PortableRunner with `workers` EXTERNAL SDK workers: the job
        service asks the pool for `direct_num_workers` workers and splits every bundle's input
        between them."""
        return [
            "--runner=PortableRunner",
            f"--job_endpoint={self.job_endpoint}",
            "--environment_type=EXTERNAL",
            f"--environment_config={self.pool_endpoint}",
            f"--direct_num_workers={workers}",
        ]

    def reads(self) -> list[dict]:
        """What the workers noted since the log was last cleared: one row per part parsed,
        `{pid, path, begin, end}`."""
        if not self.read_log.exists():
            return []
        return [json.loads(line) for line in self.read_log.read_text().splitlines()]

    def clear_reads(self) -> None:
        self.read_log.unlink(missing_ok=True)


@contextlib.contextmanager
def external_workers(logs: Path, launcher: Path = JOB_SERVICE) -> Iterator[ExternalWorkers]:
    """The local job service (started through `launcher`) and a worker pool whose workers boot
    through `tests/portable_worker.py`; yields their endpoints and the read log."""
    boot = logs / "boot.sh"
    boot.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{WORKER_BOOT}" "$@"\n')
    boot.chmod(boot.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, READ_LOG_ENV: str(logs / "reads.jsonl")}
    port = free_port()
    with job_service(logs, launcher) as endpoint:
        pool = _serve(
            [
                "-m",
                "apache_beam.runners.worker.worker_pool_main",
                f"--service_port={port}",
                f"--container_executable={boot}",
            ],
            port,
            logs / "worker_pool.log",
            env,
        )
        try:
            yield ExternalWorkers(endpoint, f"localhost:{port}", logs / "reads.jsonl")
        finally:
            _stop(pool)
