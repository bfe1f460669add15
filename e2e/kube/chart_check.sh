#!/usr/bin/env bash
# Usage: e2e/kube/chart_check.sh KUBECONFIG
#
# Checks charts/cairn, manifests/ and examples/ against a real API server
# (the kube tier's etcd + kube-apiserver; no kubelet or controllers needed):
#   1. helm lint --strict;
#   2. the CRDs, `helm template` output (defaults, and with snapshots on
#      over the external-snapshotter's CRDs), manifests/ and examples/ pass
#      `kubectl apply --dry-run=server` (every object accepted);
#   3. helm install; every object of the release exists;
#   4. helm upgrade with changed values keeps the master key and API token
#      bytes;
#   5. helm uninstall removes the workloads and keeps the master key, token,
#      data claim and the CSI controller's state claim; a second install
#      under the same name takes them over unchanged;
#   6. bad values are refused before anything reaches the cluster.
# Works in a fresh namespace per run, cairn-chart-check-<random> (deleted at
# the end, also on failure; without a controller-manager it stays
# Terminating, which is why the name is fresh).
# The VolumeSnapshot CRDs come from scripts/go-tools.sh snapshot-crds; they
# are left in place if the cluster had them, else removed at the end.
# helm and kubectl: $HELM/$KUBECTL or scripts/go-tools.sh. Exit 0 all passed,
# 1 a check failed (named on stderr), 2 usage.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
[ $# -eq 1 ] && [ -r "$1" ] || { echo "usage: $0 KUBECONFIG (a readable file)" >&2; exit 2; }
export KUBECONFIG=$1
helm=${HELM:-$(scripts/go-tools.sh helm)}
kubectl=${KUBECTL:-$(scripts/go-tools.sh kubectl)}
crd_dir=$(scripts/go-tools.sh snapshot-crds)
snapshot_crds=()
for k in volumesnapshotclasses volumesnapshotcontents volumesnapshots; do
  snapshot_crds+=(-f "$crd_dir/snapshot.storage.k8s.io_$k.yaml")
done
NS=cairn-chart-check-$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
readonly NS RELEASE=cairn
passed=0
added_snapshot_crds=false
ok() { echo "ok: $*"; passed=$((passed + 1)); }
die() { echo "FAIL: $*" >&2; exit 1; }
cleanup() {
  "$helm" uninstall "$RELEASE" -n "$NS" --wait=false >/dev/null 2>&1 || true
  "$kubectl" delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
  "$kubectl" delete -f manifests/crds/ --ignore-not-found >/dev/null 2>&1 || true
  if $added_snapshot_crds; then
    "$kubectl" delete "${snapshot_crds[@]}" --ignore-not-found --timeout=60s >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

"$helm" lint --strict charts/cairn >/dev/null || die "helm lint --strict"
ok "helm lint --strict"

"$kubectl" apply --server-side -f manifests/crds/ >/dev/null || die "CRDs not accepted"
"$kubectl" wait --for=condition=Established crd/volumes.cairn.dev --timeout=60s >/dev/null ||
  die "CRD volumes.cairn.dev not established"
ok "CRDs accepted and established"
"$kubectl" create namespace "$NS" >/dev/null

# helm template does not ask the cluster, and a helm built without its
# release ldflags assumes Kubernetes v1.20: tell it the server's version.
kv=$("$kubectl" get --raw /version | sed -n 's/.*"gitVersion": *"v\{0,1\}\([0-9.]*\).*/\1/p')
[ -n "$kv" ] || die "could not read the API server's version"
template() { "$helm" template "$RELEASE" charts/cairn --namespace "$NS" --kube-version "$kv" "$@"; }
kinds() { grep -E '^kind: ' | sort | uniq -c | awk '{printf "%s %s, ", $1, $3}'; }
out=$(template |
  "$kubectl" apply --dry-run=server -n "$NS" -f - 2>&1) || die "helm template not accepted: $out"
ok "helm template accepted: $(template | kinds)"
if ! "$kubectl" get crd volumesnapshotclasses.snapshot.storage.k8s.io >/dev/null 2>&1; then
  added_snapshot_crds=true
  out=$("$kubectl" apply "${snapshot_crds[@]}" 2>&1) || die "snapshot CRDs not accepted: $out"
  "$kubectl" wait --for=condition=Established --timeout=60s \
    crd/volumesnapshotclasses.snapshot.storage.k8s.io >/dev/null || die "snapshot CRDs not established"
fi
out=$(template --set snapshots.enabled=true |
  "$kubectl" apply --dry-run=server -n "$NS" -f - 2>&1) || die "helm template with snapshots not accepted: $out"
ok "helm template with snapshots.enabled accepted: $(template --set snapshots.enabled=true | grep -c '^kind: ') objects"
# The plain manifests name their own namespace: point them at this run's.
out=$(sed "s/cairn-system/$NS/g" manifests/cairn.yaml |
  "$kubectl" apply --dry-run=server -f - 2>&1) || die "manifests/cairn.yaml not accepted: $out"
ok "manifests/cairn.yaml accepted"
# Pods need the namespace's default ServiceAccount, which only the
# controller-manager creates; the kube tier may run without one.
"$kubectl" get serviceaccount default -n default >/dev/null 2>&1 ||
  "$kubectl" create serviceaccount default -n default >/dev/null
for f in examples/*.yaml; do
  out=$(sed "s/VOLUME_ID/vo-0123456789abcdef/" "$f" | "$kubectl" apply --dry-run=server -f - 2>&1) ||
    die "$f not accepted: $out"
done
ok "examples accepted ($(ls examples/*.yaml | wc -l) files)"

secret() { "$kubectl" get secret -n "$NS" "$1" -o jsonpath="{.data.$2}"; }
"$helm" install "$RELEASE" charts/cairn -n "$NS" --set image.pullPolicy=Never >/dev/null ||
  die "helm install"
missing=$("$helm" get manifest "$RELEASE" -n "$NS" | "$kubectl" get -f - -o name 2>&1 >/dev/null || true)
[ -z "$missing" ] || die "objects of the release missing after install: $missing"
key1=$(secret "$RELEASE-master-key" master-key)
tok1=$(secret "$RELEASE-api-token" token)
[ "$(printf %s "$key1" | base64 -d | wc -c)" = 32 ] || die "master key is not 32 bytes"
ok "helm install: $("$helm" get manifest "$RELEASE" -n "$NS" | grep -c '^kind: ') objects present"

"$helm" upgrade "$RELEASE" charts/cairn -n "$NS" --set image.pullPolicy=Never \
  --set storageClass.isDefault=true --set csi.node.registration=sidecar \
  --set controlPlane.metricsPort=9421 >/dev/null || die "helm upgrade"
[ "$(secret "$RELEASE-master-key" master-key)" = "$key1" ] || die "helm upgrade changed the master key"
[ "$(secret "$RELEASE-api-token" token)" = "$tok1" ] || die "helm upgrade changed the API token"
"$kubectl" get daemonset -n "$NS" "$RELEASE-csi-node" -o yaml | grep node-driver-registrar >/dev/null ||
  die "helm upgrade did not apply the new values"
ok "helm upgrade with new values: master key and token unchanged"

"$helm" uninstall "$RELEASE" -n "$NS" >/dev/null || die "helm uninstall"
for o in "secret/$RELEASE-master-key" "secret/$RELEASE-api-token" "pvc/$RELEASE-control-plane-data" \
  "pvc/$RELEASE-csi-controller-state"; do
  "$kubectl" get -n "$NS" "$o" >/dev/null 2>&1 || die "helm uninstall deleted $o"
done
if "$kubectl" get -n "$NS" "deployment/$RELEASE-control-plane" >/dev/null 2>&1; then
  die "helm uninstall left the control plane Deployment"
fi
"$helm" install "$RELEASE" charts/cairn -n "$NS" --set image.pullPolicy=Never >/dev/null ||
  die "second helm install (over the kept Secrets and claim)"
[ "$(secret "$RELEASE-master-key" master-key)" = "$key1" ] || die "reinstall replaced the master key"
ok "helm uninstall keeps master key, token, data and controller state claims; reinstall reuses them"

if out=$("$helm" upgrade "$RELEASE" charts/cairn -n "$NS" --set controlPlane.replicas=2 2>&1); then
  die "upgrade to 2 embedded replicas was accepted"
fi
grep -q "runs exactly 1 replica" <<<"$out" || die "unclear refusal: $out"
[ "$("$kubectl" get deployment -n "$NS" "$RELEASE-control-plane" -o jsonpath='{.spec.replicas}')" = 1 ] ||
  die "a refused upgrade changed the Deployment"
ok "bad values refused, release unchanged"
echo "chart_check: $passed checks passed"
