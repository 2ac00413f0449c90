"""Beam's local job service, handing a GroupByKey's output to the worker in bounded messages:
`python benchmarks/chunked_job_service.py --port N` (bench_worker_memory.py starts it).

Why: the local job service's runner (the FnApiRunner) encodes the whole output of a GroupByKey
for a worker into one bytes object (`GroupingBuffer.partition` in
apache_beam/runners/portability/fn_api_runner/execution.py), which reaches the SDK worker as
one gRPC message, so the worker's peak memory grows with the largest shuffle of the job
whatever the job's code does. Flink and Dataflow stream grouped data to a worker in bounded
pieces. This launcher re-cuts each worker's part into pieces of about CHUNK_BYTES at element
boundaries (the same elements, in the same order), so what a worker holds is its code's share,
as on those runners. Everything else is `tests/portable_job_service.py`: Beam's job service with
the job's `direct_num_workers`.
"""

import sys
from pathlib import Path

from apache_beam.coders.coder_impl import create_InputStream, create_OutputStream
from apache_beam.runners.portability.fn_api_runner import execution

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import portable_job_service  # noqa: E402

CHUNK_BYTES = 4 << 20  # the data channel flushes at 10 MB: messages stay under ~14 MB

_partition = execution.GroupingBuffer.partition


def rechunk(blob: bytes, coder_impl) -> list[bytes]:
    """One encoded stream of elements as several of about CHUNK_BYTES, cut between elements."""
    chunks, out, stream = [], create_OutputStream(), create_InputStream(blob)
    while stream.size() > 0:
        coder_impl.encode_to_stream(coder_impl.decode_from_stream(stream, True), out, True)
        if out.size() >= CHUNK_BYTES:
            chunks.append(out.get())
            out = create_OutputStream()
    if out.size():
        chunks.append(out.get())
    return chunks


def partition(self, n: int) -> list[list[bytes]]:
    if not self._grouped_output:
        impl = self._post_grouped_coder.get_impl()
        parts = _partition(self, n)
        self._grouped_output = [[c for blob in part for c in rechunk(blob, impl)] for part in parts]
    return self._grouped_output


if __name__ == "__main__":
    execution.GroupingBuffer.partition = partition
    portable_job_service.main()
