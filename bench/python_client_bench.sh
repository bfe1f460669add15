#!/usr/bin/env bash
# The Python client's upload and download against the CLI's `put`/`get` of
# the same file on the same server, in the same run. Run by hand:
#
#   bench/python_client_bench.sh [BUILD_DIR] [SIZE_MB]   (defaults: build, 256)
#
# Prints seconds and MB/s for each and the ratios python/cli (1.0: as
# fast as the CLI; the CLI seals on 4 x cores worker threads, the Python
# client on one). Pages are warm (the source file is read once first), so
# the figures compare the clients, not the disk.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
size_mb=${2:-256}
venv=$("$root/scripts/python-env.sh")
"$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps \
  "$root/python" >/dev/null
rm -rf "$root/python/build" "$root/python/"*.egg-info
work=$(mktemp -d)
server_pid=
trap '[ -n "$server_pid" ] && kill $server_pid 2>/dev/null; rm -rf "$work"' EXIT
port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$build/cli/cairn" server --data "$work/data" --listen "127.0.0.1:$port" --metrics-listen "" \
  2>"$work/server.log" &
server_pid=$!
export CAIRN_SERVER=127.0.0.1:$port
"$build/cli/cairn" volume create --server-wait 30 bench-cli >/dev/null
"$build/cli/cairn" volume create bench-py >/dev/null
head -c $((size_mb << 20)) /dev/urandom >"$work/src.bin"
cat "$work/src.bin" >/dev/null

now() { date +%s.%N; }
t0=$(now); "$build/cli/cairn" volume put bench-cli "$work/src.bin" /f.bin >/dev/null; t1=$(now)
"$venv/bin/python" - "$work/src.bin" <<'PY'
import sys, cairn
vol = cairn.Volume.from_name("bench-py")
with vol.batch_upload() as b:
    b.put_file(sys.argv[1], "/f.bin")
PY
t2=$(now)
"$build/cli/cairn" volume get bench-cli /f.bin "$work/cli.out" >/dev/null; t3=$(now)
"$venv/bin/python" - "$work/py.out" <<'PY'
import sys, cairn
with open(sys.argv[1], "wb") as f:
    cairn.Volume.from_name("bench-py").read_file_into_fileobj("/f.bin", f)
PY
t4=$(now)
cmp "$work/src.bin" "$work/cli.out"
cmp "$work/src.bin" "$work/py.out"
awk -v mb="$size_mb" -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v e="$t4" 'BEGIN {
  cp = b - a; pp = c - b; cg = d - c; pg = e - d
  printf "upload   cli put %6.2f s %7.1f MB/s   python batch_upload %6.2f s %7.1f MB/s   ratio %.2f\n", cp, mb / cp, pp, mb / pp, cp / pp
  printf "download cli get %6.2f s %7.1f MB/s   python read_file    %6.2f s %7.1f MB/s   ratio %.2f\n", cg, mb / cg, pg, mb / pg, cg / pg
}'
