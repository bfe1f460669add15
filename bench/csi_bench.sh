#!/usr/bin/env bash
# CSI publish benchmark (issue 8): NodePublishVolume -> first byte readable,
# for a 1-file volume and a FILES-file volume, through the real cairn-csi,
# cairn-mount and control plane. By hand, not CI; needs root and /dev/fuse.
#
#   bench/csi_bench.sh [BUILD_DIR]
#
# Environment: FILES (default 1000000), REPS (rounds, default 5), WORK
# (default /var/tmp/cairn-csi-bench, removed at the end unless KEEP=1),
# PORT (control plane, default 17700).
#
# Each round publishes each volume at a fresh target (read-only, so the
# unpublish has nothing to commit), reads one byte of a small file at the
# volume root, and unpublishes; the rounds interleave the two volumes so a
# burst of load on a shared machine hits both alike. The figures are
# medians; the ratio (large / small) is what the target is stated in:
# both under 1 s and within 1.5x of each other.
set -euo pipefail

BUILD=${1:-$(cd "$(dirname "$0")/.." && pwd)/build}
CAIRN=$BUILD/cli/cairn
CSI=$BUILD/csi/cairn-csi
PROBE=$BUILD/bench/cairn_csi_publish_probe
FILES=${FILES:-1000000}
REPS=${REPS:-5}
WORK=${WORK:-/var/tmp/cairn-csi-bench}
PORT=${PORT:-17700}
export CAIRN_SERVER=127.0.0.1:$PORT

[ "$(id -u)" -eq 0 ] || { echo "csi_bench: needs root" >&2; exit 1; }
for b in "$CAIRN" "$CSI" "$PROBE"; do
  [ -x "$b" ] || { echo "csi_bench: $b not built (ninja cairn cairn-csi cairn_csi_publish_probe)" >&2; exit 1; }
done

rm -rf "$WORK"
mkdir -p "$WORK"/{pods,cache,many}
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

"$CAIRN" server --data "$WORK/data" --listen "127.0.0.1:$PORT" \
  --metrics-listen "127.0.0.1:$((PORT + 1))" >"$WORK/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do "$CAIRN" volume list >/dev/null 2>&1 && break; sleep 0.1; done

echo "== building a 1-file volume and a $FILES-file volume"
echo hello >"$WORK/first"
"$CAIRN" volume create small >/dev/null
"$CAIRN" volume put small "$WORK/first" /first >/dev/null
python3 - "$WORK/many" "$FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
per = 10000
for i in range(n):
    d = os.path.join(root, "d%04d" % (i // per))
    if i % per == 0: os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "f%07d" % i), "w").close()
PY
"$CAIRN" volume create large >/dev/null
"$CAIRN" volume put large "$WORK/many" /many >/dev/null
"$CAIRN" volume put large "$WORK/first" /first >/dev/null
rm -rf "$WORK/many"

"$CSI" --endpoint "unix://$WORK/csi.sock" --node-id bench --server "127.0.0.1:$PORT" \
  --state-dir "$WORK/state" --cache-dir "$WORK/cache" >"$WORK/csi.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S "$WORK/csi.sock" ] && break; sleep 0.1; done

small=(); large=()
for r in $(seq "$REPS"); do
  small+=("$("$PROBE" "$WORK/csi.sock" small "$WORK/pods/s$r" first | awk '{print $2}')")
  large+=("$("$PROBE" "$WORK/csi.sock" large "$WORK/pods/l$r" first | awk '{print $2}')")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
ms=$(median "${small[@]}")
ml=$(median "${large[@]}")
ratio=$(awk -v a="$ml" -v b="$ms" 'BEGIN { printf "%.2f", a / b }')
cat <<REPORT

NodePublishVolume -> first byte (seconds, median of $REPS)
  1-file volume        $ms   (rounds: ${small[*]})
  $FILES-file volume   $ml   (rounds: ${large[*]})
  ratio large/small    $ratio   (target: both < 1 s, ratio <= 1.5)
REPORT
