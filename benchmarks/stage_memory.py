"""`iptkit run` on the DirectRunner with each fused stage's memory printed as it ends:
`python benchmarks/stage_memory.py [--trim] run SPEC --out RUN --direct_num_workers=1
--direct_running_mode=in_memory` (figures: RESULTS.md, "synthesize: where its own memory goes").

Each line: the stage's name (Beam's fused transforms), the process's RSS before and after it,
and the high-water mark so far (/proc/self/status), so a run's peak is placed at the step
that makes it. `--trim` calls glibc's `malloc_trim(0)` after every stage: what the RSS then
loses is memory freed and kept by the allocator, not live data. Linux only.
"""

import ctypes
import sys
import time

from apache_beam.runners.portability.fn_api_runner import fn_runner


def memory_mb() -> dict[str, int]:
    with open("/proc/self/status") as f:
        rows = [line.split(":") for line in f if line.startswith(("VmRSS", "VmHWM"))]
    return {key: int(value.split()[0]) // 1024 for key, value in rows}


def traced(execute, trim: bool):
    def run(self, context, bundle, inputs):
        before, started = memory_mb(), time.time()
        result = execute(self, context, bundle, inputs)
        if trim:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        after = memory_mb()
        print(
            f"STAGE {bundle.stage.name[:100]} rss {before['VmRSS']} -> {after['VmRSS']} MB, "
            f"high-water {after['VmHWM']} MB, {time.time() - started:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        return result

    return run


if __name__ == "__main__":
    trim = "--trim" in sys.argv[1:2]
    args = sys.argv[2:] if trim else sys.argv[1:]
    fn_runner.FnApiRunner._execute_bundle = traced(fn_runner.FnApiRunner._execute_bundle, trim)
    from iptkit.pipelines.cli import main

    sys.exit(main(args))
