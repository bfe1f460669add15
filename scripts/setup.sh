#!/usr/bin/env bash
# Installs what Cairn needs to build and test, from Debian packages only.
# Idempotent: prints nothing and changes nothing when all is already there.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libfuse3-dev fuse3 libcpp-httplib-dev libyaml-cpp-dev libsqlite3-dev
  libssl-dev openssl libgtest-dev libgmock-dev libbenchmark-dev
  prometheus bindfs fio util-linux procps
  ccache clang libclang-rt-14-dev nlohmann-json3-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
fi
