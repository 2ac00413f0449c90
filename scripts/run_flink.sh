#!/usr/bin/env bash
# Run a spec on Apache Flink: on this machine ([local]) or on a cluster with Beam worker pools.
#
#   scripts/run_flink.sh SPEC OPTIONS [IPTKIT RUN ARGS...]
#
#   scripts/run_flink.sh pipelines/examples/demo.yaml --flink_master '[local]' \
#       --flink_job_server_jar jars/beam-runners-flink-1.19-job-server-2.78.0.jar --out runs/demo
#   scripts/run_flink.sh SPEC --flink_master flink-jobmanager:8081 --parallelism 16 \
#       --worker_pool beam-workers:50000 --flink_job_server_jar JAR --out /shared/runs/demo
#   scripts/run_flink.sh SPEC ... --compile-only          # the portable pipeline, never run
#
# OPTIONS, each a flag or an environment variable:
#   --flink_master M            FLINK_MASTER          required: [local] (Flink inside the job
#                                                     server, here) or HOST:PORT (a cluster's
#                                                     JobManager REST address)
#   --flink_job_server_jar JAR  FLINK_JOB_SERVER_JAR  required to run: Beam's Flink job server
#                                                     jar, a local file (nothing is downloaded)
#   --parallelism N             FLINK_PARALLELISM     Flink's parallelism (Flink's default)
#   --worker_pool HOST:PORT     WORKER_POOL           EXTERNAL workers: a Beam worker pool
#                                                     (worker_pool_main); required on a cluster
# Other arguments go to `iptkit run`: --out, --set, --compile-only, --job-out and Beam's own
# options (--environment_type=DOCKER instead of a worker pool, say). --print-command prints the
# command instead of running it. IPTKIT names the iptkit command. See docs/runners.md.
set -euo pipefail
declare -A OPTIONS=(
    [--flink_master]=FLINK_MASTER [--flink_job_server_jar]=FLINK_JOB_SERVER_JAR
    [--parallelism]=FLINK_PARALLELISM [--worker_pool]=WORKER_POOL
)
source "$(dirname "${BASH_SOURCE[0]}")/runner_options.sh"
parse_args "$@"

need --flink_master "[local] to run on this machine, or HOST:PORT of a Flink cluster's \
JobManager (REST, 8081 by default)"
check --flink_master '^(\[local\]|(https?://)?[^:/]+:[0-9]+)$' "[local] or HOST:PORT"
check --parallelism '^[1-9][0-9]*$' "a positive whole number"
check --worker_pool '^[^:/]+:[0-9]+$' "HOST:PORT of a worker pool"
jar=${opt[--flink_job_server_jar]:-}
if ((!compile_only)); then
    need --flink_job_server_jar "download \
beam-runners-flink-FLINK_VERSION-job-server-BEAM_VERSION.jar from Maven Central \
(org/apache/beam) once and give its path (docs/runners.md)"
    [[ -z $jar || -f $jar ]] || missing+=("--flink_job_server_jar $jar: no such file")
fi
master=${opt[--flink_master]:-}
pool=${opt[--worker_pool]:-}
if [[ -n $master && $master != "[local]" && -z $pool && -z $(passed --environment_type) ]]; then
    missing+=("--worker_pool (or WORKER_POOL): a Flink cluster runs iptkit's Python in Beam \
worker pools; start 'python -m apache_beam.runners.worker.worker_pool_main \
--service_port=50000' beside each TaskManager and give --worker_pool HOST:50000")
fi

flags=(--runner=FlinkRunner "--flink_master=$master")
[[ -z $jar ]] || flags+=("--flink_job_server_jar=$jar")
[[ -z ${opt[--parallelism]:-} ]] || flags+=("--parallelism=${opt[--parallelism]}")
[[ -z $pool ]] || flags+=(--environment_type=EXTERNAL "--environment_config=$pool")
run_iptkit "${flags[@]}"
