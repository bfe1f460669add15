#!/usr/bin/env bash
# Static checks of charts/cairn, no cluster needed (ctest: chart_lint_test):
#  - `helm lint --strict` with the defaults and with every optional path on
#    (sidecar registration, snapshots, ServiceMonitor, s3 backend);
#  - the rendered objects carry the contract (CSIDriver fields, provisioner
#    flags, privilege only on the node plugin, master-key Secret kept);
#  - bad values fail with a message that names the value;
#  - the chart's appVersion is the project version (the image's tag);
#  - manifests/ and charts/cairn/crds/ are in step (scripts/gen-manifests.sh).
# Needs helm ($HELM or scripts/go-tools.sh). Without it: exit 77 (skip),
# or 1 when CI=true.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
chart=charts/cairn
if [ -n "${HELM:-}" ]; then helm=$HELM
elif ! helm=$(scripts/go-tools.sh helm 2>/tmp/chart-lint-helm.$$); then
  cat /tmp/chart-lint-helm.$$ >&2; rm -f /tmp/chart-lint-helm.$$
  if [ "${CI:-}" = true ]; then echo "FAIL: helm is required in CI" >&2; exit 1; fi
  echo "SKIP: no helm" >&2; exit 77
fi
rm -f /tmp/chart-lint-helm.$$
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
render() { "$helm" template t "$chart" --namespace ns --kube-version 1.34.4 "$@"; }

s3=(--set storage.backend=s3 --set storage.s3.bucket=b --set storage.s3.credentialsSecret=c)
for opts in "" "--set csi.node.registration=sidecar" "--set snapshots.enabled=true" \
  "--set metrics.serviceMonitor.enabled=true" "${s3[*]} --set controlPlane.replicas=2"; do
  # shellcheck disable=SC2086
  out=$("$helm" lint --strict "$chart" --namespace ns $opts 2>&1) || fail "helm lint --strict $opts: $out"
done

all=$(render --set snapshots.enabled=true)
has() { grep -qE -- "$1" <<<"$all" || fail "rendered chart lacks: $1"; }
has 'attachRequired: false'
has 'podInfoOnMount: true'
has 'fsGroupPolicy: File'
has '- --extra-create-metadata'
has 'mountPropagation: Bidirectional'
has 'kind: VolumeSnapshotClass'
has 'helm.sh/resource-policy: keep'
has 'path: /healthz'
has 'path: /readyz'
has 'path: /var/cache/cairn'
# Privilege only where a mount is made: exactly one privileged container.
n=$(grep -c "privileged: true" <<<"$all" || true)
[ "$n" = 1 ] || fail "expected 1 privileged container, found $n"
# The master key: 32 random bytes, different on each fresh render (lookup
# finds nothing without a cluster), never an empty value.
k1=$(render -s templates/secrets.yaml | awk '/master-key:/ {print $2}')
k2=$(render -s templates/secrets.yaml | awk '/master-key:/ {print $2}')
[ "$(printf %s "$k1" | base64 -d | wc -c)" = 32 ] || fail "master key is not 32 bytes: '$k1'"
[ "$k1" != "$k2" ] || fail "two fresh renders made the same master key"
# Plain manifests render no Secret at all.
if render --set masterKey.create=false --set apiToken.create=false | grep '^kind: Secret' >/dev/null; then
  fail "create=false still renders a Secret"
fi

# Bad input: a clear message naming what is wrong, and no output.
expect_error() {
  local want=$1; shift
  local out
  if out=$(render "$@" 2>&1); then fail "accepted $*"; return; fi
  grep -qF -- "$want" <<<"$out" || fail "$*: error does not mention '$want': $out"
}
expect_error "runs exactly 1 replica" --set controlPlane.replicas=2
expect_error "storage.s3.bucket and storage.s3.credentialsSecret are required" --set storage.backend=s3
expect_error "backend" --set storage.backend=nfs
expect_error "registration" --set csi.node.registration=none
expect_error "kubeletDir" --set kubeletDir=relative/path
expect_error "version" --set storageClass.parameters.version=3
expect_error "unknownKey" --set unknownKey=1
expect_error "/csi/controller/replicas" --set csi.controller.replicas=2

# The controller's record of what it provisioned is on a claim of its own,
# kept on uninstall, and the Deployment lets go of it before a new pod
# starts; without persistence it is an emptyDir.
ctl=$(render -s templates/csi-controller.yaml)
grep -q 'claimName: t-cairn-csi-controller-state' <<<"$ctl" || fail "controller state not on its claim"
# (grep reads to the end: an early exit would SIGPIPE awk under pipefail.)
awk '/^kind: PersistentVolumeClaim/,/^spec:/' <<<"$ctl" | grep 'helm.sh/resource-policy: keep' >/dev/null ||
  fail "controller state claim not kept on uninstall"
awk '/^kind: Deployment/,0' <<<"$ctl" | grep 'type: Recreate' >/dev/null || fail "controller Deployment not Recreate"
ctl=$(render -s templates/csi-controller.yaml --set csi.controller.state.persistence=false)
if grep -q 'PersistentVolumeClaim\|claimName' <<<"$ctl"; then
  fail "state.persistence=false still uses a claim"
fi

# The default image tag is appVersion, and build-image.sh tags the image
# with the project version: the two must agree.
app=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$chart/Chart.yaml")
proj=$(sed -n 's/^project(cairn VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
[ -n "$app" ] && [ "$app" = "$proj" ] || fail "Chart appVersion '$app' differs from the project version '$proj'"

HELM=$helm scripts/gen-manifests.sh --check || fail "manifests/ out of step (above)"

if ((failures)); then echo "chart_lint_test: $failures failure(s)" >&2; exit 1; fi
echo "chart_lint_test: ok"
