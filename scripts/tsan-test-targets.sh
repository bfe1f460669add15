#!/usr/bin/env bash
# Prints the tests the ThreadSanitizer stage builds and runs: the core's and
# the mounter's unit tests and the FUSE mount tests (the mounter is where
# threads meet: FUSE workers, background commits, cache writer/evictor,
# prefetch). The crash test is left out (SIGKILL loops under TSan prove
# nothing about races).
root=$(cd "$(dirname "$0")/.." && pwd)
{
  grep -h '^cairn_test(' "$root/core/CMakeLists.txt" "$root/mounter/CMakeLists.txt" |
    grep -v 'LABELS crash' | sed 's/^cairn_test(\([a-z_0-9]*\) .*/\1/'
  # e2e/CMakeLists.txt makes mount_PART_e2e_test of each e2e/mount_PART_test.cc.
  for f in "$root"/e2e/mount_*_test.cc; do
    part=${f##*/mount_}
    echo "mount_${part%_test.cc}_e2e_test"
  done
} | tr '\n' ' '
