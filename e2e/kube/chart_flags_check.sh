#!/usr/bin/env bash
# Usage: e2e/kube/chart_flags_check.sh [BUILD_DIR]   (default: build)
#
# The chart starts cairn-operator and cairn-csi with flags; this checks every
# such flag against the binaries' own --help, so the chart and the binaries
# cannot drift apart unnoticed. Renders charts/cairn with every optional path
# on, takes each container whose command is /usr/local/bin/<binary>, and
# fails naming each flag that BUILD_DIR/bin/<binary> --help does not list,
# and each binary that is not built.
# Exit codes: 0 all flags known, 1 a flag or binary missing, 2 usage.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
build=$(readlink -f "${1:-build}")
[ -d "$build" ] || { echo "usage: $0 [BUILD_DIR] ($build is not a directory)" >&2; exit 2; }
helm=${HELM:-$(scripts/go-tools.sh helm)}
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

"$helm" template t charts/cairn --kube-version 1.34.4 --set snapshots.enabled=true |
  python3 -c '
import sys, yaml
seen = set()
for doc in yaml.safe_load_all(sys.stdin):
    spec = (((doc or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
    for c in spec.get("containers", []):
        cmd = c.get("command") or []
        if not cmd or not cmd[0].startswith("/usr/local/bin/"):
            continue
        binary = cmd[0].rsplit("/", 1)[1]
        for a in c.get("args", []):
            if a.startswith("--"):
                flag = a.split("=", 1)[0]
                if (binary, flag) not in seen:
                    seen.add((binary, flag))
                    print(binary, flag)
' >"$tmp"
[ -s "$tmp" ] || { echo "chart_flags_check: found no Cairn containers in the chart" >&2; exit 1; }

failures=0
declare -A help
while read -r binary flag; do
  if [ -z "${help[$binary]+x}" ]; then
    if [ -x "$build/bin/$binary" ]; then
      help[$binary]=$("$build/bin/$binary" --help 2>&1 || true)
    else
      echo "FAIL: the chart runs $binary, which $build/bin does not have" >&2
      failures=$((failures + 1))
      help[$binary]=
    fi
  fi
  [ -n "${help[$binary]}" ] || continue
  if ! grep -qE -- "(^|[[:space:],])$flag([[:space:]=,]|$)" <<<"${help[$binary]}"; then
    echo "FAIL: the chart passes $flag to $binary, whose --help does not list it" >&2
    failures=$((failures + 1))
  fi
done <"$tmp"
if ((failures)); then echo "chart_flags_check: $failures problem(s)" >&2; exit 1; fi
echo "chart_flags_check: $(wc -l <"$tmp") flags of $(cut -d' ' -f1 "$tmp" | sort -u | wc -l) binaries known"
