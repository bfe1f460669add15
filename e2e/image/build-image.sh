#!/usr/bin/env bash
# Usage: e2e/image/build-image.sh [--base-only] [OCI_ARCHIVE]
#
# Builds the Cairn image from the repository's Dockerfile for real, without a
# Docker daemon or a registry:
#   1. installs buildah, runc and debootstrap if missing (Debian packages);
#   2. makes a local debian:bookworm-slim base with debootstrap, cached
#      outside the repository (the rootfs tarball under
#      ${CAIRN_IMAGE_CACHE:-~/.cache/cairn/images}, keyed by suite and
#      BASE_REVISION; the committed image in buildah's own storage);
#   3. `buildah bud`s the Dockerfile (the shared ccache is mounted into the
#      build stage so a warm build reuses the host's compilations);
#   4. runs every binary's --help inside the result, checks that every shared
#      library resolves and that the Dockerfile's runtime package list is
#      exactly what the binaries need (e2e/image/runtime-packages.sh), and
#      runs the control plane, the CLI and a FUSE mount in it
#      (e2e/image/smoke.sh);
#   5. exports an OCI archive for the cluster tier (default
#      ${CAIRN_IMAGE_CACHE}/cairn-IMAGE_TAG.oci.tar), printed on the last line.
# --base-only stops after step 2 (makes or reuses the cached base).
# Environment: CAIRN_IMAGE_NO_CACHE=1 rebuilds every layer (a cold build
# apart from the base and ccache; point CCACHE_DIR at an empty directory for
# a fully cold one). IMAGE (default localhost/cairn:<project version>).
# Exit codes: 0 built and checked, 1 a step failed (its output is shown),
# 77 not root outside CI (skipped).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

