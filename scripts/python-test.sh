#!/usr/bin/env bash
# Usage: scripts/python-test.sh BUILD_DIR [PYTEST_ARGS...]
# Installs the Python client (pip install ./python) into the venv of
# scripts/python-env.sh and runs its pytest suite against BUILD_DIR's
# binaries (a real `cairn server`, real `cairn mount`s). Run by ctest as
# python_client_test. When the Python environment cannot be made (no
# python3-venv, PyPI unreachable) it fails under CI=true and exits 77
# (skipped) otherwise.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:?usage: scripts/python-test.sh BUILD_DIR [PYTEST_ARGS...]}" && pwd)
shift

unavailable() {
  if [ "${CI:-}" = true ]; then
    echo "python-test: $1 (CI=true: the Python client's tests must run)" >&2
    exit 1
  fi
  echo "python-test: skipped: $1" >&2
  exit 77
}

venv=$("$root/scripts/python-env.sh") || unavailable "the Python environment could not be made"
cache=${XDG_CACHE_HOME:-$HOME/.cache}/cairn
# What a user runs. The build happens in a temporary copy so the source tree
# stays clean and concurrent runs do not share build/ directories.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src"
cp -r "$root/python" "$root/proto" "$work/src/"
rm -rf "$work/src/python/build" "$work/src/python/"*.egg-info
# The dependencies are in the venv already (python/requirements-ci.txt);
# --force-reinstall because pip keeps an installed copy of the same version.
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
PIP_CACHE_DIR=$cache/pip "${pip[@]}" install -q --force-reinstall --no-deps "$work/src/python" ||
  unavailable "pip install ./python failed"
"${pip[@]}" check >/dev/null || { "${pip[@]}" check; exit 1; }

# From outside the source tree: the installed package is what is tested.
cd "$work"
CAIRN_BUILD_DIR=$build exec "$venv/bin/python" -m pytest -p no:cacheprovider \
  --basetemp "$work/tmp" -q "$root/python/tests" "$@"
