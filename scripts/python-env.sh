#!/usr/bin/env bash
# Usage: scripts/python-env.sh
# Prints the path of a Python venv holding the Python client's build and test
# dependencies (python/requirements-ci.txt), creating it first if needed.
# The venv lives outside the repository, in ~/.cache/cairn/venv-<hash>, keyed
# by the requirements and the interpreter's version, so a change of either
# makes a fresh one; PEP 668 forbids installing into Debian's own Python.
# Packages come from PyPI through pip (cached in ~/.cache/cairn/pip).
# Interpreter: $CAIRN_PYTHON, else python3 (Debian: python3 + python3-venv).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${CAIRN_PYTHON:-python3}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/cairn
req=$root/python/requirements-ci.txt
version=$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
hash=$( (cat "$req"; echo "$version") | sha256sum | cut -c1-12)
venv=$cache/venv-$hash
mkdir -p "$cache"
# One creator at a time; a venv left half-made (no .complete) is rebuilt.
exec 9>"$venv.lock"
flock 9
if [ ! -e "$venv/.complete" ]; then
  rm -rf "$venv"
  "$python" -m venv "$venv" >&2
  PIP_CACHE_DIR=$cache/pip "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    -r "$req" >&2
  touch "$venv/.complete"
fi
echo "$venv"
