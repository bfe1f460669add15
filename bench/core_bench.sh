#!/usr/bin/env bash
# Storage-core benchmark (issue 2). By hand, not CI.
#
#   bench/core_bench.sh [BUILD_DIR]
#
# 1. Commit latency of a one-file change as the volume grows (1k, 10k, 100k,
#    1M files, built through the bulk path) and the ratio latency(1M) /
#    latency(1k) against the target of <= 1.5; bulk ingest (files/s, MB/s).
#    The data directory is WORK (default /var/tmp/cairn-core-bench), on disk.
# 2. Sealing throughput per core (Seal = AES-256-GCM, Address = HMAC-SHA-256,
#    on 4 MiB chunks, one thread) beside `openssl speed` for aes-256-gcm and
#    sha256 on the same machine in the same run, as ratios.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
work=${WORK:-/var/tmp/cairn-core-bench}

ninja -C "$build" cairn_commit_bench cairn_seal_bench >/dev/null

echo "== commit latency and ingest (data directory under $work)"
rm -rf "$work"; mkdir -p "$work"
"$build/bench/cairn_commit_bench" --dir="$work"
rm -rf "$work"

echo
echo "== sealing throughput, one core, 4 MiB chunks"
json=$(mktemp)
trap 'rm -f "$json"' EXIT
"$build/bench/cairn_seal_bench" --benchmark_filter='BM_(Seal|Open|Address|Sha256)$' --benchmark_format=json \
  --benchmark_min_time=1 >"$json" 2>/dev/null
# openssl speed prints bytes/s in "k" (1000 bytes) per block size; take 16 KiB.
ossl() {
  openssl speed -elapsed -seconds 2 -evp "$1" 2>/dev/null |
    awk -v alg="$1" 'tolower($1) == tolower(alg) || $1 == "AES-256-GCM" { v=$NF } END { sub(/k$/, "", v); printf "%.0f", v * 1000 / 1e6 }'
}
gcm=$(ossl aes-256-gcm)
sha=$(ossl sha256)
python3 - "$json" "$gcm" "$sha" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
gcm, sha = float(sys.argv[2]), float(sys.argv[3])
rates = {}
for b in data["benchmarks"]:
    rate = b.get("bytes_per_second")
    if rate:
        rates[b["name"]] = rate / 1e6
def find(word):
    for name, rate in rates.items():
        if word.lower() in name.lower():
            return name, rate
    return None, None
print(f"{'operation':<34}{'MB/s':>10}{'openssl MB/s':>14}{'ratio':>8}")
for word, base, label in (("Seal", gcm, "aes-256-gcm"), ("Open", gcm, "aes-256-gcm"),
                          ("Address", sha, "sha256"), ("Sha256", sha, "sha256")):
    name, rate = find(word)
    if name is None:
        print(f"{word:<34}{'missing':>10}")
        continue
    print(f"{name:<34}{rate:>10.0f}{base:>14.0f}{rate / base:>8.2f}   (vs {label})")
PY
