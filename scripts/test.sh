#!/usr/bin/env bash
# Everything CI runs, from a fresh clone: set-up, then one stage per claim
# we make about the code, each in its own build directory:
#   1. clang -Wthread-safety -Werror build of every target (build-clang)
#   2. every test under AddressSanitizer + UBSan (build-asan); the
#      integration tests exec that build's binaries (CAIRN_BUILD_DIR), so
#      servers, CLI and FUSE mounters run sanitized too
#   3. the unit tests of the core and the mounter, and the mount e2e tests,
#      under ThreadSanitizer (build-tsan; scripts/tsan.supp says what is
#      suppressed and why)
#   4. every libFuzzer target briefly over its seed corpus (build-fuzz)
#   5. the full suite on the release build (build)
#   6. the cluster tier: real kubelets over containerd, the chart installed
#      from the image the full suite built, pods mounting (docs/e2e.md)
# Each stage prints its wall time. Ends with the full suite's ctest summary;
# exits non-zero at the first stage that fails.
#
#   scripts/test.sh [STAGE...]   STAGE: clang asan tsan fuzz full cluster (default: all)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh

stages=("$@")
((${#stages[@]})) || stages=(clang asan tsan fuzz full cluster)
jobs=$(nproc)
clang=(-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++)

# Runs ctest quietly into a log; prints the summary, or the whole log on failure.
quiet_ctest() {
  local dir=$1; shift
  local log=$dir/ctest.log
  if ! ctest --test-dir "$dir" --output-on-failure -j "$jobs" "$@" >"$log" 2>&1; then
    cat "$log"
    echo "ctest in $dir failed (log: $log)" >&2
    exit 1
  fi
  grep -E 'tests passed|tests failed' "$log"
}

stage_clang() {
  # Debug: the analysis does not depend on optimisation, and -O0 compiles fastest.
  scripts/build.sh build-clang -DCMAKE_BUILD_TYPE=Debug "${clang[@]}" \
    -DCAIRN_THREAD_SAFETY=ON -DCAIRN_WERROR=ON
}

stage_asan() {
  scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DCAIRN_SANITIZE=ON -DCAIRN_WERROR=ON
  # Sanitized children inherit these through the harness's environment.
  # The packaging tests build a container image; nothing C++ runs sanitized.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  LSAN_OPTIONS="suppressions=$root/scripts/lsan.supp:print_suppressions=0" \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    quiet_ctest build-asan --timeout 1200 -LE packaging
}

stage_tsan() {
  scripts/build.sh build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo "${clang[@]}" -DCAIRN_TSAN=ON \
    -DCAIRN_WERROR=ON -- $(scripts/tsan-test-targets.sh)
  TSAN_OPTIONS="suppressions=$root/scripts/tsan.supp:halt_on_error=1:second_deadlock_stack=1" \
    quiet_ctest build-tsan -R "^($(scripts/tsan-test-targets.sh | tr ' ' '|'))\$" --timeout 1200
}

stage_fuzz() {
  local targets
  targets=$(sed -n 's/^cairn_fuzzer(\([a-z_0-9]*\) .*/\1/p' fuzz/CMakeLists.txt | tr '\n' ' ')
  scripts/build.sh build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo "${clang[@]}" -DCAIRN_FUZZ=ON \
    -DCAIRN_WERROR=ON -- $targets
  quiet_ctest build-fuzz -L fuzz
}

stage_full() {
  scripts/build.sh build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCAIRN_WERROR=ON
  ctest --test-dir build --output-on-failure -j "$jobs"
}

stage_cluster() {
  scripts/build.sh build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCAIRN_WERROR=ON
  CAIRN_E2E_CLUSTER=1 ctest --test-dir build --output-on-failure -R '^cluster_e2e_test$'
}

for s in "${stages[@]}"; do
  case $s in
    clang) title="clang -Wthread-safety build" ;;
    asan) title="every test under ASan+UBSan" ;;
    tsan) title="core, mounter and mount tests under TSan" ;;
    fuzz) title="fuzz targets over their corpora" ;;
    full) title="full suite" ;;
    cluster) title="cluster tier on real kubelets" ;;
    *) echo "scripts/test.sh: unknown stage $s" >&2; exit 2 ;;
  esac
  echo "== $title"
  start=$SECONDS
  "stage_$s"
  echo "== $title: $((SECONDS - start)) s"
done
