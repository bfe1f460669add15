#!/usr/bin/env bash
# Read benchmark for the FUSE mounter (issue 4). By hand, not CI; needs root
# (drop_caches, mounts), bindfs and fio (scripts/setup.sh installs both).
#
#   bench/read_bench.sh [BUILD_DIR]
#
# Environment: SIZE (default 2G), FILES (ls/stat test, default 100000; 0
# skips it), MOUNT_FILES (mount-time test, default 1000000; 0 skips it), FIO
# (1; 0 skips the fio test), REPS (warm rounds, default 5), WORK (default
# /var/tmp/cairn-read-bench, removed at the end unless KEEP=1).
#
# How the sequential figures are taken (compare like with like): every read
# is `dd bs=4M` of the whole file to /dev/null, timed around dd alone. Cold
# figures drop the page cache first (sync + drop_caches); the node cache's
# sealed files and the control plane's blobs are then on disk too. Warm
# figures run REPS rounds interleaving native, bindfs and Cairn (so a burst
# of load on this shared machine hits all three alike); before each timed
# read the file is read again until fincore says it is wholly resident
# (other jobs may drop caches at any time). The median and the best round of
# each are reported; the ratio uses medians.
#
# Prints, side by side: sequential read of one SIZE file from native disk
# (cold, warm), bindfs over it (cold, warm), Cairn from the control plane
# (empty node cache, cold page cache), Cairn from the node cache (page cache
# dropped), Cairn warm; fio random 4 KiB reads on a cached file; ls -lR and
# stat over FILES files against native; mount time of a MOUNT_FILES-file
# volume. Then the ratios against the issue's targets.
set -euo pipefail

BUILD=${1:-$(cd "$(dirname "$0")/.." && pwd)/build}
CAIRN=$BUILD/cli/cairn
SIZE=${SIZE:-2G}
FILES=${FILES:-100000}
FIO=${FIO:-1}
REPS=${REPS:-5}
MOUNT_FILES=${MOUNT_FILES:-1000000}
WORK=${WORK:-/var/tmp/cairn-read-bench}
PORT=${PORT:-17600}
export CAIRN_SERVER=127.0.0.1:$PORT

[ "$(id -u)" -eq 0 ] || { echo "read_bench: needs root" >&2; exit 1; }
[ -x "$CAIRN" ] || { echo "read_bench: $CAIRN not built" >&2; exit 1; }
for tool in bindfs fio; do
  command -v $tool >/dev/null || { echo "read_bench: $tool missing (scripts/setup.sh)" >&2; exit 1; }
done

