"""Portable runs follow a job as long as it runs, and say clearly when they cannot
(pipelines/portable.py): Beam's client gives up on a job's state stream at
`job_server_timeout`, 300 s unless set, while the job goes on."""

import json

import pytest
from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions
from conftest import run_cli
from portable_helpers import external_workers, free_port

from iptkit.pipelines.portable import JOB_WAIT_SECONDS, job_wait_flags
from iptkit.pipelines.runner import _pipeline
from iptkit.pipelines.spec import load_plan


@pytest.mark.parametrize(
    ("flags", "added"),
    [
        ([], False),  # the DirectRunner has no job service
        (["--runner=PortableRunner", "--job_endpoint=localhost:8099"], True),
        (["--runner=FlinkRunner", "--flink_master=[local]"], True),
        (["--runner=apache_beam.runners.portability.flink_runner.FlinkRunner"], True),
        (["--runner=SparkRunner"], True),
        (["--runner=DataflowRunner"], False),
        (["--runner=PortableRunner", "--job_server_timeout=60"], False),  # the user's wins
        (["--runner=FlinkRunner", "--job-server-timeout=60"], False),
    ],
)
def test_job_wait_flags_only_for_portable_runners_without_a_timeout(flags, added):
    got = job_wait_flags(PipelineOptions(flags), flags)
    assert got == ([f"--job_server_timeout={JOB_WAIT_SECONDS}"] if added else [])


def test_the_pipeline_of_a_portable_run_waits_for_the_job(corpus):
    plan = load_plan(corpus, [], str(corpus.parent / "run"))
    portable = _pipeline(plan, ["--runner=PortableRunner", "--job_endpoint=localhost:1"])
    assert portable.options.view_as(PortableOptions).job_server_timeout == JOB_WAIT_SECONDS
    given = _pipeline(plan, ["--runner=PortableRunner", "--job_server_timeout=7"])
    assert given.options.view_as(PortableOptions).job_server_timeout == 7


def test_an_unreachable_job_endpoint_is_a_clear_error_before_run_is_touched(corpus, capsys):
    run = corpus.parent / "run"
    port = free_port()  # nothing listens there
    code = run_cli(
        "run", corpus, "--out", run, "--runner=PortableRunner", f"--job_endpoint=localhost:{port}"
    )
    err = capsys.readouterr().err
    assert code != 0
    assert f"--job_endpoint=localhost:{port}: no job service answers there" in err
    assert "Traceback" not in err
    assert not run.exists()


def test_a_job_longer_than_the_timeout_is_a_clear_error(tmp_path, capsys):
    """A real job on Beam's local job service that runs longer than the client's
    `--job_server_timeout`: the client's state stream ends, and the run says why and what to
    do, without a traceback."""
    rows = [json.dumps({"id": f"r{i}", "text": f"record number {i} " * 20}) for i in range(60_000)]
    (tmp_path / "docs.jsonl").write_text("\n".join(rows) + "\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"output: {tmp_path / 'run'}\n"
        f"sources: [{{name: docs, format: jsonl, path: {tmp_path / 'docs.jsonl'}}}]\n"
    )
    # EXTERNAL workers (processes of their own): a LOOPBACK worker would run in this process
    # and go on after the client gives up.
    with external_workers(tmp_path) as services:
        code = run_cli("run", spec, *services.beam_args(1), "--job_server_timeout=4")
    err = capsys.readouterr().err
    assert code != 0
    assert "the client stopped following the job after --job_server_timeout=4 s" in err
    assert "Traceback" not in err
