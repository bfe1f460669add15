#!/usr/bin/env bash
# Everything CI runs, from a fresh clone: set-up, one build, every test tier
# (unit, model, crash, integration with real processes and FUSE mounts),
# plus the core's unit tests under AddressSanitizer + UBSan.
# Ends with ctest's summary; exits non-zero if anything fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh

jobs=$(nproc)
# Sanitizers first over the storage core (the code that must never corrupt
# data); the full suite runs last so its summary closes the output.
echo "== storage core under ASan+UBSan"
core_tests=$(scripts/core-test-targets.sh)
scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DCAIRN_SANITIZE=ON -DCAIRN_WERROR=ON \
  -- $core_tests
asan_log=build-asan/ctest.log
if ! ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan -R "^($(echo $core_tests | tr ' ' '|'))\$" \
    --output-on-failure -j "$jobs" --timeout 900 >"$asan_log" 2>&1; then
  cat "$asan_log"
  exit 1
fi
grep -E 'tests passed|tests failed' "$asan_log"

echo "== full suite"
scripts/build.sh build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCAIRN_WERROR=ON
ctest --test-dir build --output-on-failure -j "$jobs"
