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

# The launcher runs as a job of its own (set -m: its own process group), and a signal to this
# script (Ctrl-C, a scheduler's SIGTERM, kill, a closed terminal) is passed on as SIGTERM to that
# whole group: DeepSpeed's runner, its launch process and every local rank, which stop at once
# (the next run resumes from the last checkpoint). DeepSpeed's runner passes nothing on by itself
# on one node, and its ranks would train on to the end and export. On several nodes, the runner
# stops the remote ranks itself when it gets the signal.
launcher=""
signal=0
forward() {
    signal=$1
    [[ -z $launcher ]] || kill -TERM -- "-$launcher" 2>/dev/null || true
}
trap 'forward 1' HUP
trap 'forward 2' INT
trap 'forward 15' TERM
set -m
"${PYTHON:-python3}" -m deepspeed.launcher.runner "${launcher_args[@]}" \
    --module iptkit.trainer "$config" "$@" &
launcher=$!
set +m
if ((signal)); then  # one that came while the launcher was being started
    forward "$signal"
fi
status=0
wait "$launcher" || status=$?
# A trapped signal ends `wait` at once: wait on until the launcher has stopped its ranks.
while ((signal)) && kill -0 "$launcher" 2>/dev/null; do
    wait "$launcher" || true
done
if ((signal)); then
    exit $((128 + signal))
fi
exit "$status"
