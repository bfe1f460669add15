#!/usr/bin/env bash
# Usage: e2e/image/smoke.sh IMAGE
#
# Runs Cairn inside a built image (buildah, as root on the host):
#   1. as the image's default user (non-root): cairn-operator on loopback,
#      then the CLI creates a volume, uploads a file and reads it back;
#   2. as root with /dev/fuse and CAP_SYS_ADMIN (what the CSI node plugin
#      gets): the same, plus a FUSE mount that reads the file, writes one,
#      commits with `sync`, and the CLI sees the commit.
# Exit codes: 0 both passed, 1 a step failed (its output is shown).
# The script copies itself into each container and runs there with --inside.
set -euo pipefail

if [ "${1:-}" = --inside ]; then
  mode=$2
  d=$(mktemp -d)
  cairn-operator --data "$d/data" --listen 127.0.0.1:17420 --metrics-listen 127.0.0.1:17421 \
    >"$d/operator.log" 2>&1 &
  op=$!
  trap 'kill $op 2>/dev/null || true; cat "$d/operator.log" >&2' ERR
  export CAIRN_SERVER=127.0.0.1:17420
  for _ in $(seq 100); do cairn volume list >/dev/null 2>&1 && break; sleep 0.1; done
  cairn volume create smoke >/dev/null
  echo "hello from the image" >"$d/hello.txt"
  cairn volume put smoke "$d/hello.txt" /hello.txt >/dev/null
  [ "$(cairn volume get smoke /hello.txt -)" = "hello from the image" ]
  echo "$(id -un): control plane and CLI ok"
  if [ "$mode" = mount ]; then
    mkdir -p "$d/mnt"
    cairn mount smoke "$d/mnt" >"$d/mount.log" 2>&1 &
    mounter=$!
    for _ in $(seq 100); do [ -e "$d/mnt/hello.txt" ] && break; sleep 0.1; done
    [ "$(cat "$d/mnt/hello.txt")" = "hello from the image" ]
    echo "written through FUSE" >"$d/mnt/fuse.txt"
    sync "$d/mnt"
    [ "$(cairn volume get smoke /fuse.txt -)" = "written through FUSE" ]
    fusermount3 -u "$d/mnt"
    wait "$mounter"
    echo "$(id -un): FUSE mount, commit with sync, unmount ok"
  fi
  kill "$op"
  wait "$op" || true
  exit 0
fi

image=${1:?usage: e2e/image/smoke.sh IMAGE}
self=$(readlink -f "$0")
run_in() {
  local mode=$1; shift
  local ctr rc=0
  ctr=$(buildah from --pull=false -q "$@" "$image")
  buildah copy -q "$ctr" "$self" /tmp/smoke.sh >/dev/null
  if [ "$mode" = mount ]; then
    timeout 120 buildah run --user 0 "$ctr" -- bash /tmp/smoke.sh --inside mount || rc=$?
  else
    timeout 120 buildah run "$ctr" -- bash /tmp/smoke.sh --inside control || rc=$?
  fi
  buildah rm "$ctr" >/dev/null
  [ "$rc" = 0 ] || { echo "smoke: $mode phase failed in $image (exit $rc)" >&2; exit 1; }
}
run_in control
run_in mount --device /dev/fuse --cap-add CAP_SYS_ADMIN
