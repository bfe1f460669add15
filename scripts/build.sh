#!/usr/bin/env bash
# Usage: scripts/build.sh BUILD_DIR [cmake -D options...] [-- ninja targets...]
# Configures (once) and builds with Ninja. Quiet unless something is built
# or fails; the configure log is kept in BUILD_DIR/configure.log.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$1; shift
opts=(); targets=()
while (($#)); do
  if [ "$1" = "--" ]; then shift; targets=("$@"); break; fi
  opts+=("$1"); shift
done
mkdir -p "$dir"
# Paths relative to the checkout, so other clones and worktrees share hits.
export CCACHE_BASEDIR=$root CCACHE_NOHASHDIR=true
export CCACHE_DIR=${CCACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cairn/ccache}
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-8G}
if [ ! -f "$dir/build.ninja" ] || [ "${opts[*]-}" != "$(cat "$dir/.cairn-opts" 2>/dev/null)" ]; then
  if ! cmake -S "$root" -B "$dir" -G Ninja "${opts[@]}" >"$dir/configure.log" 2>&1; then
    cat "$dir/configure.log" >&2
    exit 1
  fi
  printf '%s' "${opts[*]-}" >"$dir/.cairn-opts"
fi
# Ninja prints "no work to do" when up to date; keep that quiet.
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ! ninja -C "$dir" "${targets[@]}" >"$out" 2>&1; then
  cat "$out" >&2
  exit 1
fi
grep -v -e '^ninja: no work to do' -e '^ninja: Entering directory' "$out" | tail -n 3 || true
