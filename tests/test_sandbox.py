"""The code sandbox against hostile programs: each bound is shown to hold, and to be the sandbox's
doing (the same program outside it gets through)."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from iptkit.eval.sandbox import Limits, namespaces_available, run_program

MODES = ["audit"] + (["namespace"] if namespaces_available() else [])
FAST = Limits(wall_s=10.0, cpu_s=2, memory_mb=256, file_size_mb=1, output_bytes=1000)


@pytest.fixture(params=MODES)
def isolation(request: pytest.FixtureRequest) -> str:
    return request.param


def run(code: str, isolation: str, limits: Limits = FAST):
    return run_program(textwrap.dedent(code), limits, isolation)  # type: ignore[arg-type]


def outside(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """The same program run by a plain interpreter: what it does without the sandbox."""
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_correct_code_passes_and_wrong_code_fails(isolation: str) -> None:
    good = run("def f(x):\n    return x * 2\nassert f(2) == 4\nprint('ok')\n", isolation)
    assert (good.status, good.returncode, good.stdout, good.isolation) == (
        "passed",
        0,
        "ok\n",
        isolation,
    )
    bad = run("def f(x):\n    return x + 2\nassert f(3) == 6, 'wrong'\n", isolation)
    assert bad.status == "failed" and "AssertionError: wrong" in bad.stderr
    syntax = run("def f(:\n", isolation)
    assert syntax.status == "failed" and "SyntaxError" in syntax.stderr


def test_an_infinite_loop_is_killed_at_the_cpu_limit(isolation: str) -> None:
    outcome = run("while True:\n    pass\n", isolation, Limits(wall_s=120, cpu_s=1))
    assert outcome.status == "timeout"
    assert outcome.returncode is not None  # RLIMIT_CPU ended it, not the wall clock


def test_a_sleeping_program_is_killed_at_the_wall_limit(isolation: str) -> None:
    limits = Limits(wall_s=1.0, cpu_s=5)
    outcome = run("import time\ntime.sleep(60)\n", isolation, limits)
    assert (outcome.status, outcome.returncode) == ("timeout", None)
    assert 1.0 <= outcome.wall_s < 10


def test_a_memory_bomb_is_stopped_at_the_memory_limit(isolation: str, tmp_path: Path) -> None:
    bomb = "chunks = []\nwhile len(chunks) < 1024:\n    chunks.append(bytearray(1 << 20))\nprint('1 GiB')\n"
    assert outside(bomb, tmp_path).stdout == "1 GiB\n"  # fine without the limit
    outcome = run(bomb, isolation)
    assert outcome.status == "memory" and "memory limit" in outcome.stderr
    assert run("x = bytearray(4 << 30)\n", isolation).status == "memory"


def test_a_fork_bomb_is_refused_and_leaves_no_process(isolation: str, tmp_path: Path) -> None:
    marker = f"iptkit-fork-bomb-{isolation}"
    bomb = f"import os, time\nfor _ in range(64):\n    if os.fork() == 0:\n        time.sleep(30)  # {marker}\n"
    outcome = run(bomb, isolation)
    assert outcome.status == "failed" and "os.fork refused" in outcome.stderr
    spawn = run("import subprocess\nsubprocess.run(['true'])\n", isolation)
    assert spawn.status == "failed" and "subprocess.Popen refused" in spawn.stderr
    # ctypes would call fork (or connect) from libc, past the audit hook: it is refused too.
    assert "ctypes refused" in run("import ctypes\n", isolation).stderr
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert marker not in ps.stdout


@pytest.fixture
def server() -> Iterator[tuple[int, list[bool]]]:
    """A TCP server on 127.0.0.1 that records every connection it accepts."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    accepted: list[bool] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            accepted.append(True)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], accepted
    stop.set()
    thread.join()
    listener.close()


def test_network_is_refused_by_the_sandbox(
    isolation: str, server: tuple[int, list[bool]], tmp_path: Path
) -> None:
    port, accepted = server
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3).close()\nprint('connected')\n"
    plain = outside(code, tmp_path)
    assert plain.stdout == "connected\n" and len(accepted) == 1  # the server is reachable
    outcome = run(code, isolation)
    assert outcome.status == "failed" and "connected" not in outcome.stdout
    if isolation == "namespace":  # the socket exists; the namespace has no route anywhere
        assert "Network is unreachable" in outcome.stderr
    else:
        assert "refused (no network)" in outcome.stderr
    assert len(accepted) == 1


def test_files_outside_the_directory_and_huge_files_are_refused(
    isolation: str, tmp_path: Path
) -> None:
    target = tmp_path / "outside.txt"
    write = f"open({str(target)!r}, 'w').write('x')\n"
    assert outside(write, tmp_path).returncode == 0 and target.exists()
    target.unlink()
    outcome = run(write, isolation)
    assert outcome.status == "failed" and "refused" in outcome.stderr and not target.exists()
    moved = run(f"import os\nos.rename('program.py', {str(target)!r})\n", isolation)
    assert "os.rename" in moved.stderr and not target.exists()
    inside = run(
        "open('scratch.txt', 'w').write('x')\nprint(open('scratch.txt').read())\n", isolation
    )
    assert inside.stdout == "x\n"
    huge = run("with open('big', 'wb') as f:\n    f.write(b'x' * (4 << 20))\n", isolation)
    assert huge.status == "failed" and "File too large" in huge.stderr  # RLIMIT_FSIZE 1 MiB
    flood = run("print('y' * 100_000)\n", isolation)
    assert flood.stdout.endswith("[... cut]") and len(flood.stdout) < 1100


def test_environment_secrets_are_scrubbed(
    isolation: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("IPTKIT_TEST_SECRET", "hunter2")
    code = "import os\nprint(sorted(os.environ))\nprint(os.environ.get('IPTKIT_TEST_SECRET'))\n"
    assert "hunter2" in outside(code, tmp_path).stdout  # inherited without the sandbox
    outcome = run(code, isolation)
    assert outcome.stdout.splitlines() == ["['HOME', 'LANG', 'PATH', 'TMPDIR']", "None"]
    parent = run(
        "import os\nprint(open(f'/proc/{os.getppid()}/environ', 'rb').read())\n", isolation
    )
    assert parent.status == "failed" and "hunter2" not in parent.stdout
