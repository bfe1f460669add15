#!/usr/bin/env bash
# put/get throughput against `cp` on the same machine, in the same run
# (issue 3). Run by hand:
#
#   bench/put_get_bench.sh [BUILD_DIR]      (default: build)
#
# Env: BENCH_DIR (scratch space, default a new dir under $TMPDIR or /tmp;
# needs ~9 GiB free), LARGE_MB (default 2048), SMALL_FILES (default 10000),
# BIG_VOLUME_FILES (default 100000).
#
# Prints MB/s and files/s for cp, put and get, the ratios against cp
# (targets: large >= 0.7x, small >= 0.3x), and the cost of a one-file put
# into a 1k-file volume vs a 100k-file volume (target ratio <= 1.5).
# Caches: BENCH_CACHE=cold (default) writes back and drops the page cache
# (echo 3 > /proc/sys/vm/drop_caches, needs root) before EVERY timed step,
# so cp, put and get all read their source from disk; BENCH_CACHE=warm
# only syncs (sources stay in the page cache for all of them). Either way
# the previous step's dirty data is written back first, so no step pays for
# another's writeback.
# Durability: put is acknowledged only once its data is durable (the server
# fsyncs blobs and the commit); cp is not, so "cp+sync" (cp, then sync, in
# the timing) is the durable baseline and put is compared with both. get
# does not fsync (like cp). CPU seconds (user+sys) of the client and the
# server are printed per step to show where the time goes.
# REPS (default 1): repeat each large-file step, report the median.
# Noise: on a VM with virtio-balloon free page reporting, writing into page
# cache pages the host has reclaimed costs a host fault per page (seen as
# copy_folio_from_iter_atomic in perf, 2-8x the cost of the copy itself,
# varying run to run); cp and get both write through the page cache and
# pay it. Use REPS=3 for numbers worth quoting.
set -euo pipefail
shopt -s inherit_errexit

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
cairn=$build/cli/cairn
[[ -x $cairn ]] || { echo "no cairn binary at $cairn (build first)" >&2; exit 2; }
large_mb=${LARGE_MB:-2048}
cache=${BENCH_CACHE:-cold}
reps=${REPS:-1}
case $cache in
  cold) [[ -w /proc/sys/vm/drop_caches ]] || { echo "BENCH_CACHE=cold needs root" >&2; exit 2; } ;;
  warm) ;;
  *) echo "BENCH_CACHE must be cold or warm" >&2; exit 2 ;;
esac
small_files=${SMALL_FILES:-10000}
big_volume_files=${BIG_VOLUME_FILES:-100000}
work=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench-XXXXXX")}
mkdir -p "$work"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export CAIRN_SERVER=127.0.0.1:$port
unset CAIRN_TOKEN CAIRN_TOKEN_FILE CAIRN_NAMESPACE
"$cairn" server --data "$work/data" --listen "$CAIRN_SERVER" --metrics-listen "" \
  --gc-interval 0 2>"$work/server.log" &
server_pid=$!
cleanup() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  [[ -n ${KEEP:-} ]] || rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do
  "$cairn" volume list >/dev/null 2>&1 && break
  sleep 0.1
done

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.1f", (s > 0 ? n / s : 0) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
# CPU seconds (user+sys, children included) of a process so far.
cpu_of() {
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13 + $14 + $15) / hz }' \
    "/proc/$1/stat" 2>/dev/null || echo 0
}
# Timed run of a command: prints seconds; the server's CPU seconds over the
# step go to $work/last.cpu, the command's own to $work/last.ccpu.
timed() {
  local t s0 tf
  s0=$(cpu_of "$server_pid"); tf=$work/time.out
  t=$(now)
  /usr/bin/env time -f "%U %S" -o "$tf" "$@" >/dev/null || { echo "failed: $*" >&2; exit 1; }
  elapsed "$t"
  awk '{ printf "%.2f", $1 + $2 }' "$tf" >"$work/last.ccpu"
  awk -v a="$s0" -v b="$(cpu_of "$server_pid")" 'BEGIN { printf "%.2f", b - a }' >"$work/last.cpu"
}
# Writeback (so no step pays for the previous one's dirty pages) and, cold,
# an empty page cache.
drop() {
  sync
  if [[ $cache == cold ]]; then echo 3 >/proc/sys/vm/drop_caches; fi
}
# median of REPS runs of a step: STEP_FN; prints "secs clientcpu servercpu"
median_of() {
  local i out=()
  for i in $(seq "$reps"); do
    out+=("$("$@")")
  done
  printf '%s\n' "${out[@]}" | sort -n | sed -n "$(( (reps + 1) / 2 ))p"
}

