"""Runs a command and writes its own wall time, CPU time and peak RSS as JSON.

    python benchmarks/rusage.py RESULT.json COMMAND [ARG]...

Why a separate small process: Linux counts a child's peak RSS from the moment it is forked, and
that high-water mark survives exec, so a command started straight from the benchmark (which has
Beam and numpy loaded) would report at least the benchmark's own size. Started from this
launcher, which imports nothing heavy, it reports its own.
"""

import json
import os
import subprocess
import sys
import time


def main() -> int:
    result_path, cmd = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(
            {
                "exit_code": code,
                "process_seconds": time.perf_counter() - started,
                "cpu_seconds": usage.ru_utime + usage.ru_stime,
                "maxrss_mb": usage.ru_maxrss / 1024,
            },
            f,
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
