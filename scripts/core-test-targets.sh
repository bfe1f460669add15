#!/usr/bin/env bash
# Prints the ninja targets of the core's unit and model tests (the
# sanitizer build builds only these; the crash test is left to the full
# build because SIGKILL loops under ASan prove nothing extra).
root=$(cd "$(dirname "$0")/.." && pwd)
grep '^cairn_test(' "$root/core/CMakeLists.txt" | grep -v 'LABELS crash' |
  sed 's/^cairn_test(\([a-z_0-9]*\) .*/\1/' | tr '\n' ' '
