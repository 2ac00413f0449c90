"""What a run on a portable runner (the PortableRunner, Flink, Spark, Prism) needs beyond Beam's
defaults: a client that waits as long as the job runs, and a clear error when it cannot.

Why: Beam's portable client follows a job through two gRPC streams (its state and its messages)
opened with `job_server_timeout` as their deadline (300 s by default), so any job longer than
five minutes ends on the client with DEADLINE_EXCEEDED while it goes on running on the runner
(apache/beam#35867 shows the same on Prism); iptkit would then report a failed run and write no
ledger. Unless the user sets `--job_server_timeout`, iptkit sets it to JOB_WAIT_SECONDS. The
same timeout bounds the wait for a `--job_endpoint` to accept a connection, so that endpoint is
checked first, with a short wait of its own.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import grpc
from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions

from iptkit.errors import IptkitError
from iptkit.pipelines.compile import runner_name

PORTABLE_RUNNERS = frozenset({"portable", "flink", "spark", "prism"})
JOB_WAIT_SECONDS = 30 * 24 * 3600  # the longest job the client follows: 30 days
CONNECT_SECONDS = 30.0  # how long a --job_endpoint may take to accept a connection
TIMEOUT_FLAGS = ("--job_server_timeout", "--job-server-timeout")
MESSAGE_THREAD = "wait_until_finish_read"  # Beam's client thread reading the job's messages
READER_JOIN_SECONDS = 5.0


def job_wait_flags(options: PipelineOptions, flags: list[str]) -> list[str]:
    """`--job_server_timeout=JOB_WAIT_SECONDS` for a portable runner whose flags (`flags`, the
    spec's and the command line's) set none; else nothing."""
    if runner_name(options) not in PORTABLE_RUNNERS:
        return []
    if any(flag.split("=", 1)[0] in TIMEOUT_FLAGS for flag in flags):
        return []
    return [f"--job_server_timeout={JOB_WAIT_SECONDS}"]


def check_job_endpoint(options: PipelineOptions, seconds: float = CONNECT_SECONDS) -> None:
    """Raise a clear error when the `--job_endpoint` of a portable run accepts no connection
    within `seconds` (the job-length timeout would otherwise make the client wait that long)."""
    endpoint = options.view_as(PortableOptions).job_endpoint
    if runner_name(options) not in PORTABLE_RUNNERS or not endpoint or endpoint == "embed":
        return
    host, _, port = endpoint.rpartition(":")
    try:
        with socket.create_connection((host or "localhost", int(port)), timeout=seconds):
            return
    except (OSError, ValueError) as exc:
        raise IptkitError(
            f"--job_endpoint={endpoint}: no job service answers there ({exc}); start it "
            "(Beam's job server for Flink or Spark, or apache_beam.runners.portability."
            "local_job_service_main) or fix the address (HOST:PORT)"
        ) from None


def wait_error(exc: Exception, options: PipelineOptions) -> IptkitError | None:
    """The error to show when the client stopped following a job at its deadline, or None."""
    if not _deadline(exc):
        return None
    timeout = options.view_as(PortableOptions).job_server_timeout
    return IptkitError(
        f"the client stopped following the job after --job_server_timeout={timeout} s "
        "(the deadline of Beam's job state stream); the job may still be running on the "
        "runner, and this run's ledger and reports were not written. Run it again with a "
        "larger --job_server_timeout, or without the flag (iptkit then waits up to "
        f"{JOB_WAIT_SECONDS // 86400} days)"
    )


def _deadline(exc: BaseException | None) -> bool:
    return isinstance(exc, grpc.RpcError) and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED


@contextlib.contextmanager
def quiet_message_deadline() -> Iterator[None]:
    """While a job is followed: Beam's client reads the job's messages in a thread of its own
    (`wait_until_finish_read`), which dies with a printed traceback when the stream reaches
    its deadline; `wait_error` already says what happened, so that one traceback is left out
    (any other thread exception is shown as before)."""
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else ""
        if not (name == MESSAGE_THREAD and _deadline(args.exc_value)):
            previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        # The message stream's deadline comes just after the state stream's: let the reader
        # thread end before the hook is put back.
        for thread in threading.enumerate():
            if thread.name == MESSAGE_THREAD:
                thread.join(timeout=READER_JOIN_SECONDS)
        threading.excepthook = previous
