#!/usr/bin/env bash
# Aggregate read throughput of 4 mounts reading 4 distinct files at once,
# from a control plane whose blobs are in S3 (versitygw over a local
# directory): mounters reading straight from the bucket with signed URLs
# (direct) against the same reads through the control plane
# (--no-direct-reads), interleaved in one run. By hand, not CI; needs root
# (mounts, drop_caches).
#
#   bench/s3_read_bench.sh BUILD_DIR
#
# Environment: SIZE (per file, default 256M), REPS (rounds, default 3),
# WORK (default /var/tmp/cairn-s3-bench, removed unless KEEP=1).
#
# Each run starts 4 fresh mounts with empty node caches, drops the page
# cache, and times `cat` of the 4 files in parallel (one per mount).
# Reported: median (best) MB/s per mode and the ratio of medians. Everything
# (S3 server, control plane, mounters) shares this machine's cores, so the
# ratio shows what leaving the control plane out of the data path saves,
# not what a real object store would add; the load average is printed.
set -euo pipefail

BUILD=${1:?usage: s3_read_bench.sh BUILD_DIR}
SIZE=${SIZE:-256M}
REPS=${REPS:-3}
WORK=${WORK:-/var/tmp/cairn-s3-bench}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CAIRN=$BUILD/cli/cairn
[ "$(id -u)" -eq 0 ] || { echo "s3_read_bench: needs root" >&2; exit 1; }
[ -x "$CAIRN" ] || { echo "s3_read_bench: $CAIRN not built" >&2; exit 1; }
VGW=$("$ROOT/scripts/go-tools.sh" versitygw | tail -1)

S3_PORT=17730
API_PORT=17731
export AWS_ACCESS_KEY_ID=benchaccess AWS_SECRET_ACCESS_KEY=bench-secret-key
export CAIRN_SERVER=127.0.0.1:$API_PORT
rm -rf "$WORK"
mkdir -p "$WORK/s3/bench" "$WORK/files"
pids=()
cleanup() {
  set +e
  for i in 0 1 2 3; do mountpoint -q "$WORK/m$i" && umount -l "$WORK/m$i"; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# versitygw's POSIX backend serves each top-level directory as a bucket.
ROOT_ACCESS_KEY=$AWS_ACCESS_KEY_ID ROOT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY \
  "$VGW" --port "127.0.0.1:$S3_PORT" posix "$WORK/s3" >"$WORK/s3.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do (echo >/dev/tcp/127.0.0.1/$S3_PORT) 2>/dev/null && break; sleep 0.1; done
"$CAIRN" server --data "$WORK/data" --listen "127.0.0.1:$API_PORT" --metrics-listen "" \
  --blobs "s3://bench/cairn?endpoint=http://127.0.0.1:$S3_PORT" >"$WORK/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do "$CAIRN" volume list >/dev/null 2>&1 && break; sleep 0.1; done
"$CAIRN" volume list >/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
"$CAIRN" volume create bench >/dev/null
echo "== writing 4 files of $SIZE (load: $(cut -d' ' -f1-3 /proc/loadavg))"
for i in 0 1 2 3; do
  head -c "$SIZE" /dev/urandom > "$WORK/files/f$i"
  "$CAIRN" volume put bench "$WORK/files/f$i" "f$i" >/dev/null
done
bytes=$(( $(stat -c %s "$WORK/files/f0") * 4 ))

run() {  # MODE (direct|control): prints MB/s
  local extra=() mpids=()
  [ "$1" = control ] && extra=(--no-direct-reads)
  for i in 0 1 2 3; do
    rm -rf "$WORK/c$i"; mkdir -p "$WORK/m$i" "$WORK/c$i"
    "$CAIRN" mount bench "$WORK/m$i" --cache-dir "$WORK/c$i" "${extra[@]}" \
      >>"$WORK/mount$i.log" 2>&1 &
    mpids+=($!)
  done
  for i in 0 1 2 3; do
    for _ in $(seq 1 500); do
      grep -q " $WORK/m$i .* - fuse.cairn " /proc/self/mountinfo &&
        stat "$WORK/m$i/f$i" >/dev/null 2>&1 && break
      sleep 0.01
    done
  done
  drop_caches
  local start end
  start=$(date +%s.%N)
  local readers=()
  for i in 0 1 2 3; do cat "$WORK/m$i/f$i" >/dev/null & readers+=($!); done
  for p in "${readers[@]}"; do wait "$p"; done
  end=$(date +%s.%N)
  for i in 0 1 2 3; do
    cmp -s "$WORK/m$i/f$i" "$WORK/files/f$i" || { echo "s3_read_bench: f$i differs" >&2; exit 1; }
  done
  for i in 0 1 2 3; do fusermount3 -u "$WORK/m$i"; done
  for p in "${mpids[@]}"; do wait "$p" || true; done
  awk -v b="$bytes" -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", b / (e - s) / 1e6 }'
}
med_best() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {printf "%s %s", v[int((NR+1)/2)], v[NR]}'; }

direct=() control=()
for round in $(seq 1 "$REPS"); do
  echo "== round $round of $REPS (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  direct+=("$(run direct)")
  control+=("$(run control)")
  echo "   direct ${direct[-1]} MB/s, through the control plane ${control[-1]} MB/s"
done
read -r d db <<<"$(med_best "${direct[@]}")"
read -r c cb <<<"$(med_best "${control[@]}")"
echo
echo "4 mounts reading 4 distinct $SIZE files at once, empty node caches (MB/s, median (best) of $REPS)"
echo "  direct from S3             $d ($db)"
echo "  through the control plane  $c ($cb)"
awk -v a="$d" -v b="$c" 'BEGIN { printf "  ratio direct / control    %.2f\n", a / b }'
