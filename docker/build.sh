#!/usr/bin/env bash
# Builds a worker image and, with --push, pushes it: docker/build.sh cpu|cuda IMAGE [--push]
# [--dry-run]. The image's Beam and Python versions are the launcher's (the interpreter in
# $PYTHON, default .venv/bin/python), the one source they come from: a job built with one Beam
# must run on workers with the same. --dry-run prints the commands without running them.
set -euo pipefail

usage() {
    echo "usage: docker/build.sh cpu|cuda IMAGE [--push] [--dry-run]" >&2
    echo "  e.g. docker/build.sh cpu us-docker.pkg.dev/PROJECT/REPO/iptkit-cpu:0.1.0 --push" >&2
    exit 2
}
[[ $# -ge 2 ]] || usage
kind=$1 image=$2
shift 2
[[ $kind == cpu || $kind == cuda ]] || usage
push=0 dry=0
for arg in "$@"; do
    case $arg in
        --push) push=1 ;;
        --dry-run) dry=1 ;;
        *) usage ;;
    esac
done

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
# Read from Beam's metadata (its apache_beam.__version__), without importing it.
versions='import sys; from importlib.metadata import version
print(version("apache-beam"), "%d.%d" % sys.version_info[:2])'
if ! versions=$("$PYTHON" -c "$versions" 2>/dev/null); then
    echo "docker/build.sh: $PYTHON has no apache-beam installed: run \`make install\`, or set PYTHON to the interpreter that launches your jobs" >&2
    exit 2
fi
read -r beam python <<<"$versions"

run() {
    echo "+ $*"
    [[ $dry == 1 ]] || "$@"
}
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
# The wheel from a copy of the sources: a build in the checkout would leave build/ there.
run cp -r setup.py README.md iptkit pipelines transforms trainer eval configs "$context"/
run "$PYTHON" -m pip wheel --no-deps --quiet --wheel-dir "$context" "$context"
run docker build --file "docker/Dockerfile.$kind" \
    --build-arg "BEAM_VERSION=$beam" --build-arg "PYTHON_VERSION=$python" \
    --tag "$image" "$context"
if [[ $push == 1 ]]; then
    run docker push "$image"
fi
echo "worker image $image: Beam $beam, Python $python; run with --sdk_container_image=$image"
