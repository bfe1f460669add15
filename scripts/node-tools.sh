#!/usr/bin/env bash
# Usage: scripts/node-tools.sh PACKAGE...   (prints one node_modules directory per PACKAGE)
#
# Installs pinned npm packages for the browser tests from the npm registry
# into a cache outside the repository keyed by package and version, so the
# second run is a cache hit:
#   ${CAIRN_TOOLS_CACHE:-~/.cache/cairn}/node/<package>-<version>/node_modules
# Point NODE_PATH at the printed directory. Needs Debian's nodejs and npm
# (scripts/setup.sh). Quiet on a cache hit; an install logs to
# <cache>/node/<package>-<version>.log and prints that log if it fails.
#
# Packages: playwright-core (drives Debian's /usr/bin/chromium; it downloads
# no browser of its own)
set -euo pipefail

readonly PLAYWRIGHT_CORE_VERSION=1.65.1

cache=${CAIRN_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cairn}
mkdir -p "$cache/node"
command -v npm >/dev/null || { echo "node-tools: no 'npm' on PATH (scripts/setup.sh installs it)" >&2; exit 1; }

npm_install() {
  local name=$1 version=$2 dir=$cache/node/$1-$2
  if [ ! -d "$dir/node_modules/$name" ]; then
    exec 9>"$cache/node/.lock"
    flock 9
    if [ ! -d "$dir/node_modules/$name" ]; then
      local log=$cache/node/$name-$version.log
      rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
      if ! npm install --no-audit --no-fund --ignore-scripts --prefix "$dir.tmp" \
        "$name@$version" >"$log" 2>&1; then
        echo "node-tools: installing $name@$version failed; log $log:" >&2
        tail -n 40 "$log" >&2
        exit 1
      fi
      rm -rf "$dir" && mv "$dir.tmp" "$dir"
    fi
  fi
  echo "$dir/node_modules"
}

for package in "$@"; do
  case $package in
    playwright-core) npm_install playwright-core "$PLAYWRIGHT_CORE_VERSION" ;;
    *) echo "node-tools: unknown package '$package'" >&2; exit 2 ;;
  esac
done
