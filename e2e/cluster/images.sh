#!/usr/bin/env bash
# Usage: e2e/cluster/images.sh OUT_DIR
#
# The cluster tier's own images, built here with buildah because no registry
# is reachable, and exported as OCI archives for `ctr images import`:
#   localhost/cairn-e2e/pause:<key>       pod sandbox (pause.c, static)
#   localhost/cairn-e2e/workload:<key>    busybox-static + setxattr.c
#   localhost/cairn-e2e/csi-provisioner:v5.3.0  the external-provisioner
#       binary from scripts/go-tools.sh (static, CGO off) on scratch
# Archives are cached under ${CAIRN_IMAGE_CACHE:-~/.cache/cairn/images}/cluster,
# keyed by a hash of their inputs, so a warm run only re-exports nothing.
# Prints "NAME=IMAGE ARCHIVE" lines for pause, workload and provisioner.
# Exit 1 when a tool (buildah, cc with a static libc, busybox-static) is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${CAIRN_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cairn/images}/cluster
mkdir -p "$cache"
die() { echo "cluster-images: $*" >&2; exit 1; }
for t in buildah cc; do command -v "$t" >/dev/null || die "'$t' is missing"; done
[ -x /bin/busybox ] && file_is_static=$(ldd /bin/busybox 2>&1 || true)
grep -q 'not a dynamic' <<<"${file_is_static:-}" ||
  die "/bin/busybox is missing or not static (apt-get install busybox-static)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# build NAME KEY DIR CMD...: commits DIR's contents (as /) from scratch with
# entrypoint CMD and exports it, unless the archive for KEY exists.
build() {
  local name=$1 key=$2 dir=$3
  shift 3
  local image=localhost/cairn-e2e/$name:$key archive=$cache/$name-$key.oci.tar
  if [ ! -s "$archive" ]; then
    local c
    c=$(buildah from scratch)
    buildah copy --quiet "$c" "$dir" / >/dev/null
    local ep
    ep=$(printf '"%s",' "$@")
    buildah config --entrypoint "[${ep%,}]" --cmd '' "$c"
    buildah commit --quiet --rm "$c" "$image" >/dev/null
    buildah push --quiet "$image" "oci-archive:$archive.tmp:$image" >/dev/null
    buildah rmi "$image" >/dev/null 2>&1 || true
    mv "$archive.tmp" "$archive"
  fi
  echo "$name=$image $archive"
}

# The pause program.
key=$(sha256sum "$root/e2e/cluster/pause.c" | cut -c1-12)
mkdir -p "$work/pause"
cc -static -Os -Wall -Werror -o "$work/pause/pause" "$root/e2e/cluster/pause.c"
build pause "$key" "$work/pause" /pause

# busybox and setxattr; /tmp for shells, /etc/passwd for id lookups.
key=$( { sha256sum "$root/e2e/cluster/setxattr.c" /bin/busybox; echo r1; } | sha256sum | cut -c1-12)
w=$work/workload
mkdir -p "$w/bin" "$w/tmp" "$w/etc"
chmod 1777 "$w/tmp"
cp /bin/busybox "$w/bin/busybox"
for a in $("$w/bin/busybox" --list); do [ -e "$w/bin/$a" ] || ln -s busybox "$w/bin/$a"; done
cc -static -Os -Wall -Werror -o "$w/bin/setxattr" "$root/e2e/cluster/setxattr.c"
printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$w/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' >"$w/etc/group"
build workload "$key" "$w" /bin/sh

# The provisioner sidecar from the cached binary.
prov=$("$root/scripts/go-tools.sh" external-provisioner)
mkdir -p "$work/prov"
cp "$prov" "$work/prov/csi-provisioner"
build csi-provisioner v5.3.0 "$work/prov" /csi-provisioner
