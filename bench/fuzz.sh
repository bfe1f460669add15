#!/usr/bin/env bash
# Runs every libFuzzer target (fuzz/) for a fixed number of executions and
# prints, per target, executions, wall time, corpus growth and findings.
# By hand, not CI (CI replays the corpora briefly through ctest -L fuzz).
#
#   bench/fuzz.sh [-runs=N] [-max_total_time=SECONDS] [TARGET...]
#
# Defaults: 10,000,000 executions per target (no time cap), every target,
# one process at a time.
# Builds build-fuzz (clang, -fsanitize=fuzzer,address,undefined). New inputs
# go to build-fuzz/fuzz/work/TARGET/corpus; crashes, leaks, timeouts and
# OOMs to build-fuzz/fuzz/work/TARGET/artifacts/ (a finding: minimise it
# with -minimize_crash=1, fix it, and keep it in fuzz/corpus/TARGET/ as a
# regression input). Exits non-zero if any target found something.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=10000000
time_cap=0
targets=()
for a in "$@"; do
  case $a in
    -runs=*) runs=${a#-runs=} ;;
    -max_total_time=*) time_cap=${a#-max_total_time=} ;;
    -*) echo "bench/fuzz.sh: unknown option $a" >&2; exit 2 ;;
    *) targets+=("$a") ;;
  esac
done
if ((${#targets[@]} == 0)); then
  mapfile -t targets < <(sed -n 's/^cairn_fuzzer(\([a-z_0-9]*\) .*/\1/p' fuzz/CMakeLists.txt)
fi
build=build-fuzz
scripts/build.sh "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DCAIRN_FUZZ=ON -DCAIRN_WERROR=ON -- "${targets[@]}"

failed=0
printf '%-18s %12s %9s %10s %8s  %s\n' target executions seconds exec/s corpus findings
for t in "${targets[@]}"; do
  work=$build/fuzz/work/$t
  mkdir -p "$work/corpus" "$work/artifacts"
  before=$(find "$work/artifacts" -type f | wc -l)
  log=$work/bench.log
  start=$(date +%s)
  status=0
  "$build/fuzz/$t" -runs="$runs" -max_total_time="$time_cap" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "$work/corpus" "fuzz/corpus/$t" >"$log" 2>&1 || status=$?
  end=$(date +%s)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corpus=$(find "$work/corpus" "fuzz/corpus/$t" -type f | wc -l)
  found=$(($(find "$work/artifacts" -type f | wc -l) - before))
  what=none
  if ((status != 0 || found > 0)); then
    failed=1
    what="$found new artifact(s), exit $status: $(grep -m1 -E 'ERROR|property violated|SUMMARY' "$log" || echo "see $log")"
  fi
  printf '%-18s %12s %9s %10s %8s  %s\n' "$t" "${execs:-?}" "$((end - start))" \
    "${rate:-?}" "$corpus" "$what"
done
exit "$failed"
