#!/usr/bin/env bash
# Write + commit of one big file through a mount, before/after and against
# native write + fsync, in one run (issue 13). By hand, not CI; needs root.
#
#   bench/write_bench.sh NEW_BUILD_DIR [BASE_BUILD_DIR]
#
# BASE_BUILD_DIR is a build of an older tree (scripts/build.sh ... -- cairn
# in a `git worktree` of it); it runs its own server and mounter.
#
# Environment: SIZE (default 2G), REPS (interleaved rounds, default 3),
# WORK (default /var/tmp/cairn-write-bench, removed unless KEEP=1).
#
# Each round, in turn: native (dd bs=4M of a random source file, then
# fsync), then each build: a fresh mount, the same dd into it, then
# `cairn volume commit MOUNTPOINT` (commits now, DESIGN.md C6), timed from
# the start of dd to the commit's return. The page cache is dropped
# before each, the source file re-read into it first (so the source's disk
# reads are not timed). Reported: median (best) MB/s and ratios of medians;
# the load average is printed, since other work on a shared machine moves
# absolute figures.
set -euo pipefail

NEW=${1:?usage: write_bench.sh NEW_BUILD_DIR [BASE_BUILD_DIR]}
BASE=${2:-}
SIZE=${SIZE:-2G}
REPS=${REPS:-3}
WORK=${WORK:-/var/tmp/cairn-write-bench}

[ "$(id -u)" -eq 0 ] || { echo "write_bench: needs root" >&2; exit 1; }
variants=(new)
[ -n "$BASE" ] && variants=(base new)
declare -A bin port mpid
bin[new]=$NEW/cli/cairn
port[new]=17720
if [ -n "$BASE" ]; then bin[base]=$BASE/cli/cairn; port[base]=17721; fi
for v in "${variants[@]}"; do
  [ -x "${bin[$v]}" ] || { echo "write_bench: ${bin[$v]} not built" >&2; exit 1; }
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

now() { date +%s.%N; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
cli() { local v=$1; shift; CAIRN_SERVER=127.0.0.1:${port[$v]} "${bin[$v]}" "$@"; }
mount_v() {
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
  echo "write_bench: mount failed" >&2; cat "$WORK/$v/mount.log" >&2; exit 1
}
unmount_v() { fusermount3 -u "$WORK/$1/mnt"; wait "${mpid[$1]}" || true; }
med_best() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {printf "%d %d", v[int((NR+1)/2)], v[NR]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
mbps() { awk -v b="$bytes" -v t0="$1" -v t1="$2" 'BEGIN { printf "%.0f", b / (t1 - t0) / 1e6 }'; }

echo "== preparing a $SIZE source (load: $(cut -d' ' -f1-3 /proc/loadavg))"
head -c "$SIZE" /dev/urandom > "$WORK/src"
bytes=$(stat -c %s "$WORK/src")
for v in "${variants[@]}"; do
  mkdir -p "$WORK/$v"/{mnt,cache}
  "${bin[$v]}" server --data "$WORK/$v/data" --listen "127.0.0.1:${port[$v]}" \
    >"$WORK/$v/server.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do cli "$v" volume list >/dev/null 2>&1 && break; sleep 0.1; done
  cli "$v" volume create bench >/dev/null
done

declare -A runs
native_runs=()
for round in $(seq 1 "$REPS"); do
  echo "== round $round of $REPS (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  rm -f "$WORK/native/big"
  drop_caches; cat "$WORK/src" >/dev/null
  t0=$(now)
  dd if="$WORK/src" of="$WORK/native/big" bs=4M status=none conv=fsync
  t1=$(now)
  native_runs+=("$(mbps "$t0" "$t1")")
  rm -f "$WORK/native/big"
  for v in "${variants[@]}"; do
    # Each round writes a different file name: a new file, not a rewrite.
    mount_v "$v"
    drop_caches; cat "$WORK/src" >/dev/null
    t0=$(now)
    dd if="$WORK/src" of="$WORK/$v/mnt/big$round" bs=4M status=none
    cli "$v" volume commit "$WORK/$v/mnt" >/dev/null
    t1=$(now)
    runs[$v]+="$(mbps "$t0" "$t1") "
    unmount_v "$v"
  done
done

read -r native native_best <<<"$(med_best "${native_runs[@]}")"
echo
echo "write + commit of $SIZE (MB/s; median (best) of $REPS interleaved rounds)"
echo "  native dd + fsync    $native ($native_best)"
declare -A med
for v in "${variants[@]}"; do
  # shellcheck disable=SC2086
  read -r m b <<<"$(med_best ${runs[$v]})"
  med[$v]=$m
  printf '  %-4s dd + commit       %s (%s)   native / this %s\n' "$v" "$m" "$b" "$(ratio "$native" "$m")"
done
[ -n "$BASE" ] && echo "  new / base: $(ratio "${med[new]}" "${med[base]}")×"
echo "  targets: >= 480 MB/s (JuiceFS here), native / cairn <= 1.5"
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