echo "== data: ${large_mb} MiB file, ${small_files} x 4 KiB files (in $work)"
head -c "$((large_mb << 20))" /dev/urandom >"$work/large.bin"
mkdir -p "$work/small"
python3 - "$work/small" "$small_files" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%03d" % (i % 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d" % i), "wb") as f:
        f.write(os.urandom(4096))
PY
# On a VM the host caches the virtual disk: whatever reads a file first
# pays for the real disk and the rest read the host's cache. Read every
# source once so all steps start equal (cold in the guest, warm on the host).
cat "$work/large.bin" >/dev/null
find "$work/small" -type f -exec cat {} + >/dev/null
drop

mb=$large_mb
mkdir -p "$work/cp1"
# Each step: drop; time it; print "seconds client-cpu server-cpu".
rec() { echo "$1 $(cat "$work/last.ccpu") $(cat "$work/last.cpu")"; }
step_cp_large() { rm -f "$work/cp1/large.bin"; drop; rec "$(timed cp "$work/large.bin" "$work/cp1/large.bin")"; }
step_cpsync_large() {
  rm -f "$work/cp1/large.bin"; drop
  rec "$(timed sh -c 'cp "$1" "$2" && sync' sh "$work/large.bin" "$work/cp1/large.bin")"
}
# Steps run in subshells: the count of large-file volumes lives in a file.
echo 0 >"$work/n_put"
step_put_large() {  # a fresh volume each time: nothing deduplicates
  local n=$(($(cat "$work/n_put") + 1))
  echo "$n" >"$work/n_put"
  "$cairn" volume create "bench$n" >/dev/null; drop
  rec "$(timed "$cairn" volume put "bench$n" "$work/large.bin" /large.bin)"
}
step_get_large() {
  rm -f "$work/large.back"; drop
  rec "$(timed "$cairn" volume get bench1 /large.bin "$work/large.back")"
}

# --- large file
r_cp_large=$(median_of step_cp_large)
r_cpsync_large=$(median_of step_cpsync_large)
rm -rf "$work/cp1"
r_put_large=$(median_of step_put_large)
# The blobs get reads were just written; read them once too, so the server
# reads its source from the host's cache like cp does (see above).
host_warm() { find "$work/data/blobs" -type f -exec cat {} + >/dev/null; }
host_warm
r_get_large=$(median_of step_get_large)
cmp -s "$work/large.bin" "$work/large.back" || { echo "large file round trip differs!" >&2; exit 1; }
rm -f "$work/large.back"

# --- small files
"$cairn" volume create bench >/dev/null
rm -rf "$work/cp2"; drop
r_cp_small=$(rec "$(timed cp -r "$work/small" "$work/cp2")")
rm -rf "$work/cp2"; drop
r_cpsync_small=$(rec "$(timed sh -c 'cp -r "$1" "$2" && sync' sh "$work/small" "$work/cp2")")
rm -rf "$work/cp2"; drop
r_put_small=$(rec "$(timed "$cairn" volume put bench "$work/small" /small)")
mkdir -p "$work/back"; host_warm; drop
r_get_small=$(rec "$(timed "$cairn" volume get bench /small "$work/back")")
diff -rq "$work/small" "$work/back/small" >/dev/null || { echo "small files differ!" >&2; exit 1; }
rm -rf "$work/back"
first() { echo "${1%% *}"; }
t_cp_large=$(first "$r_cp_large"); t_cpsync_large=$(first "$r_cpsync_large")
t_put_large=$(first "$r_put_large"); t_get_large=$(first "$r_get_large")
t_cp_small=$(first "$r_cp_small"); t_cpsync_small=$(first "$r_cpsync_small")
t_put_small=$(first "$r_put_small"); t_get_small=$(first "$r_get_small")

