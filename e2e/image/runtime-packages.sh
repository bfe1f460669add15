#!/usr/bin/env bash
# Usage: e2e/image/runtime-packages.sh --derive BINARY...
#        e2e/image/runtime-packages.sh --check-image IMAGE
#
# The image's runtime stage installs only the Debian packages that own the
# shared libraries the binaries load (ldd, then dpkg -S), pinned in the
# Dockerfile as ARG RUNTIME_LIBRARIES.
#   --derive       prints that package list for BINARY... on this machine.
#   --check-image  mounts IMAGE (buildah, as root), fails if any library of
#                  /usr/local/bin/* does not resolve inside it, or if the list
#                  derived inside the image differs from the Dockerfile's.
# Packages every Debian base already has (libc6, libgcc-s1, libstdc++6) are
# left out of the list: the base image provides them.
# Exit codes: 0 ok, 1 mismatch or unresolved library, 2 usage.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
readonly BASE_PACKAGES='^(libc6|libgcc-s1|libstdc\+\+6)$'

# derive CHROOT BINARY...: owning packages of the binaries' libraries, sorted.
derive() {
  local chroot=$1; shift
  local run=()
  [ -z "$chroot" ] || run=(chroot "$chroot")
  local libs
  libs=$("${run[@]}" ldd "$@" | awk '/=> \// {print $3}' | sort -u)
  [ -n "$libs" ] || { echo "runtime-packages: ldd found no libraries" >&2; return 1; }
  local lib real pkgs=()
  for lib in $libs; do
    # dpkg knows the path the package shipped (/lib/... vs /usr/lib/...).
    real=$("${run[@]}" readlink -f "$lib")
    pkg=$("${run[@]}" dpkg -S "$lib" 2>/dev/null || "${run[@]}" dpkg -S "$real" 2>/dev/null ||
      "${run[@]}" dpkg -S "${real#/usr}" 2>/dev/null) || {
      echo "runtime-packages: no package owns $lib" >&2
      return 1
    }
    pkgs+=("${pkg%%:*}")
  done
  printf '%s\n' "${pkgs[@]}" | sort -u | grep -Ev "$BASE_PACKAGES" || true
}

dockerfile_list() {
  sed -n '/^ARG RUNTIME_LIBRARIES="/,/"/p' "$root/Dockerfile" |
    sed -e 's/^ARG RUNTIME_LIBRARIES="//' -e 's/["\\]//g' | tr ' ' '\n' | grep -v '^$' | sort -u
}

case ${1:-} in
  --derive)
    shift
    (($#)) || { echo "usage: $0 --derive BINARY..." >&2; exit 2; }
    derive "" "$@"
    ;;
  --check-image)
    image=${2:?usage: $0 --check-image IMAGE}
    ctr=$(buildah from --pull=false -q "$image")
    trap 'buildah umount "$ctr" >/dev/null 2>&1 || true; buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
    mnt=$(buildah mount "$ctr")
    mapfile -t bins < <(cd "$mnt" && ls usr/local/bin/* | sed 's|^|/|')
    ((${#bins[@]})) || { echo "runtime-packages: no binaries in $image" >&2; exit 1; }
    if chroot "$mnt" ldd "${bins[@]}" | grep 'not found'; then
      echo "runtime-packages: unresolved libraries in $image (above)" >&2
      exit 1
    fi
    want=$(dockerfile_list)
    have=$(derive "$mnt" "${bins[@]}")
    if [ "$want" != "$have" ]; then
      echo "runtime-packages: Dockerfile RUNTIME_LIBRARIES differs from what the binaries load:" >&2
      diff <(echo "$want") <(echo "$have") | sed 's/^/  /' >&2 || true
      echo "  (< only in the Dockerfile, > needed but missing)" >&2
      exit 1
    fi
    echo "runtime-packages: ${#bins[@]} binaries, $(echo "$have" | wc -l) packages, all resolved" >&2
    ;;
  *) echo "usage: $0 --derive BINARY... | --check-image IMAGE" >&2; exit 2 ;;
esac
