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
# Note: the server fsyncs every blob and commit; cp does not fsync, so
# "cp+sync" is printed as well for an apples-to-apples view.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
cairn=$build/cli/cairn
[[ -x $cairn ]] || { echo "no cairn binary at $cairn (build first)" >&2; exit 2; }
large_mb=${LARGE_MB:-2048}
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
# Timed run of a command: prints seconds.
timed() { local t; t=$(now); "$@" >/dev/null; elapsed "$t"; }
drop() { sync; }

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
drop

"$cairn" volume create bench >/dev/null
mb=$large_mb

# --- large file
mkdir -p "$work/cp1"
t_cp_large=$(timed cp "$work/large.bin" "$work/cp1/large.bin")
t=$(now); cp "$work/large.bin" "$work/cp1/large2.bin"; sync; t_cpsync_large=$(elapsed "$t")
rm -rf "$work/cp1"; drop
t_put_large=$(timed "$cairn" volume put bench "$work/large.bin" /large.bin)
drop
t_get_large=$(timed "$cairn" volume get bench /large.bin "$work/large.back")
cmp -s "$work/large.bin" "$work/large.back" || { echo "large file round trip differs!" >&2; exit 1; }
rm -f "$work/large.back"; drop

# --- small files
t_cp_small=$(timed cp -r "$work/small" "$work/cp2")
rm -rf "$work/cp2"
t=$(now); cp -r "$work/small" "$work/cp3"; sync; t_cpsync_small=$(elapsed "$t")
rm -rf "$work/cp3"; drop
t_put_small=$(timed "$cairn" volume put bench "$work/small" /small)
drop
mkdir -p "$work/back"
t_get_small=$(timed "$cairn" volume get bench /small "$work/back")
diff -rq "$work/small" "$work/back/small" >/dev/null || { echo "small files differ!" >&2; exit 1; }
rm -rf "$work/back"

echo
printf '%-22s %10s %12s %12s\n' "" "seconds" "MB/s" "files/s"
printf '%-22s %10s %12s %12s\n' "cp large" "$t_cp_large" "$(rate "$mb" "$t_cp_large")" "-"
printf '%-22s %10s %12s %12s\n' "cp+sync large" "$t_cpsync_large" "$(rate "$mb" "$t_cpsync_large")" "-"
printf '%-22s %10s %12s %12s\n' "put large" "$t_put_large" "$(rate "$mb" "$t_put_large")" "-"
printf '%-22s %10s %12s %12s\n' "get large" "$t_get_large" "$(rate "$mb" "$t_get_large")" "-"
small_mb=$(awk -v n="$small_files" 'BEGIN { printf "%.1f", n * 4 / 1024 }')
for row in "cp small:$t_cp_small" "cp+sync small:$t_cpsync_small" "put small:$t_put_small" \
           "get small:$t_get_small"; do
  name=${row%%:*}; secs=${row##*:}
  printf '%-22s %10s %12s %12s\n' "$name" "$secs" "$(rate "$small_mb" "$secs")" \
    "$(rate "$small_files" "$secs")"
done
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
