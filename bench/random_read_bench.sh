#!/usr/bin/env bash
# Random 4 KiB reads through a mount, before/after and against native disk,
# in one run (issue 13). By hand, not CI; needs root (drop_caches, mounts)
# and fio.
#
#   bench/random_read_bench.sh NEW_BUILD_DIR [BASE_BUILD_DIR]
#
# BASE_BUILD_DIR is a build of an older tree (e.g. a `git worktree` of the
# commit before a change, built with scripts/build.sh ... -- cairn); its
# server, mounter and CLI write and read their own volume, so its figures
# are the old format end to end. Without it only native and NEW run.
#
# Environment: SIZE (default 2G), REPS (interleaved rounds, default 3),
# RUNTIME (seconds per fio run, default 10), JOBS (fio jobs, default 4),
# WORK (default /var/tmp/cairn-random-bench, removed unless KEEP=1).
#
# Each round runs, in turn, native, base and new: fio randread bs=4k psync,
# JOBS jobs, the file's page cache dropped first (--invalidate=1), so
# Cairn's reads come from its node cache through the daemon. A mount is
# fresh for the run (nothing in the daemon's memory) with the node cache
# filled by one sequential read beforehand. "control plane" runs start from
# an empty node cache instead. Reported: median (best) IOPS of the rounds
# and ratios of medians; the machine's load average is printed, since other
# work on a shared machine moves absolute figures.
set -euo pipefail

NEW=${1:?usage: random_read_bench.sh NEW_BUILD_DIR [BASE_BUILD_DIR]}
BASE=${2:-}
SIZE=${SIZE:-2G}
REPS=${REPS:-3}
RUNTIME=${RUNTIME:-10}
JOBS=${JOBS:-4}
WORK=${WORK:-/var/tmp/cairn-random-bench}

[ "$(id -u)" -eq 0 ] || { echo "random_read_bench: needs root" >&2; exit 1; }
command -v fio >/dev/null || { echo "random_read_bench: fio missing" >&2; exit 1; }
variants=(new)
[ -n "$BASE" ] && variants=(base new)
declare -A bin port
bin[new]=$NEW/cli/cairn
port[new]=17710
if [ -n "$BASE" ]; then bin[base]=$BASE/cli/cairn; port[base]=17711; fi
for v in "${variants[@]}"; do
  [ -x "${bin[$v]}" ] || { echo "random_read_bench: ${bin[$v]} not built" >&2; exit 1; }
done

rm -rf "$WORK"
mkdir -p "$WORK/native"
pids=()
cleanup() {
  set +e
  for v in "${variants[@]}"; do
    mountpoint -q "$WORK/$v/mnt" && umount -l "$WORK/$v/mnt"
  done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
cli() { local v=$1; shift; CAIRN_SERVER=127.0.0.1:${port[$v]} "${bin[$v]}" "$@"; }
mount_v() {  # VARIANT: a fresh mount process; waits until it answers
  local v=$1
  CAIRN_SERVER=127.0.0.1:${port[$v]} "${bin[$v]}" mount bench "$WORK/$v/mnt" \
    --cache-dir "$WORK/$v/cache" >>"$WORK/$v/mount.log" 2>&1 &
  mpid[$v]=$!
  pids+=($!)
  for _ in $(seq 1 500); do
    grep -q " $WORK/$v/mnt .* - fuse.cairn " /proc/self/mountinfo &&
      stat "$WORK/$v/mnt" >/dev/null 2>&1 && return 0
    sleep 0.01
  done
  echo "random_read_bench: mount failed" >&2; cat "$WORK/$v/mount.log" >&2; exit 1
}
unmount_v() { fusermount3 -u "$WORK/$1/mnt"; wait "${mpid[$1]}" || true; }
fio_iops() {  # FILE
  fio --name=rr --filename="$1" --readonly --rw=randread --bs=4k --ioengine=psync \
      --invalidate=1 --numjobs="$JOBS" --runtime="$RUNTIME" --time_based --group_reporting \
      --output-format=terse 2>/dev/null | awk -F';' '{print $8}'
}
med_best() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {printf "%d %d", v[int((NR+1)/2)], v[NR]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }

declare -A mpid
echo "== preparing a $SIZE file (load: $(cut -d' ' -f1-3 /proc/loadavg))"
head -c "$SIZE" /dev/urandom > "$WORK/native/big"
for v in "${variants[@]}"; do
  mkdir -p "$WORK/$v"/{mnt,cache}
  CAIRN_SERVER=127.0.0.1:${port[$v]} "${bin[$v]}" server --data "$WORK/$v/data" \
    --listen "127.0.0.1:${port[$v]}" >"$WORK/$v/server.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do cli "$v" volume list >/dev/null 2>&1 && break; sleep 0.1; done
  cli "$v" volume create bench >/dev/null
  # Written through the mount, so the chunks are sealed by that build's
  # mounter (its format), as a workload writing to a volume would.
  mount_v "$v"
  cp "$WORK/native/big" "$WORK/$v/mnt/big"
  cli "$v" volume commit "$WORK/$v/mnt" >/dev/null  # an unmount's final commit has a time budget
  unmount_v "$v"
  mount_v "$v"
  [ "$(stat -c %s "$WORK/$v/mnt/big")" = "$(stat -c %s "$WORK/native/big")" ] ||
    { echo "random_read_bench: $v did not commit the whole file" >&2; exit 1; }
  unmount_v "$v"
done

declare -A cache_runs remote_runs
native_runs=()
for round in $(seq 1 "$REPS"); do
  echo "== round $round of $REPS (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  drop_caches
  native_runs+=("$(fio_iops "$WORK/native/big")")
  for v in "${variants[@]}"; do
    # From the control plane: empty node cache, fresh daemon.
    rm -rf "$WORK/$v/cache"; mkdir -p "$WORK/$v/cache"
    mount_v "$v"
    drop_caches
    remote_runs[$v]+="$(fio_iops "$WORK/$v/mnt/big") "
    unmount_v "$v"
    # From the node cache: filled by a sequential read, then a fresh daemon.
    mount_v "$v"
    cat "$WORK/$v/mnt/big" >/dev/null
    unmount_v "$v"
    mount_v "$v"
    drop_caches
    cache_runs[$v]+="$(fio_iops "$WORK/$v/mnt/big") "
    unmount_v "$v"
  done
done

read -r native native_best <<<"$(med_best "${native_runs[@]}")"
echo
echo "random 4 KiB reads, $JOBS jobs, page cache dropped (IOPS; median (best) of $REPS interleaved rounds)"
echo "  native                     $native ($native_best)"
declare -A med
for v in "${variants[@]}"; do
  # shellcheck disable=SC2086
  read -r c cb <<<"$(med_best ${cache_runs[$v]})"
  # shellcheck disable=SC2086
  read -r r rb <<<"$(med_best ${remote_runs[$v]})"
  med[$v.cache]=$c
  med[$v.remote]=$r
  printf '  %-4s from node cache       %s (%s)   ratio to native %s\n' "$v" "$c" "$cb" "$(ratio "$c" "$native")"
  printf '  %-4s from control plane    %s (%s)   ratio to native %s\n' "$v" "$r" "$rb" "$(ratio "$r" "$native")"
done
if [ -n "$BASE" ]; then
  echo "  new / base: node cache $(ratio "${med[new.cache]}" "${med[base.cache]}")×," \
    "control plane $(ratio "${med[new.remote]}" "${med[base.remote]}")×"
fi
echo "  target: node cache >= 0.5 × native"
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