readonly SUITE=bookworm
# Bump to rebuild the cached base (e.g. for a Debian point release).
readonly BASE_REVISION=2
readonly MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
readonly BASE_IMAGE=docker.io/library/debian:$SUITE-slim
base_only=false
if [ "${1:-}" = --base-only ]; then base_only=true; shift; fi
version=$(sed -n 's/^project(cairn VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
# The chart's default image is localhost/cairn:<appVersion>, the same name.
image=${IMAGE:-localhost/cairn:$version}
cache=${CAIRN_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cairn/images}
archive=${1:-$cache/cairn-${image##*:}.oci.tar}
ccache_dir=${CCACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cairn/ccache}
mkdir -p "$cache" "$ccache_dir"

log() { printf 'build-image: %s\n' "$*" >&2; }
now() { date +%s; }

if [ "$(id -u)" -ne 0 ]; then
  # debootstrap and buildah's storage need root. CI runs as root: there a
  # missing privilege is a failure, elsewhere a skip (ctest: 77).
  log "needs root (debootstrap, buildah storage)"
  [ "${CI:-}" = true ] && exit 1
  exit 77
fi

need=()
for p in buildah runc debootstrap; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${need[@]}" >/dev/null
fi

# --- 1. the base image -------------------------------------------------------
key=$SUITE-r$BASE_REVISION
rootfs_tar=$cache/debian-$key-rootfs.tar
base_label=dev.cairn.base-key
t0=$(now)
if [ "$(buildah inspect --type image --format "{{index .ImageAnnotations \"$base_label\"}}" \
  "$BASE_IMAGE" 2>/dev/null || true)" != "$key" ]; then
  if [ ! -s "$rootfs_tar" ]; then
    log "debootstrap $SUITE (minbase) from $MIRROR"
    work=$(mktemp -d "$cache/rootfs.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    if ! debootstrap --variant=minbase "$SUITE" "$work/root" "$MIRROR" >"$work/debootstrap.log" 2>&1; then
      tail -n 40 "$work/debootstrap.log" >&2
      exit 1
    fi
    # What the upstream -slim image does: no docs/man/locales from later
    # installs, no recommends, the same apt sources, an empty apt cache.
    cat >"$work/root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    printf 'APT::Install-Recommends "false";\n' >"$work/root/etc/apt/apt.conf.d/99no-recommends"
    # Downloaded .debs are deleted after each install, as upstream does.
    cat >"$work/root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    rm -f "$work/root/etc/apt/sources.list"
    cat >"$work/root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    rm -rf "$work/root/var/lib/apt/lists/"* "$work/root/var/cache/apt/"*.bin \
      "$work/root/var/cache/apt/archives/"*.deb "$work/root/usr/share/doc" \
      "$work/root/usr/share/man" "$work/root/usr/share/info" "$work/root/usr/share/locale/"*
    tar -C "$work/root" --numeric-owner -cf "$rootfs_tar.tmp" .
    mv "$rootfs_tar.tmp" "$rootfs_tar"
    rm -rf "$work"
    trap - EXIT
  fi
  log "committing base $BASE_IMAGE from $(basename "$rootfs_tar")"
  # buildah 1.28 has no `import`: a scratch container plus the rootfs.
  ctr=$(buildah from scratch)
  buildah add --quiet "$ctr" "$rootfs_tar" / >/dev/null
  buildah config --cmd /bin/bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --annotation "$base_label=$key" "$ctr"
  buildah commit --quiet --rm "$ctr" "$BASE_IMAGE" >/dev/null
fi
t1=$(now)
if $base_only; then
  log "base $BASE_IMAGE ($key) ready in $((t1 - t0)) s"
  exit 0
fi

# --- 2. the Cairn image ------------------------------------------------------
old_id=$(buildah images --noheading --format '{{.ID}}' "$image" 2>/dev/null | head -n 1 || true)
stage_images() {
  buildah images --noheading --filter dangling=true --filter label=dev.cairn.stage=build \
    --format '{{.ID}}' 2>/dev/null || true
}
old_stages=$(stage_images)
log "buildah bud -> $image"
tag=${image##*/}
bud_log=$cache/bud-${tag//:/-}.log
cache_flag=--layers
[ "${CAIRN_IMAGE_NO_CACHE:-}" = 1 ] && cache_flag=--no-cache
if ! buildah bud --pull=false "$cache_flag" -f Dockerfile -t "$image" \
  -v "$ccache_dir:/root/.cache/cairn/ccache" . >"$bud_log" 2>&1; then
  tail -n 60 "$bud_log" >&2
  log "buildah bud failed; full log $bud_log"
  exit 1
fi
t2=$(now)
# The image this build replaced is untagged now: drop it, and the build
# stages of earlier builds. The newest build stage stays as the layer cache.
new_id=$(buildah images --noheading --format '{{.ID}}' "$image" | head -n 1)
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then buildah rmi "$old_id" >/dev/null 2>&1 || true; fi
new_stages=$(stage_images)
for id in $old_stages; do
  grep -qx "$id" <<<"$new_stages" || continue
  # Still the cache of this build if bud reused it (same ID as the newest).
  [ "$id" = "$(head -n 1 <<<"$new_stages")" ] && continue
  buildah rmi "$id" >/dev/null 2>&1 || true
done

# --- 3. check what is inside -------------------------------------------------
ctr=$(buildah from --pull=false -q "$image")
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
for b in $(buildah run "$ctr" -- ls /usr/local/bin); do
  # As the image's default (non-root) user: what the control plane runs as.
  # cairn-mount answers --help with its usage and exit code 2; anything
  # else (127: a library is missing, a crash) fails.
  rc=0
  out=$(buildah run "$ctr" -- "$b" --help 2>&1) || rc=$?
  if { [ "$rc" != 0 ] && [ "$rc" != 2 ]; } || ! grep -qi usage <<<"$out"; then
    printf '%s\n' "$out" >&2
    log "$b --help failed inside $image (exit $rc)"
    exit 1
  fi
  log "$b --help: $(grep -im1 usage <<<"$out")"
done
log "as $(buildah run "$ctr" -- id)"
buildah rm "$ctr" >/dev/null
trap - EXIT
e2e/image/runtime-packages.sh --check-image "$image"
e2e/image/smoke.sh "$image" >&2

# --- 4. export ---------------------------------------------------------------
rm -f "$archive"
buildah push --quiet "$image" "oci-archive:$archive:$image" >/dev/null
size=$(buildah images --format '{{.Size}}' "$image" | head -n 1)
log "base $((t1 - t0)) s, image build $((t2 - t1)) s, image $size, archive $(du -m "$archive" | cut -f1) MiB"
echo "$archive"
