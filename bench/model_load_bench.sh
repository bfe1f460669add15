#!/usr/bin/env bash
# Model loading through a mount against native disk, in one run: real numpy
# and safetensors load a ~2 GiB safetensors file of random float32 tensors.
# By hand, not CI; needs root (drop_caches, mounts) and network access to
# PyPI the first time (the venv is cached outside the repository).
#
#   bench/model_load_bench.sh [BUILD_DIR]
#
# Environment: SIZE_MIB (default 2048), REPS (interleaved rounds, default 3),
# PICK (tensors loaded at random, default 10), WORK (default
# /var/tmp/cairn-model-bench, removed unless KEEP=1), PYENV (the venv,
# default ~/.cache/cairn/py/model-bench-<versions>).
#
# Each round runs, in turn:
#   native cold     the file on local disk, page cache dropped
#   native warm     the same, file resident in the page cache
#   cairn cold      a fresh mount, empty node cache, page cache dropped: every
#                   byte comes from the control plane on loopback
#   cairn node      a fresh mount, node cache filled beforehand, page cache
#                   dropped: bytes come from the node cache through the daemon
#   cairn warm      the mounted file resident in the page cache
# and, for each, loads all tensors ("all") and PICK tensors chosen at random
# ("pick"; the same ones in every case). Times are taken inside Python
# around the load alone. Reported: median (best) seconds of the rounds and
# the ratio native/cairn of medians (1.0 = as fast as native; higher is
# better). The machine's load average is printed: it is shared, so rounds
# are interleaved and only ratios mean much. Before timing, the mounted
# copy's tensors are checked byte for byte against the native file.
set -euo pipefail

BUILD=${1:-$(cd "$(dirname "$0")/.." && pwd)/build}
CAIRN=$BUILD/cli/cairn
HERE=$(cd "$(dirname "$0")" && pwd)
SIZE_MIB=${SIZE_MIB:-2048}
REPS=${REPS:-3}
PICK=${PICK:-10}
WORK=${WORK:-/var/tmp/cairn-model-bench}
PORT=${PORT:-17720}
NUMPY_VERSION=2.4.6
SAFETENSORS_VERSION=0.8.0
PYENV=${PYENV:-$HOME/.cache/cairn/py/model-bench-numpy$NUMPY_VERSION-safetensors$SAFETENSORS_VERSION}
export CAIRN_SERVER=127.0.0.1:$PORT

[ "$(id -u)" -eq 0 ] || { echo "model_load_bench: needs root" >&2; exit 1; }
[ -x "$CAIRN" ] || { echo "model_load_bench: $CAIRN not built" >&2; exit 1; }

if [ ! -x "$PYENV/bin/python" ] || ! "$PYENV/bin/python" -c 'import numpy, safetensors' 2>/dev/null; then
  echo "== installing numpy $NUMPY_VERSION and safetensors $SAFETENSORS_VERSION into $PYENV"
  rm -rf "$PYENV"
  python3 -m venv "$PYENV"
  "$PYENV/bin/python" -m pip install --quiet "numpy==$NUMPY_VERSION" \
    "safetensors==$SAFETENSORS_VERSION"
fi
py() { "$PYENV/bin/python" "$HERE/model_load.py" "$@"; }

