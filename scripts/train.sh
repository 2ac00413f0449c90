#!/usr/bin/env bash
# Train a run config with the DeepSpeed launcher, on one node or several.
#
#   scripts/train.sh CONFIG [LAUNCHER ARGS...] [-- TRAINER ARGS...]
#
#   scripts/train.sh configs/train/instruct-pt-500m.yaml --num_gpus 8
#   scripts/train.sh configs/train/instruct-pt-1.3b.yaml --hostfile hosts --num_nodes 2
#   DS_ACCELERATOR=cpu scripts/train.sh run.yaml --num_gpus 2 -- --set seed=3   # CPU, 2 ranks
#
# LAUNCHER ARGS go to `deepspeed` (see `deepspeed --help`); TRAINER ARGS to
# `python -m iptkit.trainer`. PYTHON picks the interpreter (default: python3 on PATH);
# every rank runs the same one, and multi-node runs need run_dir on a shared filesystem.
set -euo pipefail

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
config=$1
shift
launcher_args=()
while [[ $# -gt 0 && $1 != -- ]]; do
    launcher_args+=("$1")
    shift
done
[[ $# -gt 0 ]] && shift  # the --

exec "${PYTHON:-python3}" -m deepspeed.launcher.runner "${launcher_args[@]}" \
    --module iptkit.trainer "$config" "$@"
