"""Runs iptkit or a Beam script in this process with the DirectRunner handing grouped data to
its worker in bounded messages: `python benchmarks/bounded_messages.py iptkit run SPEC ...` or
`python benchmarks/bounded_messages.py SCRIPT.py ARGS...` (bench_scaling.py --bounded-messages).

Why: the DirectRunner (Beam's FnApiRunner, in memory) encodes the whole output of a GroupByKey
for its worker into one bytes object, the same handover `chunked_job_service.py` re-cuts for
the local job service. A run's peak then grows with its largest shuffle (an output sink's
input: every line it writes) whatever the stages hold. With the same patch here, a row's peak
shows what is left when grouped data reaches the worker in ~4 MB pieces, as on Flink and
Dataflow; the difference to the plain run is the runner's one-message handover.
"""

import runpy
import sys

from apache_beam.runners.portability.fn_api_runner import execution
from chunked_job_service import partition

if __name__ == "__main__":
    execution.GroupingBuffer.partition = partition
    target, sys.argv = sys.argv[1], sys.argv[1:]
    if target == "iptkit":
        from iptkit.pipelines.cli import main

        sys.exit(main())
    runpy.run_path(target, run_name="__main__")