rm -rf "$WORK"
mkdir -p "$WORK"/{native,mnt,cache}
pids=()
mpid=
cleanup() {
  set +e
  mountpoint -q "$WORK/mnt" && umount -l "$WORK/mnt"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
mount_c() {  # a fresh mount process; waits until it answers
  "$CAIRN" mount bench "$WORK/mnt" --cache-dir "$WORK/cache" >>"$WORK/mount.log" 2>&1 &
  mpid=$!
  pids+=($!)
  for _ in $(seq 1 500); do
    grep -q " $WORK/mnt .* - fuse.cairn " /proc/self/mountinfo &&
      stat "$WORK/mnt" >/dev/null 2>&1 && return 0
    sleep 0.01
  done
  echo "model_load_bench: mount failed" >&2; cat "$WORK/mount.log" >&2; exit 1
}
unmount_c() { fusermount3 -u "$WORK/mnt"; wait "$mpid" || true; }
empty_node_cache() { rm -rf "$WORK/cache"; mkdir -p "$WORK/cache"; }
med_best() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {printf "%.3f %.3f", v[int((NR+1)/2)], v[1]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

echo "== writing ${SIZE_MIB} MiB of random tensors (load: $(cut -d' ' -f1-3 /proc/loadavg))"
py write "$WORK/native/model.safetensors" "$SIZE_MIB"
"$CAIRN" server --data "$WORK/data" --listen "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do "$CAIRN" volume list >/dev/null 2>&1 && break; sleep 0.1; done
"$CAIRN" volume create bench >/dev/null
mount_c
cp "$WORK/native/model.safetensors" "$WORK/mnt/model.safetensors"
"$CAIRN" volume commit "$WORK/mnt" >/dev/null
unmount_c
empty_node_cache
mount_c
want=$(py digest "$WORK/native/model.safetensors")
got=$(py digest "$WORK/mnt/model.safetensors")
unmount_c
[ "$want" = "$got" ] || { echo "model_load_bench: the mounted copy differs ($got vs $want)" >&2; exit 1; }
echo "   tensors identical through the mount (sha256 $want)"

native=$WORK/native/model.safetensors
mounted=$WORK/mnt/model.safetensors
declare -A runs
case_run() {  # NAME FILE: all tensors, appended to runs[NAME.all]
  runs[$1.all]+="$(py all "$2") "
}
case_pick() {  # NAME FILE: PICK random tensors, appended to runs[NAME.pick]
  runs[$1.pick]+="$(py some "$2" "$PICK" 7) "
}

for round in $(seq 1 "$REPS"); do
  echo "== round $round of $REPS (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  drop_caches; case_run native.cold "$native"
  drop_caches; case_pick native.cold "$native"
  cat "$native" >/dev/null; case_run native.warm "$native"; case_pick native.warm "$native"

  empty_node_cache; mount_c; drop_caches; case_run cairn.cold "$mounted"; unmount_c
  empty_node_cache; mount_c; drop_caches; case_pick cairn.cold "$mounted"; unmount_c

  mount_c; cat "$mounted" >/dev/null; unmount_c  # the node cache holds every chunk
  mount_c; drop_caches; case_run cairn.node "$mounted"; unmount_c
  mount_c; drop_caches; case_pick cairn.node "$mounted"
  cat "$mounted" >/dev/null; case_run cairn.warm "$mounted"; case_pick cairn.warm "$mounted"
  unmount_c
done

echo
echo "safetensors load of ${SIZE_MIB} MiB, seconds: median (best) of $REPS interleaved rounds;"
echo "ratio = native / cairn of medians (1.0 = as fast as native)"
printf '  %-34s %-18s %s\n' case "all tensors" "$PICK random tensors"
declare -A med
for c in native.cold native.warm cairn.cold cairn.node cairn.warm; do
  # shellcheck disable=SC2086
  read -r a ab <<<"$(med_best ${runs[$c.all]})"
  # shellcheck disable=SC2086
  read -r p pb <<<"$(med_best ${runs[$c.pick]})"
  med[$c.all]=$a
  med[$c.pick]=$p
  printf '  %-34s %-18s %s\n' "$c" "$a ($ab)" "$p ($pb)"
done
echo "ratios against native in the same state:"
printf '  %-34s all %s   pick %s\n' "cold node cache vs native cold" \
  "$(ratio "${med[native.cold.all]}" "${med[cairn.cold.all]}")" \
  "$(ratio "${med[native.cold.pick]}" "${med[cairn.cold.pick]}")"
printf '  %-34s all %s   pick %s\n' "warm node cache vs native cold" \
  "$(ratio "${med[native.cold.all]}" "${med[cairn.node.all]}")" \
  "$(ratio "${med[native.cold.pick]}" "${med[cairn.node.pick]}")"
printf '  %-34s all %s   pick %s\n' "page cache vs native warm" \
  "$(ratio "${med[native.warm.all]}" "${med[cairn.warm.all]}")" \
  "$(ratio "${med[native.warm.pick]}" "${med[cairn.warm.pick]}")"
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