echo
echo "caches: $cache (see the header); reps: $reps (median)"
printf '%-16s %9s %10s %10s %11s %11s\n' "" "seconds" "MB/s" "files/s" "client cpu" "server cpu"
row() {  # NAME "secs ccpu scpu" MB FILES
  local secs ccpu scpu files=-
  read -r secs ccpu scpu <<<"$2"
  [[ -n ${4:-} ]] && files=$(rate "$4" "$secs")
  printf '%-16s %9s %10s %10s %11s %11s\n' "$1" "$secs" "$(rate "$3" "$secs")" "$files" \
    "$ccpu" "$scpu"
}
small_mb=$(awk -v n="$small_files" 'BEGIN { printf "%.1f", n * 4 / 1024 }')
row "cp large" "$r_cp_large" "$mb"
row "cp+sync large" "$r_cpsync_large" "$mb"
row "put large" "$r_put_large" "$mb"
row "get large" "$r_get_large" "$mb"
row "cp small" "$r_cp_small" "$small_mb" "$small_files"
row "cp+sync small" "$r_cpsync_small" "$small_mb" "$small_files"
row "put small" "$r_put_small" "$small_mb" "$small_files"
row "get small" "$r_get_small" "$small_mb" "$small_files"
echo
echo "ratios vs cp (higher is better; targets large >= 0.7, small >= 0.3):"
printf '  put large %s   get large %s   (vs cp+sync: %s / %s)\n' \
  "$(ratio "$t_cp_large" "$t_put_large")" "$(ratio "$t_cp_large" "$t_get_large")" \
  "$(ratio "$t_cpsync_large" "$t_put_large")" "$(ratio "$t_cpsync_large" "$t_get_large")"
printf '  put small %s   get small %s   (vs cp+sync: %s / %s)\n' \
  "$(ratio "$t_cp_small" "$t_put_small")" "$(ratio "$t_cp_small" "$t_get_small")" \
  "$(ratio "$t_cpsync_small" "$t_put_small")" "$(ratio "$t_cpsync_small" "$t_get_small")"

# --- one-file put into a small and a large volume
echo
echo "== one-file put into a 1k-file volume vs a ${big_volume_files}-file volume"
mk_tree() {  # DIR N: N tiny files, 1000 per directory
  python3 - "$1" "$2" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%04d" % (i // 1000))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%06d" % i), "w") as f:
        f.write(str(i))
PY
}
mk_tree "$work/t1k" 1000
mk_tree "$work/t100k" "$big_volume_files"
"$cairn" volume create v1k >/dev/null
"$cairn" volume create v100k >/dev/null
"$cairn" volume put v1k "$work/t1k" /tree >/dev/null
"$cairn" volume put v100k "$work/t100k" /tree >/dev/null
echo "one file" >"$work/one.txt"
median_put() {  # VOLUME: median of 7 one-file puts, each a new path in tree/d0000
  local v=$1 i times=()
  for i in $(seq 7); do
    times+=("$(timed "$cairn" volume put "$v" "$work/one.txt" "/tree/d0000/new$i.txt")")
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n 4p
}
t1k=$(median_put v1k)
t100k=$(median_put v100k)
printf '  1k-file volume   %ss\n  %s-file volume %ss\n  ratio %s (target <= 1.5)\n' \
  "$t1k" "$big_volume_files" "$t100k" "$(ratio "$t100k" "$t1k")"