rm -rf "$WORK"
mkdir -p "$WORK"/{native,bindfs,mnt,cache}
pids=()
cleanup() {
  set +e
  for m in "$WORK"/mnt "$WORK"/bindfs; do mountpoint -q "$m" && umount -l "$m"; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# MB/s of reading $1 sequentially (dd, 4 MiB blocks), timed around dd only.
read_mbps() {
  local t0 t1 bytes
  bytes=$(stat -c %s "$1")
  t0=$(now)
  dd if="$1" of=/dev/null bs=4M status=none
  t1=$(now)
  echo "$bytes $t0 $t1" | awk '{printf "%.0f", $1 / ($3 - $2) / 1e6}'
}
# Makes sure all of $1 is in the page cache: reads it (again) until fincore
# says so. Other jobs on a shared machine may drop caches at any time; a
# round that found the file evicted would time the disk, not the cache.
resident() { fincore -nb -o RES,SIZE "$1" 2>/dev/null | awk '{exit !($1 >= $2 * 0.999)}'; }
prime() {
  for _ in 1 2 3; do
    resident "$1" && return 0
    cat "$1" >/dev/null
  done
  resident "$1" || echo "read_bench: $1 does not stay in the page cache" >&2
}
# A warm read: primed first, so every round times the page cache only.
warm_mbps() { prime "$1"; read_mbps "$1"; }
# Median and best of a list of numbers: "MEDIAN BEST".
med_best() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {printf "%d %d", v[int((NR+1)/2)], v[NR]}'; }
mount_cairn() {  # VOLUME [args...]; waits until the mount answers
  local vol=$1; shift
  "$CAIRN" mount "$vol" "$WORK/mnt" --cache-dir "$WORK/cache" "$@" >>"$WORK/mount.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 500); do
    grep -q " $WORK/mnt .* - fuse.cairn " /proc/self/mountinfo && stat "$WORK/mnt" >/dev/null 2>&1 && return 0
    sleep 0.01
  done
  echo "read_bench: mount failed" >&2; cat "$WORK/mount.log" >&2; exit 1
}
unmount_cairn() { fusermount3 -u "$WORK/mnt"; wait "${pids[-1]}" || true; }

"$CAIRN" server --data "$WORK/data" --listen "$CAIRN_SERVER" >"$WORK/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do "$CAIRN" volume list >/dev/null 2>&1 && break; sleep 0.1; done

echo "== preparing a $SIZE file"
head -c "$SIZE" /dev/urandom > "$WORK/native/big"
"$CAIRN" volume create bench >/dev/null
"$CAIRN" volume put bench "$WORK/native/big" /big >/dev/null

echo "== sequential read, $SIZE"
drop_caches; native_cold=$(read_mbps "$WORK/native/big")
bindfs "$WORK/native" "$WORK/bindfs"
drop_caches; bindfs_cold=$(read_mbps "$WORK/bindfs/big")

rm -rf "$WORK/cache"; mkdir -p "$WORK/cache"
mount_cairn bench
drop_caches; cairn_remote=$(read_mbps "$WORK/mnt/big")
unmount_cairn
mount_cairn bench  # a new process: nothing in memory, all in the node cache
drop_caches; cairn_cache=$(read_mbps "$WORK/mnt/big")

echo "== warm, $REPS rounds"
# bindfs keeps no page cache of its own (fincore shows none): its "warm"
# figure is the daemon passing through the cached native file.
nw=(); bw=(); cw=()
for _ in $(seq 1 "$REPS"); do
  nw+=("$(warm_mbps "$WORK/native/big")")
  cat "$WORK/bindfs/big" >/dev/null
  bw+=("$(read_mbps "$WORK/bindfs/big")")
  cw+=("$(warm_mbps "$WORK/mnt/big")")
done
read -r native_warm native_warm_best <<<"$(med_best "${nw[@]}")"
read -r bindfs_warm bindfs_warm_best <<<"$(med_best "${bw[@]}")"
read -r cairn_warm cairn_warm_best <<<"$(med_best "${cw[@]}")"
umount "$WORK/bindfs"

[ "$FIO" = 1 ] && echo "== fio random 4 KiB reads (4 jobs, 10 s each)"
# $2: 1 drops the file's page cache first (fio's default), 0 keeps it.
fio_iops() {
  fio --name=rr --filename="$1" --readonly --rw=randread --bs=4k --ioengine=psync \
      --invalidate="$2" --numjobs=4 --runtime=10 --time_based --group_reporting \
      --output-format=terse 2>/dev/null | awk -F';' '{print $8}'
}
# Page cache kept first (the reads above left the whole file cached), then
# dropped (fio's default; reads come from the node cache through the daemon).
native_iops_warm=skipped cairn_iops_warm=skipped native_iops=skipped cairn_iops=skipped
if [ "$FIO" = 1 ]; then
  native_iops_warm=$(fio_iops "$WORK/native/big" 0)
  cairn_iops_warm=$(fio_iops "$WORK/mnt/big" 0)
  native_iops=$(fio_iops "$WORK/native/big" 1)
  cairn_iops=$(fio_iops "$WORK/mnt/big" 1)
fi
unmount_cairn

native_ls=skipped native_stat=skipped cairn_ls=skipped cairn_ls_warm=skipped cairn_stat=skipped
if [ "$FILES" -gt 0 ]; then
echo "== ls -lR and stat over $FILES files"
mkdir -p "$WORK/many"
python3 - "$WORK/many" "$FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
per = 1000
for i in range(n):
    d = os.path.join(root, "d%04d" % (i // per))
    if i % per == 0: os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%06d" % i), "w") as f: f.write("x")
PY
"$CAIRN" volume create many >/dev/null
"$CAIRN" volume put many "$WORK/many" /many >/dev/null
time_cmd() { local t0 t1; t0=$(now); "$@" >/dev/null 2>&1; t1=$(now); echo "$t0 $t1" | awk '{printf "%.2f", $2 - $1}'; }
drop_caches; native_ls=$(time_cmd ls -lR "$WORK/many")
native_stat=$(time_cmd find "$WORK/many" -printf '%s %m %T@\n')
mount_cairn many
cairn_ls=$(time_cmd ls -lR "$WORK/mnt/many")
cairn_ls_warm=$(time_cmd ls -lR "$WORK/mnt/many")
cairn_stat=$(time_cmd find "$WORK/mnt/many" -printf '%s %m %T@\n')
unmount_cairn
fi

mount_time=skipped
if [ "$MOUNT_FILES" -gt 0 ]; then
  echo "== mount time of a $MOUNT_FILES-file volume"
  rm -rf "$WORK/many"
  mkdir -p "$WORK/many"
  python3 - "$WORK/many" "$MOUNT_FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
per = 10000
for i in range(n):
    d = os.path.join(root, "d%04d" % (i // per))
    if i % per == 0: os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "f%07d" % i), "w").close()
PY
  "$CAIRN" volume create huge >/dev/null
  "$CAIRN" volume put huge "$WORK/many" /many >/dev/null
  rm -rf "$WORK/cache"; mkdir -p "$WORK/cache"
  t0=$(now); mount_cairn huge; ls "$WORK/mnt" >/dev/null; t1=$(now)
  mount_time=$(echo "$t0 $t1" | awk '{printf "%.3f", $2 - $1}')
  unmount_cairn
  t0=$(now); mount_cairn bench; ls "$WORK/mnt" >/dev/null; t1=$(now)
  small_mount=$(echo "$t0 $t1" | awk '{printf "%.3f", $2 - $1}')
  unmount_cairn
  mount_time="$mount_time s (1-file volume: $small_mount s)"
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
cat <<REPORT

sequential read of $SIZE (MB/s; dd bs=4M; warm: median (best) of $REPS interleaved rounds)
  native cold          $native_cold
  native warm          $native_warm ($native_warm_best)
  bindfs cold          $bindfs_cold
  bindfs warm          $bindfs_warm ($bindfs_warm_best)
  cairn, control plane $cairn_remote   (empty node cache, page cache dropped)
  cairn, node cache    $cairn_cache   (page cache dropped)
  cairn, warm          $cairn_warm ($cairn_warm_best)
random 4 KiB reads, 4 jobs (IOPS)
  native, page cache dropped   $native_iops
  cairn, from node cache       $cairn_iops
  native, page cache kept      $native_iops_warm
  cairn, page cache kept       $cairn_iops_warm
$FILES files (seconds)
  ls -lR native        $native_ls
  ls -lR cairn         $cairn_ls  (again: $cairn_ls_warm)
  find -printf native  $native_stat
  find -printf cairn   $cairn_stat
mount time             $mount_time

targets
  cairn warm / native warm        $(ratio "$cairn_warm" "$native_warm")  (>= 0.9)
  cairn node cache / bindfs cold  $(ratio "$cairn_cache" "$bindfs_cold")  (>= 1.5)
  cairn from control plane        $cairn_remote MB/s  (>= 500)
  mount time                      see above  (<= 1 s, independent of file count)
REPORT
