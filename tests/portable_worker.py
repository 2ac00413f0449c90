"""The boot executable of the tests' EXTERNAL workers (`worker_pool_main --container_executable`).

A worker pool starts each SDK worker through a boot executable, given the runner's endpoints
(the container contract: --id, --control_endpoint, ...), as a worker image's boot starts the SDK
harness. This one starts the SDK harness the pool would start itself, after one addition for
the tests: each part of an input file the worker parses (`_ReadPartFn`, the read step's parse)
is noted, with the worker's process id, in the file the environment variable
IPTKIT_TEST_READ_LOG names, so a test can tell which worker processes did the reading.
"""

import argparse
import json
import os
import sys

from apache_beam.runners.worker.sdk_worker import SdkHarness

from iptkit.transforms.reading import read


def _noting(process):
    log = os.environ["IPTKIT_TEST_READ_LOG"]

    def noted(self, element, *args, **kwargs):
        _, path, _, span = element
        row = {"pid": os.getpid(), "path": path, "begin": span.begin, "end": span.end}
        with open(log, "a", encoding="utf-8") as out:  # one short append per part
            out.write(json.dumps(row) + "\n")
        yield from process(self, element, *args, **kwargs)

    return noted


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--id", required=True)
    parser.add_argument("--control_endpoint", required=True)
    args, _ = parser.parse_known_args()
    # The pool reads nothing from a worker's stdout pipe: what would fill it goes to its log.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    read._ReadPartFn.process = _noting(read._ReadPartFn.process)
    SdkHarness(args.control_endpoint, worker_id=args.id).run()


if __name__ == "__main__":
    main()
