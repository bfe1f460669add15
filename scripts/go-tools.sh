#!/usr/bin/env bash
# Usage: scripts/go-tools.sh TOOL...   (prints one absolute binary path per TOOL)
#
# Builds the pinned Go test tooling from the Go module proxy with the
# machine's Go, into a cache outside the repository keyed by tool and
# version, so the second run is a cache hit:
#   ${CAIRN_TOOLS_CACHE:-~/.cache/cairn}/tools/<tool>-<version>/<binary>
# The Go module and build caches live beside it (go/mod, go/build).
#
# Tools: csi-sanity etcd kube-apiserver kubectl kubelet kube-controller-manager
#        kube-scheduler helm external-provisioner versitygw
#        snapshot-controller csi-snapshotter
#        snapshot-crds (prints the directory of the VolumeSnapshot CRDs of
#        the same external-snapshotter release, from the module cache)
# Quiet on a cache hit; a build logs to <cache>/tools/<tool>-<version>.log
# and prints that log if it fails. See ../shared/KUBE-TOOLS.md for why each
# is built the way it is.
set -euo pipefail

readonly CSI_TEST_VERSION=v5.6.0
readonly ETCD_VERSION=v3.6.16
readonly KUBE_VERSION=v1.34.4
readonly KUBE_STAGING_VERSION=v0.34.4
readonly HELM_VERSION=v3.22.0
readonly PROVISIONER_VERSION=v5.3.0
readonly VERSITYGW_VERSION=v1.8.0
readonly SNAPSHOTTER_VERSION=v8.2.0

cache=${CAIRN_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cairn}
mkdir -p "$cache/tools" "$cache/go/mod" "$cache/go/build"
export GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/build GOFLAGS=-mod=mod
export CGO_ENABLED=0 GOTOOLCHAIN=local GOPROXY=${GOPROXY:-https://proxy.golang.org}
export PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || { echo "go-tools: no 'go' on PATH (needed to build test tooling)" >&2; exit 1; }

# A lock per cache: two runs building the same tool at once would race.
# Taken only before a build (and the cache checked again under it), so a
# cache hit never waits behind someone else's long build.
locked=false
lock() {
  $locked && return
  exec 9>"$cache/tools/.lock"
  flock 9
  locked=true
}

log=
fail() {
  echo "go-tools: building $1 failed; log $log:" >&2
  tail -n 60 "$log" >&2
  exit 1
}

# go_install NAME VERSION PACKAGE@VERSION: modules without replace directives.
go_install() {
  local name=$1 version=$2 pkg=$3 dir=$cache/tools/$1-$2
  [ -x "$dir/$name" ] || lock
  if [ ! -x "$dir/$name" ]; then
    log=$cache/tools/$name-$version.log
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    GOBIN=$dir.tmp go install -p=2 -trimpath "$pkg" >"$log" 2>&1 || fail "$name"
    mv "$dir.tmp" "$dir"
  fi
  echo "$dir/$name"
}

# wrapper_build NAME VERSION MODULE MODVERSION PKG [LDFLAGS] <<< replace lines:
# a throwaway module that requires MODULE and carries the replace lines that
# its own go.mod would have (go install refuses modules that have them).
wrapper_build() {
  local name=$1 version=$2 module=$3 modversion=$4 pkg=$5 ldflags=${6:-}
  local dir=$cache/tools/$name-$version
  local replaces
  replaces=$(cat)
  [ -x "$dir/$name" ] || lock
  if [ ! -x "$dir/$name" ]; then
    log=$cache/tools/$name-$version.log
    local w=$cache/tools/wrap-$name-$version
    rm -rf "$w" "$dir.tmp" && mkdir -p "$w" "$dir.tmp"
    {
      printf 'module cairnwrap\n\ngo 1.24\n\nrequire %s %s\n\n' "$module" "$modversion"
      printf '%s\n' "$replaces"
    } >"$w/go.mod"
    printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" >"$w/tools.go"
    (cd "$w" && go mod tidy && go build -p=2 -trimpath -ldflags "$ldflags" -o "$dir.tmp/$name" "$pkg") \
      >"$log" 2>&1 || fail "$name"
    mv "$dir.tmp" "$dir"
    rm -rf "$w"
  fi
  echo "$dir/$name"
}

kube_replaces() {
  local m
  for m in api apiextensions-apiserver apimachinery apiserver cli-runtime client-go \
    cloud-provider cluster-bootstrap code-generator component-base component-helpers \
    controller-manager cri-api cri-client csi-translation-lib dynamic-resource-allocation \
    endpointslice externaljwt kms kube-aggregator kube-controller-manager kube-proxy \
    kube-scheduler kubectl kubelet metrics mount-utils pod-security-admission \
    sample-apiserver; do
    printf 'replace k8s.io/%s => k8s.io/%s %s\n' "$m" "$m" "$KUBE_STAGING_VERSION"
  done
}

kube_tool() {
  local name=$1
  local v="-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
  v+=" -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
  v+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34"
  local pkg=k8s.io/kubernetes/cmd/$name
  kube_replaces | wrapper_build "$name" "$KUBE_VERSION" k8s.io/kubernetes "$KUBE_VERSION" "$pkg" "$v"
}

for tool in "$@"; do
  case $tool in
    csi-sanity)
      go_install csi-sanity "$CSI_TEST_VERSION" \
        "github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity@$CSI_TEST_VERSION" ;;
    helm)
      go_install helm "$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" ;;
    versitygw)
      go_install versitygw "$VERSITYGW_VERSION" \
        "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION" ;;
    etcd)
      # etcd's server module replaces its siblings with ../ paths; pin them.
      wrapper_build etcd "$ETCD_VERSION" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" \
        go.etcd.io/etcd/server/v3 <<EOF
