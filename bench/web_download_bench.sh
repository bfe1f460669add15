#!/usr/bin/env bash
# Download throughput of the file browser (curl against /ui/raw, one HTTP
# stream, the server decrypting) against `cairn volume get` (the client
# fetching sealed chunks in parallel and decrypting itself) of the same
# file from the same server, in the same run. Run by hand:
#
#   bench/web_download_bench.sh [BUILD_DIR]      (default: build)
#
# Env: SIZE_MB (default 1024), ROUNDS (default 3; the two are interleaved
# each round and the median of each is reported), BENCH_DIR (scratch,
# default a new dir under $TMPDIR or /tmp). Both write to a file on the
# same filesystem; the page cache is left warm (the server reads its blobs
# from it in both cases), so the figure compares the two read paths, not
# the disk. Prints MB/s of each and the ratio web / get.
set -euo pipefail
shopt -s inherit_errexit

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
cairn=$build/cli/cairn
[[ -x $cairn ]] || { echo "no cairn binary at $cairn (build first)" >&2; exit 2; }
command -v curl >/dev/null || { echo "needs curl (scripts/setup.sh)" >&2; exit 2; }
size_mb=${SIZE_MB:-1024}
rounds=${ROUNDS:-3}
work=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/cairn-webbench-XXXXXX")}
mkdir -p "$work"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
http_port=$(free_port)
token=bench-$RANDOM$RANDOM
printf '%s' "$token" >"$work/token"
export CAIRN_SERVER=127.0.0.1:$port CAIRN_TOKEN_FILE=$work/token
unset CAIRN_TOKEN CAIRN_NAMESPACE
"$cairn" server --data "$work/data" --listen "$CAIRN_SERVER" --token-file "$work/token" \
  --metrics-listen "127.0.0.1:$http_port" --gc-interval 0 2>"$work/server.log" &
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
secs_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
median() { sort -n | sed -n "$(( (rounds + 1) / 2 ))p"; }

echo "== ${size_mb} MiB of random data (in $work)"
head -c "$((size_mb << 20))" /dev/urandom >"$work/big.bin"
want=$(sha256sum "$work/big.bin" | cut -d' ' -f1)
"$cairn" volume create bench >/dev/null
"$cairn" volume put -q bench "$work/big.bin" /big.bin
rm -f "$work/big.bin"

web_times=() get_times=()
for r in $(seq "$rounds"); do
  rm -f "$work/web.bin" "$work/get.bin"
  t=$(now)
  curl -sS --fail -H "Authorization: Bearer $token" -o "$work/web.bin" \
    "http://127.0.0.1:$http_port/ui/raw/default/bench/big.bin"
  web_times+=("$(secs_since "$t")")
  t=$(now)
  "$cairn" volume get -q bench /big.bin "$work/get.bin"
  get_times+=("$(secs_since "$t")")
  for f in web get; do
    got=$(sha256sum "$work/$f.bin" | cut -d' ' -f1)
    [[ $got == "$want" ]] || { echo "round $r: $f download differs" >&2; exit 1; }
  done
  echo "round $r: web ${web_times[-1]} s, get ${get_times[-1]} s"
done
web=$(printf '%s\n' "${web_times[@]}" | median)
get=$(printf '%s\n' "${get_times[@]}" | median)
awk -v mb="$size_mb" -v w="$web" -v g="$get" 'BEGIN {
  printf "web (curl /ui/raw): %.0f MB/s (%.2f s)\n", mb * 1.048576 / w, w
  printf "cairn volume get:   %.0f MB/s (%.2f s)\n", mb * 1.048576 / g, g
  printf "ratio web/get:      %.2f\n", g / w
}'
