#!/usr/bin/env bash
# Run a spec on Google Cloud Dataflow, or compile its job offline (--compile-only).
#
#   scripts/run_dataflow.sh SPEC OPTIONS [IPTKIT RUN ARGS...]
#
#   scripts/run_dataflow.sh pipelines/examples/demo.yaml --project my-project \
#       --region europe-west4 --temp_location gs://my-bucket/tmp \
#       --image europe-docker.pkg.dev/my-project/iptkit/worker:0.1 --out gs://my-bucket/runs/demo
#   scripts/run_dataflow.sh SPEC ... --compile-only [--job-out DIR]   # the job, never submitted
#
# OPTIONS, each a flag or an environment variable:
#   --project ID             GCP_PROJECT         required: the Google Cloud project
#   --region REGION          GCP_REGION          required: the Dataflow region, e.g. europe-west4
#   --temp_location GS_PATH  TEMP_LOCATION       required: gs://BUCKET/PATH for staging and temp
#   --image IMAGE            WORKER_IMAGE        required: the worker image with iptkit installed
#   --machine_type TYPE      MACHINE_TYPE        the workers' machine type (Dataflow's default)
#   --max_workers N          MAX_WORKERS         the autoscaling cap
#   --worker_accelerator A   WORKER_ACCELERATOR  a GPU on every worker, e.g.
#                                                type:nvidia-l4;count:1;install-nvidia-driver
#                                                (GPUs on model stages only: their `resources`)
# Other arguments go to `iptkit run`: --out (gs://... for a run), --set, --compile-only,
# --job-out and Beam's own options. --print-command prints the command instead of running it.
# IPTKIT names the iptkit command (default: iptkit on PATH). See docs/runners.md.
set -euo pipefail
declare -A OPTIONS=(
    [--project]=GCP_PROJECT [--region]=GCP_REGION [--temp_location]=TEMP_LOCATION
    [--image]=WORKER_IMAGE [--machine_type]=MACHINE_TYPE [--max_workers]=MAX_WORKERS
    [--worker_accelerator]=WORKER_ACCELERATOR
)
source "$(dirname "${BASH_SOURCE[0]}")/runner_options.sh"
parse_args "$@"

need --project "the Google Cloud project id (gcloud projects list)"
need --region "a Dataflow region, e.g. europe-west4"
need --temp_location "a gs://BUCKET/PATH folder the job may write (staging and temp files)"
need --image "the worker image with iptkit installed, pushed to a registry the project \
reads (docs/runners.md)"
check --temp_location '^gs://[^/]{3,}(/.*)?$' \
    "Dataflow stages through Cloud Storage: give gs://BUCKET/PATH"
check --max_workers '^[1-9][0-9]*$' "a positive whole number"
check --worker_accelerator '(^|;)type:[^;]+' "write type:GPU_TYPE;count:N;install-nvidia-driver"
out=$(passed --out)
if ((!compile_only)) && [[ -n $out && $out != gs://* ]]; then
    missing+=("--out $out is local: Dataflow workers write RUN; give --out gs://BUCKET/runs/NAME")
fi

flags=(--runner=DataflowRunner "--project=${opt[--project]:-}" "--region=${opt[--region]:-}"
    "--temp_location=${opt[--temp_location]:-}" "--sdk_container_image=${opt[--image]:-}")
[[ -z ${opt[--machine_type]:-} ]] || flags+=("--machine_type=${opt[--machine_type]}")
[[ -z ${opt[--max_workers]:-} ]] || flags+=("--max_num_workers=${opt[--max_workers]}")
if [[ -n ${opt[--worker_accelerator]:-} ]]; then
    flags+=("--dataflow_service_options=worker_accelerator=${opt[--worker_accelerator]}")
fi
run_iptkit "${flags[@]}"
