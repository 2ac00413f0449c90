"""The compiled-job fixtures shared by the compile-only and run-script tests: an example spec
with model stages on an accelerator, the Dataflow flags, and checks read from the job Beam built
(pipeline.pb and job.json under `iptkit run --compile-only --job-out DIR`)."""

import json
from pathlib import Path

from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.utils import proto_utils

# The example with model stages; each is pointed at an endpoint (nothing is called when
# compiling) and given a GPU and 16 GB; every other stage carries no hint.
EXAMPLE = "swallow_ja"
MODEL_STAGES = ("translate", "respond", "judge")
CPU_STAGES = ("read", "extract", "normalize", "langid", "dedup_exact", "dedup_near", "categorize")
ACCELERATOR = "type:nvidia-tesla-t4;count:1;install-nvidia-driver"
MIN_RAM = "16GB"
IMAGE = "europe-docker.pkg.dev/my-project/iptkit/worker:1"
MACHINE_TYPE = "n2-standard-4"
SERVICE_OPTION = "enable_google_cloud_profiler"
DATAFLOW = {
    "project": "my-project",
    "region": "europe-west4",
    "temp_location": "gs://my-bucket/tmp",
    "image": IMAGE,
    "machine_type": MACHINE_TYPE,
    "max_workers": "50",
}
ACCELERATOR_URN = common_urns.resource_hints.ACCELERATOR.urn
MIN_RAM_URN = common_urns.resource_hints.MIN_RAM_BYTES.urn


def model_stage_sets() -> list[str]:
    """`--set` arguments: the example's model stages on an endpoint, with resources."""
    sets = []
    for stage in MODEL_STAGES:
        for key, value in (
            ("base_url", "http://127.0.0.1:9/v1"),
            ("model", "served-model"),
            ("resources.accelerator", ACCELERATOR),
            ("resources.min_ram", MIN_RAM),
        ):
            sets += ["--set", f"stages.{stage}.{key}={value}"]
    return sets


def dataflow_flags() -> list[str]:
    """Beam's own flags for the Dataflow options of `DATAFLOW` (what run_dataflow.sh passes)."""
    return [
        "--runner=DataflowRunner",
        f"--project={DATAFLOW['project']}",
        f"--region={DATAFLOW['region']}",
        f"--temp_location={DATAFLOW['temp_location']}",
        f"--sdk_container_image={IMAGE}",
        f"--machine_type={MACHINE_TYPE}",
        f"--max_num_workers={DATAFLOW['max_workers']}",
        f"--dataflow_service_options={SERVICE_OPTION}",
    ]


def read_pipeline(folder: Path) -> beam_runner_api_pb2.Pipeline:
    return beam_runner_api_pb2.Pipeline.FromString((folder / "pipeline.pb").read_bytes())


def hints_by_stage(pipeline: beam_runner_api_pb2.Pipeline) -> dict[str, set]:
    """Every top-level label's leaf transforms' resource hints, as (urn, value) pairs."""
    found: dict[str, set] = {}
    components = pipeline.components
    for transform in components.transforms.values():
        if transform.subtransforms or not transform.environment_id:
            continue
        hints = components.environments[transform.environment_id].resource_hints
        found.setdefault(transform.unique_name.split("/")[0], set()).update(hints.items())
    return found


def docker_images(pipeline: beam_runner_api_pb2.Pipeline) -> set[str]:
    used = {t.environment_id for t in pipeline.components.transforms.values()} - {""}
    images = set()
    for env_id in used:
        env = pipeline.components.environments[env_id]
        assert env.urn == common_urns.environments.DOCKER.urn, env.urn
        images.add(
            proto_utils.parse_Bytes(env.payload, beam_runner_api_pb2.DockerPayload).container_image
        )
    return images


def check_dataflow_job(folder: Path) -> None:
    """What Beam's dry run built: machine type, worker cap, service options and images in the
    job request; the accelerator and memory hints on the model stages' transforms only."""
    job = json.loads((folder / "job.json").read_text())
    env = job["environment"]
    (pool,) = env["workerPools"]
    assert pool["machineType"] == MACHINE_TYPE
    assert pool["autoscalingSettings"]["maxNumWorkers"] == int(DATAFLOW["max_workers"])
    assert SERVICE_OPTION in env["serviceOptions"]
    images = {i["containerImage"] for i in pool["sdkHarnessContainerImages"]}
    assert images == {IMAGE}
    # Two environments: the default one and the one with the model stages' hints.
    assert len(pool["sdkHarnessContainerImages"]) == 2

    pipeline = read_pipeline(folder)
    assert docker_images(pipeline) == {IMAGE}
    hints = hints_by_stage(pipeline)
    wanted = {(ACCELERATOR_URN, ACCELERATOR.encode()), (MIN_RAM_URN, b"16000000000")}
    for stage in MODEL_STAGES:
        assert hints[stage] == wanted, stage
    for stage in CPU_STAGES:
        assert hints[stage] == set(), stage
