"""scripts/run_dataflow.sh and scripts/run_flink.sh: what is missing fails before anything
starts, naming the fix; with every option the Dataflow script compiles its job offline and the
Flink script hands Beam the worker pool it names (checked in the compiled pipeline)."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2
from compile_helpers import (
    DATAFLOW,
    EXAMPLE,
    SERVICE_OPTION,
    check_dataflow_job,
    model_stage_sets,
    read_pipeline,
)
from conftest import REPO

IPTKIT = str(Path(sys.executable).parent / "iptkit")
VARIABLES = (
    "GCP_PROJECT", "GCP_REGION", "TEMP_LOCATION", "WORKER_IMAGE", "MACHINE_TYPE", "MAX_WORKERS",
    "WORKER_ACCELERATOR", "FLINK_MASTER", "FLINK_JOB_SERVER_JAR", "FLINK_PARALLELISM",
    "WORKER_POOL",
)  # fmt: skip


def script(name: str, *args, env: dict | None = None, iptkit: str = IPTKIT, cwd=None):
    clean = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    return subprocess.run(
        ["bash", str(REPO / "scripts" / name), *map(str, args)],
        env={**clean, "IPTKIT": iptkit, **(env or {})},
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def marker_command(tmp_path: Path) -> tuple[str, Path]:
    """An IPTKIT that leaves a file when started: a refused command must not start it."""
    marker = tmp_path / "started"
    command = tmp_path / "iptkit"
    command.write_text(f"#!/bin/sh\ntouch {marker}\n")
    command.chmod(0o755)
    return str(command), marker


def test_dataflow_script_names_every_missing_option(tmp_path):
    iptkit, marker = marker_command(tmp_path)
    done = script("run_dataflow.sh", "spec.yaml", "--project", "p", iptkit=iptkit)
    assert done.returncode == 2
    for option, variable in (
        ("--region", "GCP_REGION"),
        ("--temp_location", "TEMP_LOCATION"),
        ("--image", "WORKER_IMAGE"),
    ):
        assert f"{option} (or {variable}):" in done.stderr
    assert "--project" not in done.stderr
    bad = script(
        "run_dataflow.sh", "spec.yaml", "--max_workers", "0", "--out", "runs/x", iptkit=iptkit,
        env={"GCP_PROJECT": "p", "GCP_REGION": "r", "TEMP_LOCATION": "/tmp", "WORKER_IMAGE": "i"},
    )  # fmt: skip
    assert bad.returncode == 2
    assert "--temp_location=/tmp is not valid" in bad.stderr and "gs://BUCKET/PATH" in bad.stderr
    assert "--max_workers=0 is not valid" in bad.stderr
    assert "--out gs://BUCKET/runs/NAME" in bad.stderr
    assert not marker.exists()


def test_flink_script_names_every_missing_option(tmp_path):
    iptkit, marker = marker_command(tmp_path)
    done = script("run_flink.sh", "spec.yaml", iptkit=iptkit)
    assert done.returncode == 2
    assert "--flink_master (or FLINK_MASTER): [local]" in done.stderr
    assert "--flink_job_server_jar (or FLINK_JOB_SERVER_JAR): download" in done.stderr
    cluster = script(
        "run_flink.sh", "spec.yaml", "--flink_master", "jm:8081", "--parallelism", "x",
        "--flink_job_server_jar", tmp_path / "no.jar", iptkit=iptkit,
    )  # fmt: skip
    assert cluster.returncode == 2
    assert "--parallelism=x is not valid" in cluster.stderr
    assert "no.jar: no such file" in cluster.stderr
    assert (
        "--worker_pool (or WORKER_POOL)" in cluster.stderr and "worker_pool_main" in cluster.stderr
    )
    assert not marker.exists()


def test_flink_script_composes_the_beam_options(tmp_path):
    jar = tmp_path / "beam-runners-flink-1.19-job-server-2.78.0.jar"
    jar.write_bytes(b"")
    done = script(
        "run_flink.sh", "spec.yaml", "--flink_job_server_jar", jar, "--out", "/shared/runs/a",
        "--set", "seed=2", "--print-command",
        env={"FLINK_MASTER": "jm:8081", "FLINK_PARALLELISM": "16", "WORKER_POOL": "pool:50000"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert shlex.split(done.stdout) == [
        IPTKIT, "run", "spec.yaml", "--runner=FlinkRunner", "--flink_master=jm:8081",
        f"--flink_job_server_jar={jar}", "--parallelism=16", "--environment_type=EXTERNAL",
        "--environment_config=pool:50000", "--out", "/shared/runs/a", "--set", "seed=2",
    ]  # fmt: skip
    local = script(
        "run_flink.sh", "spec.yaml", "--flink_master=[local]", "--flink_job_server_jar", jar,
        "--print-command",
    )  # fmt: skip
    assert shlex.split(local.stdout)[3:] == [
        "--runner=FlinkRunner", "--flink_master=[local]", f"--flink_job_server_jar={jar}",
    ]  # fmt: skip


def test_flink_script_compiles_with_its_worker_pool(corpus, tmp_path):
    job = tmp_path / "job"
    done = script(
        "run_flink.sh", corpus, "--flink_master", "jm:8081", "--worker_pool", "pool:50000",
        "--compile-only", "--job-out", job,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not (corpus.parent / "run").exists()
    environments = read_pipeline(job).components.environments.values()
    external = [e for e in environments if e.urn == common_urns.environments.EXTERNAL.urn]
    assert external
    for env in external:
        payload = beam_runner_api_pb2.ExternalPayload.FromString(env.payload)
        assert payload.endpoint.url == "pool:50000"


def test_dataflow_script_compiles_the_job_offline(tmp_path):
    job, run = tmp_path / "job", tmp_path / "run"
    done = script(
        "run_dataflow.sh", EXAMPLE, "--project", DATAFLOW["project"],
        "--temp_location", DATAFLOW["temp_location"], "--image", DATAFLOW["image"],
        "--machine_type", DATAFLOW["machine_type"], "--max_workers", DATAFLOW["max_workers"],
        "--out", run, "--compile-only", "--job-out", job, *model_stage_sets(),
        f"--dataflow_service_options={SERVICE_OPTION}",
        env={"GCP_REGION": DATAFLOW["region"]},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not run.exists()
    check_dataflow_job(job)
