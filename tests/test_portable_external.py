"""Runs on the PortableRunner with two EXTERNAL workers from Beam's worker pool (the worker model
Flink and Spark use), against Beam's local job service, all offline on 127.0.0.1: the demo and
one big file give byte for byte what the DirectRunner gives, and both worker processes read."""

import json
import random
import textwrap

import pytest
from conftest import DEMO_SPEC
from portable_helpers import assert_same_bytes_as_default_runner, external_workers

from iptkit.pipelines.spec import load_plan

WORKERS = 2


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    """One job service and worker pool for the module's runs; stopped at its end."""
    with external_workers(tmp_path_factory.mktemp("portable-services")) as services:
        yield services


def test_demo_on_two_external_workers_matches_the_direct_runner(workers, tmp_path):
    workers.clear_reads()
    found = assert_same_bytes_as_default_runner(
        DEMO_SPEC, *workers.beam_args(WORKERS), base=tmp_path
    )
    assert {name.split("/")[0] for name in found} == {
        "output",
        "rejects",
        "data",
        "shards",
        "stats.json",
    }
    # Every input file of the demo was parsed on the EXTERNAL workers, by both processes.
    inputs = {f.path for files in load_plan(str(DEMO_SPEC)).files.values() for f in files}
    reads = workers.reads()
    assert {r["path"] for r in reads} == inputs
    assert len({r["pid"] for r in reads}) == WORKERS


WORDS = "alpha beta gamma delta river stone cloud paper green light small quiet".split()


def big_corpus(path, lines: int) -> None:
    """JSON Lines of seeded random text, with a broken line, an empty text and exact duplicates
    here and there, so that rejects and dedup have work in every part of the file."""
    rng = random.Random(7)
    rows = []
    for i in range(lines):
        if i % 997 == 3:
            rows.append("{broken json")
        elif i % 1009 == 5:
            rows.append(json.dumps({"text": ""}))
        elif i % 101 == 9:
            rows.append(rows[i - 50] if i >= 50 else json.dumps({"text": "a duplicate"}))
        else:
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 70)))
            rows.append(json.dumps({"text": f"Document {i}: {text}.", "n": i}))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_one_big_file_is_read_in_ranges_by_both_external_workers(workers, tmp_path):
    data = tmp_path / "big.jsonl"
    big_corpus(data, 6_000)
    size = data.stat().st_size
    assert size > 1_500_000  # a few MB, in about 26 ranges
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        seed: 5
        output: {tmp_path / "run"}
        output_shards: 2
        sources:
          - {{name: big, format: jsonl, path: {data}}}
        stages:
          - normalize: {{}}
          - dedup_exact: {{}}
        """)
    )
    range_bytes = 64 * 1024
    workers.clear_reads()
    # The DirectRunner reads the file whole (it is under 64 MiB); the workers in 64 KiB ranges.
    found = assert_same_bytes_as_default_runner(
        spec, *workers.beam_args(WORKERS), f"--read_range_bytes={range_bytes}"
    )
    stats = json.loads(found["stats.json"])
    assert stats["read"] == 6_000 and stats["stages"]["dedup_exact"]["dropped"]
    reads = workers.reads()
    assert sorted((r["begin"], r["end"]) for r in reads) == [
        (begin, min(begin + range_bytes, size)) for begin in range(0, size, range_bytes)
    ]
    by_worker = {pid: sum(1 for r in reads if r["pid"] == pid) for pid in {r["pid"] for r in reads}}
    assert len(by_worker) == WORKERS, by_worker
