#!/usr/bin/env bash
# The GPU checks of issue 16, as one command for the device machine (one GPU, no network):
#   (a) inference: the transformers backend inside a Beam pipeline (RunInference) against bare
#       `model.generate`, on CUDA: benchmarks/bench_inference.py with a random Llama of about
#       0.3B parameters in bf16 (hidden 1024, 24 layers, 16 heads, MLP 2816), 512 prompts,
#       batch 128, 128 new tokens, two alternating rounds;
#   (b) trainer: iptkit's DeepSpeed trainer on the 500M preset (configs/models/mistral-500m.yaml)
#       in bf16, ZeRO-1, one GPU, seq_len 2048, micro-batch 16 x 2 accumulation: tokens/s and MFU
#       (6N + 12*L*h*s FLOPs per token over the device's dense bf16 peak), against a plain
#       PyTorch loop: benchmarks/bench_trainer_gpu.py.
# The machine needs python3 with torch (CUDA) and transformers; everything else comes from the
# wheelhouse that travels with the command (bash benchmarks/gpu_wheelhouse.sh, run beforehand
# on a machine with PyPI), installed offline into a folder on PYTHONPATH.
#
# The device call (benchmarks/README.md):
#   run(command="bash benchmarks/gpu_check.sh", carry=["benchmarks/.work/wheelhouse"],
#       timeout_s=540)
# The dry run on a CPU machine (tiny sizes, same steps; a wheelhouse for its python):
#   GPU_CHECK_DEVICE=cpu PYTHON=/path/to/venv/bin/python \
#     WHEELHOUSE=benchmarks/.work/wheelhouse-cp311 bash benchmarks/gpu_check.sh
#
# Environment: OUT (results folder, default ./gpu-check-out), PYTHON (default python3),
# WHEELHOUSE (default benchmarks/.work/wheelhouse), GPU_CHECK_DEVICE (cuda or cpu),
# INFERENCE_ARGS / TRAINER_ARGS (replace the sizes below), PEAK_TFLOPS (override the peak).
# Writes under OUT: env.json, inference.json, trainer.json, summary.json, gpu_check.log.
# Exits non-zero, saying why, when something is missing or a part fails or runs out of time.
set -euo pipefail

# Time budgets, seconds: each part runs under `timeout`; together at most 8 minutes.
T_REBUILD=30     # iptkit's wheel built again, only if the tree changed since the wheelhouse
T_INSTALL=45     # the offline pip install
T_IMPORTS=30     # every module the benchmarks need imports
T_ENV=20         # versions, nvidia-smi, device name and peak, pip check
T_INFERENCE=160  # (a): a 0.3B model built and saved, then 4 fresh processes
T_TRAINER=185    # (b): data, the trainer's run and the plain loop's (one OOM retry fits)
T_SUMMARY=10     # 480 s in all

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
WHEELHOUSE="${WHEELHOUSE:-benchmarks/.work/wheelhouse}"
WORKDIR="$ROOT/benchmarks/.work/gpu-check"
SITE="$WORKDIR/site"
OUT="${OUT:-./gpu-check-out}"
mkdir -p "$OUT" "$WORKDIR"
OUT="$(cd "$OUT" && pwd)"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1

if [[ "$DEVICE" == cuda ]]; then
  INFERENCE_ARGS="${INFERENCE_ARGS:---device cuda --dtype bfloat16 --hidden-size 1024
    --intermediate-size 2816 --layers 24 --heads 16 --prompts 512 --batch-size 128
    --new-tokens 128 --rounds 2 --threads 4}"
  TRAINER_ARGS="${TRAINER_ARGS:---device cuda --precision bf16 --seq-len 2048 --micro-batch 16
    --accumulation 2 --steps 30 --warmup 5 --rounds 1 --threads 8}"
elif [[ "$DEVICE" == cpu ]]; then
  INFERENCE_ARGS="${INFERENCE_ARGS:---device cpu --dtype bfloat16 --hidden-size 64
    --intermediate-size 128 --layers 2 --heads 4 --prompts 16 --batch-size 8 --new-tokens 8
    --rounds 1 --threads 1}"
  TRAINER_ARGS="${TRAINER_ARGS:---device cpu --precision bf16 --seq-len 128 --micro-batch 2
    --accumulation 2 --steps 4 --warmup 1 --lr-warmup 1 --rounds 1 --threads 1
    --override hidden_size=64 --override intermediate_size=128 --override num_hidden_layers=2
    --override num_attention_heads=4 --override num_key_value_heads=4
    --override vocab_size=512}"
else
  echo "gpu_check: GPU_CHECK_DEVICE must be cuda or cpu, got '$DEVICE'" >&2
  exit 2
fi

die() {
  echo "gpu_check: $*" >&2
  exit 1
}
started=$SECONDS
echo "gpu_check: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), device $DEVICE, results in $OUT"

# --- what must already be there ---------------------------------------------------------------
command -v timeout >/dev/null || die "no 'timeout' command (coreutils) on this machine"
command -v "$PYTHON" >/dev/null || die "no python: '$PYTHON' (set PYTHON)"
"$PYTHON" -c "import torch, transformers" 2>/dev/null ||
  die "$PYTHON cannot import torch and transformers: this check expects both installed"
