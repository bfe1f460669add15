#!/usr/bin/env bash
# Usage: scripts/setup.sh [--build-only]
# Installs what Cairn needs to build and test, from Debian packages only.
# --build-only installs just what compiling the tree needs (the image's build
# stage uses it; test tools such as prometheus and clang stay out).
# Idempotent: prints nothing and changes nothing when all is already there.
set -euo pipefail

build_packages=(
  build-essential cmake ninja-build pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libfuse3-dev libcpp-httplib-dev libyaml-cpp-dev libsqlite3-dev
  libssl-dev libgtest-dev libgmock-dev libbenchmark-dev
  ccache nlohmann-json3-dev libpq-dev
)
test_packages=(
  fuse3 openssl prometheus bindfs fio util-linux procps postgresql python3 python3-venv
  clang libclang-rt-14-dev
  buildah debootstrap containerd runc containernetworking-plugins busybox-static iproute2
  chromium nodejs curl
)
case ${1:-} in
  "") packages=("${build_packages[@]}" "${test_packages[@]}") ;;
  --build-only) packages=("${build_packages[@]}") ;;
  *) echo "usage: scripts/setup.sh [--build-only]" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# npm: a nodejs that bundles it (as NodeSource's does, which conflicts with
# Debian's npm package) needs nothing more; Debian's nodejs needs the package.
if [ -z "${1:-}" ] && ! command -v npm >/dev/null; then
  missing+=(npm)
fi
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  # Another set-up may be installing at the same time: wait for its lock.
  "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get -o DPkg::Lock::Timeout=600 \
    install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
