"""Beam's local job service (`local_job_service_main`), with its runner given the job's worker
count: `python tests/portable_job_service.py --port N`.

The local job service runs each job on Beam's FnApiRunner, which starts `direct_num_workers`
SDK workers per environment and splits every bundle's input between them when it runs a
pipeline object (the DirectRunner's path); on the job service's path (`run_via_runner_api`, a
pipeline proto) it never reads the option, and neither it nor any other Python runner reads
`sdk_worker_parallelism`, so every job gets one worker. This launcher sets the runner's worker
count from the job's `direct_num_workers` as the DirectRunner's path does, and changes nothing
else: the job service, the runner and the EXTERNAL workers are Beam's own.
"""

import signal
import sys

from apache_beam.options.pipeline_options import DirectOptions
from apache_beam.runners.portability import local_job_service_main
from apache_beam.runners.portability.fn_api_runner import fn_runner

_run_via_runner_api = fn_runner.FnApiRunner.run_via_runner_api


def run_via_runner_api(self, pipeline_proto, options):
    # The job's options arrive as JSON values: the count may be a string or a float.
    self._num_workers = int(float(options.view_as(DirectOptions).direct_num_workers or 1))
    return _run_via_runner_api(self, pipeline_proto, options)


def main() -> None:
    fn_runner.FnApiRunner.run_via_runner_api = run_via_runner_api
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # as local_job_service_main does
    local_job_service_main.run(sys.argv[1:])


if __name__ == "__main__":
    main()
