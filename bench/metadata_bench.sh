#!/usr/bin/env bash
# Metadata through a mount: `ls -lR` and `find -printf` (stat of every file)
# over a tree of small files, against native disk, and before/after when an
# older build is given, in one run. By hand, not CI; needs root
# (drop_caches, mounts).
#
#   bench/metadata_bench.sh NEW_BUILD_DIR [BASE_BUILD_DIR]
#
# Environment: FILES (default 10000; 1000 per directory), REPS (interleaved
# rounds, default 3), WORK (default /var/tmp/cairn-metadata-bench, removed
# unless KEEP=1).
#
# Each round runs, in turn, native, base and new:
#   cold   page cache dropped; for Cairn a fresh mount process too (its
#          directory objects then come from the node cache on disk)
#   warm   the same command again right after (kernel caches kept)
# Reported: median (best) seconds of the rounds and ratios of medians
# against native in the same state; the load average is printed, since
# other work on a shared machine moves absolute figures.
set -euo pipefail

NEW=${1:?usage: metadata_bench.sh NEW_BUILD_DIR [BASE_BUILD_DIR]}
BASE=${2:-}
FILES=${FILES:-10000}
REPS=${REPS:-3}
WORK=${WORK:-/var/tmp/cairn-metadata-bench}

[ "$(id -u)" -eq 0 ] || { echo "metadata_bench: needs root" >&2; exit 1; }
variants=(new)
[ -n "$BASE" ] && variants=(base new)
declare -A bin port mpid
bin[new]=$NEW/cli/cairn
port[new]=17730
if [ -n "$BASE" ]; then bin[base]=$BASE/cli/cairn; port[base]=17731; fi
for v in "${variants[@]}"; do
  [ -x "${bin[$v]}" ] || { echo "metadata_bench: ${bin[$v]} not built" >&2; exit 1; }
done

rm -rf "$WORK"
mkdir -p "$WORK"
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
  CAIRN_SERVER=127.0.0.1:${port[$v]} "${bin[$v]}" mount many "$WORK/$v/mnt" \
    --cache-dir "$WORK/$v/cache" >>"$WORK/$v/mount.log" 2>&1 &
  mpid[$v]=$!
  pids+=($!)
  for _ in $(seq 1 500); do
    grep -q " $WORK/$v/mnt .* - fuse.cairn " /proc/self/mountinfo &&
      stat "$WORK/$v/mnt" >/dev/null 2>&1 && return 0
    sleep 0.01
  done
  echo "metadata_bench: mount failed" >&2; cat "$WORK/$v/mount.log" >&2; exit 1
}
unmount_v() { fusermount3 -u "$WORK/$1/mnt"; wait "${mpid[$1]}" || true; }
secs() {  # COMMAND...: wall seconds, output discarded
  local t0 t1
  t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}
med_best() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {printf "%.3f %.3f", v[int((NR+1)/2)], v[1]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

echo "== $FILES files (load: $(cut -d' ' -f1-3 /proc/loadavg))"
python3 - "$WORK/native/many" "$FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
per = 1000
for i in range(n):
    d = os.path.join(root, "d%04d" % (i // per))
    if i % per == 0: os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%06d" % i), "w") as f: f.write("x")
PY
for v in "${variants[@]}"; do
  mkdir -p "$WORK/$v"/{mnt,cache}
  CAIRN_SERVER=127.0.0.1:${port[$v]} "${bin[$v]}" server --data "$WORK/$v/data" \
    --listen "127.0.0.1:${port[$v]}" >"$WORK/$v/server.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do cli "$v" volume list >/dev/null 2>&1 && break; sleep 0.1; done
  cli "$v" volume create many >/dev/null
  cli "$v" volume put many "$WORK/native/many" /many >/dev/null
  mount_v "$v"
  n=$(find "$WORK/$v/mnt/many" -type f | wc -l)
  [ "$n" = "$FILES" ] || { echo "metadata_bench: $v shows $n files, not $FILES" >&2; exit 1; }
  unmount_v "$v"
done

declare -A runs
for round in $(seq 1 "$REPS"); do
  echo "== round $round of $REPS (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  for cmd in ls find; do
    drop_caches
    if [ $cmd = ls ]; then runs[native.ls.cold]+="$(secs ls -lR "$WORK/native/many") "
      runs[native.ls.warm]+="$(secs ls -lR "$WORK/native/many") "
    else runs[native.find.cold]+="$(secs find "$WORK/native/many" -printf '%s %m %T@\n') "
      runs[native.find.warm]+="$(secs find "$WORK/native/many" -printf '%s %m %T@\n') "
    fi
    for v in "${variants[@]}"; do
      mount_v "$v"
      drop_caches
      if [ $cmd = ls ]; then runs[$v.ls.cold]+="$(secs ls -lR "$WORK/$v/mnt/many") "
        runs[$v.ls.warm]+="$(secs ls -lR "$WORK/$v/mnt/many") "
      else runs[$v.find.cold]+="$(secs find "$WORK/$v/mnt/many" -printf '%s %m %T@\n') "
        runs[$v.find.warm]+="$(secs find "$WORK/$v/mnt/many" -printf '%s %m %T@\n') "
      fi
      unmount_v "$v"
    done
  done
done

echo
echo "$FILES files, seconds: median (best) of $REPS interleaved rounds; ratio = cairn / native"
declare -A med
for cmd in ls find; do
  for state in cold warm; do
    # shellcheck disable=SC2086
    read -r m b <<<"$(med_best ${runs[native.$cmd.$state]})"
    printf '  %-5s %-5s native %-16s' "$cmd" "$state" "$m ($b)"
    for v in "${variants[@]}"; do
      # shellcheck disable=SC2086
      read -r vm vb <<<"$(med_best ${runs[$v.$cmd.$state]})"
      med[$v.$cmd.$state]=$vm
      printf ' %s %-16s ratio %-6s' "$v" "$vm ($vb)" "$(ratio "$vm" "$m")"
    done
    echo
  done
done
if [ -n "$BASE" ]; then
  echo "  new / base: ls -lR cold $(ratio "${med[new.ls.cold]}" "${med[base.ls.cold]}")," \
    "warm $(ratio "${med[new.ls.warm]}" "${med[base.ls.warm]}")"
fi
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