shopt -s nullglob
wheels=("$WHEELHOUSE"/*.whl)
((${#wheels[@]})) || die "no wheels in $WHEELHOUSE: build them with \`bash benchmarks/gpu_wheelhouse.sh\` \
on a machine with PyPI and name the folder in the device call's carry"
tag="$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
beam=("$WHEELHOUSE"/apache_beam-*.whl)
((${#beam[@]} == 1)) || die "$WHEELHOUSE has no single apache_beam wheel"
[[ "${beam[0]}" == *"-$tag-"* ]] || die "the wheelhouse is not for this python ($tag): \
$(basename "${beam[0]}"); rebuild it with PYVER=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])') \
bash benchmarks/gpu_wheelhouse.sh"

FAILED=()
part() {  # part NAME LIMIT COMMAND...: run under timeout, record a failure, go on
  local name=$1 limit=$2 t0=$SECONDS rc=0
  shift 2
  echo
  echo "== $name (limit ${limit} s; $((SECONDS - started)) s since the start)"
  timeout --kill-after=15 "$limit" "$@" || rc=$?
  if ((rc == 124 || rc == 137)); then
    FAILED+=("$name: ran out of its ${limit} s")
  elif ((rc != 0)); then
    FAILED+=("$name: exit $rc")
  fi
  echo "== $name: $([[ $rc == 0 ]] && echo ok || echo "FAILED (exit $rc)") in $((SECONDS - t0)) s"
  return 0
}

export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 DS_ACCELERATOR="$DEVICE" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false

# iptkit's wheel must be built from this tree: if the tree changed after the wheelhouse was
# built, build it again here, offline (setuptools is there wherever torch is).
others=()
for w in "${wheels[@]}"; do [[ "$(basename "$w")" == iptkit-* ]] || others+=("$w"); done
iptkit_wheel=("$WHEELHOUSE"/iptkit-*.whl)
((${#iptkit_wheel[@]} == 1)) || die "$WHEELHOUSE has no single iptkit wheel"
digest="$("$PYTHON" benchmarks/gpu_check_util.py digest)"
wanted="$(cat "$WHEELHOUSE/TREE_DIGEST" 2>/dev/null || true)"
if [[ "$digest" == "$wanted" ]]; then
  echo "iptkit wheel: built from this tree (digest ${digest:0:12})"
  export GPU_CHECK_IPTKIT_WHEEL="the wheelhouse's, built from this tree"
else
  echo "iptkit wheel: the tree changed since the wheelhouse was built (digest ${digest:0:12}," \
    "wheelhouse ${wanted:0:12}); building it from the tree"
  rm -rf "$WORKDIR/iptkit-wheel"
  if timeout "$T_REBUILD" "$PYTHON" -m pip wheel --quiet --no-index --no-deps --no-build-isolation \
    --wheel-dir "$WORKDIR/iptkit-wheel" "$ROOT"; then
    iptkit_wheel=("$WORKDIR"/iptkit-wheel/iptkit-*.whl)
    export GPU_CHECK_IPTKIT_WHEEL="rebuilt here from the tree"
  else
    echo "gpu_check: WARNING: could not build iptkit here; using the wheelhouse's older wheel"
    export GPU_CHECK_IPTKIT_WHEEL="STALE: the wheelhouse's, built from another tree"
  fi
  rm -rf "$ROOT/build"
fi

# Installed offline into one folder on PYTHONPATH; the install and the imports must pass
# before anything is measured.
rm -rf "$SITE"
part install "$T_INSTALL" "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile \
  --no-cache-dir --disable-pip-version-check --target "$SITE" "${others[@]}" "${iptkit_wheel[@]}"
((${#FAILED[@]} == 0)) || die "the offline install failed: ${FAILED[*]}"
part imports "$T_IMPORTS" "$PYTHON" benchmarks/gpu_check_util.py imports
((${#FAILED[@]} == 0)) || die "the installed packages do not import (above): ${FAILED[*]}"
part env "$T_ENV" "$PYTHON" benchmarks/gpu_check_util.py env --device "$DEVICE" \
  --json "$OUT/env.json"
((${#FAILED[@]} == 0)) || die "the machine is not as expected: ${FAILED[*]}"

# shellcheck disable=SC2086  # the sizes are words on purpose
part inference "$T_INFERENCE" "$PYTHON" benchmarks/bench_inference.py $INFERENCE_ARGS \
  --json "$OUT/inference.json"
# shellcheck disable=SC2086
part trainer "$T_TRAINER" "$PYTHON" benchmarks/bench_trainer_gpu.py $TRAINER_ARGS \
  --json "$OUT/trainer.json"
part summary "$T_SUMMARY" "$PYTHON" benchmarks/gpu_check_util.py summary "$OUT"

echo
echo "gpu_check: $((SECONDS - started)) s in all; files in $OUT:"
ls -l "$OUT"
if ((${#FAILED[@]})); then
  printf 'gpu_check: FAILED: %s\n' "${FAILED[@]}" >&2
  exit 1
fi
echo "gpu_check: all parts passed"