replace go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 $ETCD_VERSION
replace go.etcd.io/etcd/client/pkg/v3 => go.etcd.io/etcd/client/pkg/v3 $ETCD_VERSION
replace go.etcd.io/etcd/client/v3 => go.etcd.io/etcd/client/v3 $ETCD_VERSION
replace go.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 $ETCD_VERSION
EOF
      ;;
    kube-apiserver | kubectl | kubelet | kube-controller-manager | kube-scheduler)
      kube_tool "$tool" ;;
    external-provisioner)
      # Its go.mod pins the k8s.io staging modules by replace lines; reuse them.
      mod=github.com/kubernetes-csi/external-provisioner/v5
      modfile=$(cd "$cache" && go mod download -json "$mod@$PROVISIONER_VERSION" |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
      [ -f "$modfile" ] || { echo "go-tools: cannot fetch the go.mod of $mod" >&2; exit 1; }
      grep '^replace ' "$modfile" | wrapper_build external-provisioner "$PROVISIONER_VERSION" \
        "$mod" "$PROVISIONER_VERSION" "$mod/cmd/csi-provisioner"
      ;;
    snapshot-controller | csi-snapshotter)
      # Like the provisioner; its go.mod also replaces the client module
      # with ./client, which is a module of its own at the same version.
      mod=github.com/kubernetes-csi/external-snapshotter/v8
      modfile=$(cd "$cache" && go mod download -json "$mod@$SNAPSHOTTER_VERSION" |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
      [ -f "$modfile" ] || { echo "go-tools: cannot fetch the go.mod of $mod" >&2; exit 1; }
      { grep '^replace ' "$modfile" | grep -v ' => \./'
        echo "replace github.com/kubernetes-csi/external-snapshotter/client/v8 => github.com/kubernetes-csi/external-snapshotter/client/v8 $SNAPSHOTTER_VERSION"
      } | wrapper_build "$tool" "$SNAPSHOTTER_VERSION" "$mod" "$SNAPSHOTTER_VERSION" "$mod/cmd/$tool"
      ;;
    snapshot-crds)
      dir=$(cd "$cache" && go mod download -json \
        "github.com/kubernetes-csi/external-snapshotter/client/v8@$SNAPSHOTTER_VERSION" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
      [ -f "$dir/config/crd/snapshot.storage.k8s.io_volumesnapshots.yaml" ] ||
        { echo "go-tools: no VolumeSnapshot CRDs in $dir" >&2; exit 1; }
      echo "$dir/config/crd"
      ;;
    *) echo "go-tools: unknown tool '$tool'" >&2; exit 2 ;;
  esac
done
