"""`iptkit run --compile-only`: the job a runner would be given, built and summarised, never run.

For the DataflowRunner this is Beam's own dry run (`--dry_run=True`): the runner applies its
overrides, translates the graph into the portable pipeline proto with Docker environments,
merges them and builds the `Job`, then returns before it creates an API client. Beam's dry
run stops before the job's `Environment` (worker pools, machine type, container images,
service options), which it builds only while staging files to GCS; `_job_environment` builds
it with Beam's own `apiclient.Environment`, as `create_job_description` does, less the
uploads. Nothing needs credentials or the network, so a job request can be checked offline.

For every other runner it is the portable pipeline proto (`Pipeline.to_runner_api`) with the
runner's default environment: for the portable runners (Flink, Spark, the PortableRunner) the
one `--environment_type` and `--environment_config` name (Flink's `[local]` with none:
LOOPBACK).

The summary names, per stage, its transforms and the resource hints they carry; the
environments with their container image; and for Dataflow the machine type, worker counts and
service options of the job request.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    TestOptions,
)
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.utils import proto_utils

from iptkit.errors import IptkitError
from iptkit.files import atomic_write

DATAFLOW = "DataflowRunner"
# Given on the command line, not set afterwards: Beam's option validation, which runs when the
# pipeline is made, skips its calls to GCS (the temp bucket's soft-delete policy) in a dry run.
COMPILE_FLAGS = ["--dry_run=True"]
# The files `--job-out DIR` writes: the portable pipeline (what Dataflow stages as pipeline.pb)
# and, for Dataflow, the job request.
PIPELINE_FILE, JOB_FILE = "pipeline.pb", "job.json"
WORKER_ACCELERATOR = "worker_accelerator"
# The hint names Beam's `with_resource_hints` takes, by the URN the proto carries.
HINT_NAMES = {
    common_urns.resource_hints.ACCELERATOR.urn: "accelerator",
    common_urns.resource_hints.MIN_RAM_BYTES.urn: "min_ram",
    common_urns.resource_hints.CPU_COUNT.urn: "cpu_count",
}


@dataclass
class CompiledJob:
    """What a runner is given: the portable pipeline and, for Dataflow, the job request."""

    runner: str
    pipeline: beam_runner_api_pb2.Pipeline
    job: dict[str, Any] | None = None  # the Dataflow Job message as JSON (camelCase keys)


@dataclass
class StageSummary:
    name: str
    transforms: int = 0
    hints: dict[str, str] = field(default_factory=dict)


def runner_name(options: PipelineOptions) -> str:
    """The runner `--runner` names, in any of the forms Beam accepts (`DataflowRunner`,
    `dataflow`, a dotted path, the runner object), as a lower-case name without "runner"
    (`dataflow`, `flink`, `portable`; `direct` when none is named)."""
    runner = options.view_as(StandardOptions).runner
    if runner is not None and not isinstance(runner, str):
        runner = type(runner).__name__
    name = (runner or "DirectRunner").rsplit(".", 1)[-1].lower()
    return name.removesuffix("runner")


def names_dataflow(options: PipelineOptions) -> bool:
    """Whether `--runner` names the DataflowRunner."""
    return runner_name(options) == "dataflow"


def accelerator_conflict(options: PipelineOptions, hinted: list[str]) -> str | None:
    """Why the job cannot go to Dataflow as asked, or None: stages with an accelerator hint
    (`hinted`) run on GPU workers of their own (Dataflow's right fitting), which Dataflow does
    not combine with the job-wide `worker_accelerator` service option."""
    if not names_dataflow(options) or not hinted:
        return None
    service = options.view_as(GoogleCloudOptions).dataflow_service_options or []
    if not any(o.startswith(WORKER_ACCELERATOR + "=") for o in service):
        return None
    return (
        f"--dataflow_service_options={WORKER_ACCELERATOR}=... gives every worker a GPU, and "
        "Dataflow refuses it with per-stage accelerators (right fitting: "
        f"resources.accelerator of {', '.join(hinted)}); drop one: the service option for one "
        "GPU pool for the whole job, or the stages' resources to keep the other stages on CPU "
        "workers"
    )


def compile_pipeline(pipeline: beam.Pipeline, options: PipelineOptions) -> CompiledJob:
    """The job of `pipeline` as its runner would receive it, without running anything."""
    runner = type(pipeline.runner).__name__
    if runner == DATAFLOW:
        if not options.view_as(TestOptions).dry_run:  # the job would be submitted
            raise ValueError(f"compile with {' '.join(COMPILE_FLAGS)} among the options")
        try:
            job = pipeline.run().job
        except ImportError as exc:
            raise IptkitError(
                f"the DataflowRunner needs Beam's gcp extra ({exc}): pip install 'iptkit[gcp]'"
            ) from None
        environment = _job_environment(job)
        job.proto.environment = environment
        return CompiledJob(runner, job.proto_pipeline, json.loads(job.json()))
    proto = pipeline.to_runner_api(default_environment=pipeline.runner.default_environment(options))
    return CompiledJob(runner, proto)


def _job_environment(job: Any) -> Any:
    """The Dataflow job's `Environment` message, as `DataflowApplicationClient.
    create_job_description` builds it, without staging anything: the same Beam class, given the
    names the artifacts would be staged under and the staged pipeline's URL and hash."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import WorkerOptions
    from apache_beam.runners.dataflow.internal import apiclient
    from apache_beam.runners.internal import names

    overrides = job.options.view_as(WorkerOptions).sdk_harness_container_image_overrides or []
    apiclient.DataflowApplicationClient._apply_sdk_environment_overrides(
        job.proto_pipeline, dict(o.split(",", 1) for o in overrides), job.options
    )
    staging = job.options.view_as(GoogleCloudOptions).staging_location
    serialized = job.proto_pipeline.SerializeToString()
    return apiclient.Environment(
        packages=_staged_names(job.proto_pipeline),
        options=job.options,
        environment_version=apiclient._FNAPI_ENVIRONMENT_MAJOR_VERSION,
        proto_pipeline_staged_url=FileSystems.join(staging, names.STAGED_PIPELINE_FILENAME),
        proto_pipeline=job.proto_pipeline,
        pipeline_proto_hash=hashlib.sha256(serialized).hexdigest(),
    ).proto


def _staged_names(pipeline: beam_runner_api_pb2.Pipeline) -> list[str]:
    """The names the job's artifacts (setup.py's sdist, requirements, ...) are staged under."""
    staged = []
    for env in pipeline.components.environments.values():
        for dep in env.dependencies:
            if dep.role_urn == common_urns.artifact_roles.STAGING_TO.urn:
                payload = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(
                    dep.role_payload
                )
                name = payload.staged_name
            else:
                path = beam_runner_api_pb2.ArtifactFilePayload.FromString(dep.type_payload).path
                name = os.path.basename(path)
            if name not in staged:
                staged.append(name)
    return staged


def write_job(compiled: CompiledJob, folder: str) -> list[str]:
    """Write the compiled job into `folder`: pipeline.pb (binary `Pipeline` proto) and, for
    Dataflow, job.json (the job request); return the paths written."""
    from apache_beam.io.filesystems import FileSystems

    if "://" not in folder:
        os.makedirs(folder, exist_ok=True)
    written = [FileSystems.join(folder, PIPELINE_FILE)]
    atomic_write(written[0], compiled.pipeline.SerializeToString())
    if compiled.job is not None:
        written.append(FileSystems.join(folder, JOB_FILE))
        text = json.dumps(compiled.job, indent=2, sort_keys=True) + "\n"
        atomic_write(written[1], text.encode("utf-8"))
    return written


def environment_hints(environment: beam_runner_api_pb2.Environment) -> dict[str, str]:
    """An environment's resource hints by the names `with_resource_hints` takes (min_ram in
    bytes, as Beam encodes it)."""
    return {
        HINT_NAMES.get(urn, urn): value.decode("ascii")
        for urn, value in sorted(environment.resource_hints.items())
    }


def environment_images(pipeline: beam_runner_api_pb2.Pipeline) -> dict[str, str]:
    """Each environment the transforms use, by id: its container image (Docker), its worker
    pool's address (EXTERNAL) or its kind."""
    found = {}
    used = {t.environment_id for t in pipeline.components.transforms.values()}
    for env_id in sorted(used - {""}):
        env = pipeline.components.environments[env_id]
        if env.urn == common_urns.environments.DOCKER.urn:
            payload = proto_utils.parse_Bytes(env.payload, beam_runner_api_pb2.DockerPayload)
            found[env_id] = f"docker {payload.container_image}"
        elif env.urn == common_urns.environments.EXTERNAL.urn:
            payload = proto_utils.parse_Bytes(env.payload, beam_runner_api_pb2.ExternalPayload)
            found[env_id] = f"external {payload.endpoint.url}"
        else:
            found[env_id] = env.urn.rsplit(":", 2)[-2]
    return found


def stage_summaries(
    pipeline: beam_runner_api_pb2.Pipeline, stages: list[str]
) -> list[StageSummary]:
    """Per stage (by the label the builder gives it), its leaf transforms and the resource
    hints of their environments (a stage's hints reach every transform inside it)."""
    transforms = pipeline.components.transforms
    by_name = {s: StageSummary(s) for s in stages}
    for transform in transforms.values():
        if transform.subtransforms:
            continue
        top = transform.unique_name.split("/", 1)[0]
        summary = by_name.get(top)
        if summary is None:
            continue
        summary.transforms += 1
        if transform.environment_id:
            env = pipeline.components.environments[transform.environment_id]
            summary.hints.update(environment_hints(env))
    return [by_name[s] for s in stages]


def _shown(hint: str, value: str) -> str:
    return f"{int(value) / 1e9:g}GB" if hint == "min_ram" else value


def format_summary(compiled: CompiledJob, stages: list[str]) -> str:
    """What `iptkit run --compile-only` prints."""
    pipeline = compiled.pipeline
    leaves = [t for t in pipeline.components.transforms.values() if not t.subtransforms]
    rows = stage_summaries(pipeline, stages)
    width = max(len(s.name) for s in rows)
    lines = [
        f"runner        {compiled.runner}",
        f"transforms    {len(leaves)} (leaf), {len(pipeline.components.transforms)} in all",
        "",
        f"stages ({len(rows)}):",
    ]
    for row in rows:
        hints = " ".join(f"{k}={_shown(k, v)}" for k, v in row.hints.items()) or "-"
        lines.append(f"  {row.name.ljust(width)}  {row.transforms:>4} transforms  hints: {hints}")
    lines += ["", "environments:"]
    lines += [f"  {env_id}  {what}" for env_id, what in environment_images(pipeline).items()]
    if compiled.job is not None:
        env = compiled.job.get("environment", {})
        lines += ["", "dataflow job request:"]
        lines.append(f"  name              {compiled.job.get('name', '-')}")
        for pool in env.get("workerPools", []):
            scaling = pool.get("autoscalingSettings", {})
            lines.append(f"  machine type      {pool.get('machineType', '(Dataflow default)')}")
            lines.append(
                f"  workers           {pool.get('numWorkers', '-')} to start, "
                f"{scaling.get('maxNumWorkers', '-')} at most"
            )
            images = sorted(
                {i["containerImage"] for i in pool.get("sdkHarnessContainerImages", [])}
            )
            lines.append(f"  container images  {', '.join(images) or '-'}")
            packages = [p["name"] for p in pool.get("packages", [])]
            lines.append(f"  staged packages   {', '.join(packages) or '-'}")
        lines.append(f"  service options   {', '.join(env.get('serviceOptions', [])) or '-'}")
        lines.append(f"  experiments       {', '.join(env.get('experiments', [])) or '-'}")
    return "\n".join(lines)
