#!/usr/bin/env bash
# The main job on the embedded default: set up, build, and run the
# standalone control plane (SQLite + a local directory) in the foreground.
#   CAIRN_DATA   data directory (default ~/.local/share/cairn)
# Extra arguments go to `cairn server` (see `cairn server --help`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
# Same options as scripts/test.sh, so the two share one build.
scripts/build.sh build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCAIRN_WERROR=ON -- bin_links
data=${CAIRN_DATA:-$HOME/.local/share/cairn}
echo "cairn: binaries in $root/build/bin (add it to PATH); data in $data"
exec "$root/build/bin/cairn" server --data "$data" "$@"
