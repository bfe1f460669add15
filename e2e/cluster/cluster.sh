#!/usr/bin/env bash
# Usage: e2e/cluster/cluster.sh up DIR [NODES] | down DIR | node-exec DIR N CMD...
#
# A Kubernetes cluster on this one machine from real components, for the
# cluster tier (docs/e2e.md): etcd, kube-apiserver, kube-controller-manager
# and kube-scheduler on the host, and NODES (1 or 2) nodes, each a kubelet
# over its own Debian containerd + runc, in
#   - its own network namespace cairn-nN (veth pair to the host bridge
#     cairn-br0, node address 10.200.0.1N/24; pods get 10.244.N.0/24 from
#     the bridge CNI plugin inside the namespace);
#   - its own mount namespace (persisted at $RUNDIR/nN.mnt) in which the
#     node-local directories (/var/lib/kubelet, /var/lib/containerd,
#     /run/containerd, /run/netns, /var/lib/cni, /etc/cni/net.d, /var/log/pods,
#     /var/log/containers, /var/lib/cairn-csi, /var/cache/cairn) are per-node
#     directories under DIR/nN, the kubelet directory a shared mount (so
#     Bidirectional propagation works), and the /proc/sys files the kubelet
#     writes are files under DIR/nN (the host's sysctls stay untouched);
#   - its own PID namespace (containerd and kubelet under one init), and
#   - its own cgroup root /cairn-nN in every cgroup v1 hierarchy.
# The API server listens on 10.96.0.1:443, the ClusterIP of the `kubernetes`
# Service, on the host bridge, so in-cluster clients reach it without a
# kube-proxy. There is no cluster DNS and no kube-proxy.
#
# `up` writes DIR/env (KUBECONFIG=..., KUBECTL=..., HELM=..., CTR=...) and
# returns when every node is Ready. `down` kills every process of the
# cluster (including containers and whatever they left in the nodes'
# namespaces and cgroups), drops the namespaces, links and cgroups, and
# removes DIR's state (logs stay in DIR/logs). `up` runs `down` first.
# Binaries come from scripts/go-tools.sh (cached outside the repository).
# Exit 1 on any failure, with the reason on stderr. Needs root.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
readonly RUNDIR=/run/cairn-cluster
readonly BRIDGE=cairn-br0
readonly HOST_IP=10.200.0.1
readonly API_IP=10.96.0.1
readonly NODE_DIRS="var/lib/kubelet var/lib/containerd run/containerd run/netns var/lib/cni etc/cni/net.d
  var/log/pods var/log/containers var/lib/cairn-csi var/cache/cairn"
readonly SYSCTLS="vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
  kernel/keys/root_maxkeys kernel/keys/root_maxbytes"

log() { printf 'cluster: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
node_ip() { echo "10.200.0.1$1"; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start NAME CMD...: a daemon in its own session, output to DIR/logs/NAME.log.
start() {
  local name=$1
  shift
  setsid "$@" >"$dir/logs/$name.log" 2>&1 </dev/null &
  echo "$! $name" >>"$dir/pids"
}

# in_node N CMD...: CMD inside node N's network and mount namespaces.
in_node() {
  local n=$1
  shift
  nsenter --net=/run/netns/cairn-n"$n" --mount="$RUNDIR/n$n.mnt" -- "$@"
}

wait_for() {  # wait_for SECONDS WHAT CMD...
  local t=$1 what=$2
  shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || die "timed out after ${t}s waiting for $what"
    sleep 0.5
  done
}

make_pki() {
  local p=$dir/pki
  mkdir -p "$p"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=cairn-e2e-ca \
    -keyout "$p/ca.key" -out "$p/ca.crt" 2>/dev/null
  cat >"$p/ext.cnf" <<EOF
subjectAltName=IP:$API_IP,IP:127.0.0.1,IP:$HOST_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:localhost
extendedKeyUsage=serverAuth
EOF
  openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver \
    -keyout "$p/apiserver.key" -out "$p/apiserver.csr" 2>/dev/null
  openssl x509 -req -in "$p/apiserver.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" \
    -CAcreateserial -days 2 -extfile "$p/ext.cnf" -out "$p/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
  openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
  token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  echo "$token,admin,admin,system:masters" >"$p/tokens.csv"
  cat >"$dir/admin.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://$API_IP:443
    certificate-authority: $p/ca.crt
users:
- name: admin
  user:
    token: $token
contexts:
- name: e2e
  context: {cluster: e2e, user: admin}
current-context: e2e
EOF
}

# The node's namespaces, directories and cgroups.
make_node() {
  local n=$1 nd=$dir/n$1 ip
  ip=$(node_ip "$n")
  mkdir -p "$nd/sysctl"
  for d in $NODE_DIRS; do mkdir -p "$nd/root/$d" "/$d"; done
  ip netns add cairn-n"$n"
  ip link add cairn-v"$n" type veth peer name eth0 netns cairn-n"$n"
  ip link set cairn-v"$n" master "$BRIDGE" up
  ip -n cairn-n"$n" link set lo up
  ip -n cairn-n"$n" addr add "$ip/24" dev eth0
  ip -n cairn-n"$n" link set eth0 up
  ip -n cairn-n"$n" route add default via "$HOST_IP"
  # Pods on this node reach other nodes' pods (no overlay: plain routes).
  local m
  for m in $(seq 1 "$nodes"); do
    [ "$m" = "$n" ] || ip -n cairn-n"$n" route add "10.244.$m.0/24" via "$(node_ip "$m")"
  done
  ip route add "10.244.$n.0/24" via "$ip"
  ip netns exec cairn-n"$n" sysctl -qw net.ipv4.ip_forward=1
  for s in $SYSCTLS; do
    [ -e "/proc/sys/$s" ] && cat "/proc/sys/$s" >"$nd/sysctl/${s//\//.}"
  done
  # One cgroup root per node in every v1 hierarchy; cpuset needs its cpus
  # and mems filled in before tasks may join.
  local h
  for h in /sys/fs/cgroup/*/; do
    [ -L "${h%/}" ] && continue
    [ "$(stat -fc %T "$h")" = cgroupfs ] || continue
    mkdir -p "$h/cairn-n$n"
  done
  cat /sys/fs/cgroup/cpuset/cpuset.cpus >/sys/fs/cgroup/cpuset/cairn-n"$n"/cpuset.cpus
  cat /sys/fs/cgroup/cpuset/cpuset.mems >/sys/fs/cgroup/cpuset/cairn-n"$n"/cpuset.mems
  touch "$RUNDIR/n$n.mnt"
  # shellcheck disable=SC2016
  unshare --mount="$RUNDIR/n$n.mnt" --propagation private -- /bin/bash -euc '
    nd=$1; shift
    for d in '"$(tr -s ' \n' '  ' <<<"$NODE_DIRS")"'; do mount --bind "$nd/root/$d" "/$d"; done
    mount --make-shared /var/lib/kubelet
    true' _ "$nd"
  cat >"$nd/root/etc/cni/net.d/10-bridge.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "cairn-e2e",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
     "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.$n.0/24"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "loopback"}
  ]
}
EOF
  cat >"$nd/containerd.toml" <<EOF
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_image"
  # This VM's root lacks CAP_SYS_RESOURCE: never lower oom_score_adj.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
EOF
  cat >"$nd/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 (hybrid) VM: allowed explicitly since 1.31; no systemd here.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /cairn-n$n
failSwapOn: false
# Lowering oom_score_adj needs CAP_SYS_RESOURCE, which root lacks here.
oomScoreAdj: 0
address: $ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
# The shared disk may be fuller than the defaults allow.
evictionHard: {memory.available: 50Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
podPidsLimit: -1
resolvConf: /etc/resolv.conf
syncFrequency: 5s
fileCheckFrequency: 5s
nodeStatusReportFrequency: 10s
EOF
}

# Node N's own PID namespace: its /proc shows only the node's processes, so
# nothing here ever reads /proc entries of the machine's other processes
# (one stuck in the kernel, e.g. on a hung FUSE request, blocks every
# reader of its /proc links, and the kubelet reads them at start), and the
# node ends as a whole with its init. Mounts keep propagating: the new
# mount namespace (for the new /proc) keeps /var/lib/kubelet shared.
start_node() {
  local n=$1 nd=$dir/n$1
  # shellcheck disable=SC2016
  start "node-n$n" nsenter --net=/run/netns/cairn-n"$n" --mount="$RUNDIR/n$n.mnt" -- \
    unshare --pid --fork --mount-proc --propagation unchanged -- /bin/bash -euc '
      nd=$1 kubelet=$2 kubeconfig=$3 n=$4 ip=$5
      for s in '"$(tr -s ' \n' '  ' <<<"$SYSCTLS")"'; do
        f=$nd/sysctl/${s//\//.}
        [ -e "$f" ] && mount --bind "$f" "/proc/sys/$s"
      done
      containerd --config "$nd/containerd.toml" >"$nd/../logs/containerd-n$n.log" 2>&1 &
      # The images are imported from outside first; then the kubelet.
      until [ -e "$nd/kubelet.go" ]; do sleep 0.2; done
      "$kubelet" --config "$nd/kubelet.yaml" --kubeconfig "$kubeconfig" \
        --hostname-override "n$n" --node-ip "$ip" --v=1 >"$nd/../logs/kubelet-n$n.log" 2>&1 &
      wait' _ "$nd" "$kubelet" "$dir/admin.kubeconfig" "$n" "$(node_ip "$n")"
  local sock=$nd/root/run/containerd/containerd.sock
  wait_for 60 "containerd on node $n" ctr --address "$sock" version
  local a
  for a in "${archives[@]}"; do
    ctr --address "$sock" -n k8s.io images import "$a" >/dev/null ||
      die "ctr images import $a failed on node $n"
  done
  touch "$nd/kubelet.go"
}

up() {
  nodes=${1:-1}
  [[ $nodes =~ ^[12]$ ]] || die "NODES must be 1 or 2, not '$nodes'"
  [ "$(id -u)" = 0 ] || die "needs root (namespaces, mounts, cgroups)"
  local t
  for t in containerd runc ctr nsenter unshare openssl python3 ip; do
    command -v "$t" >/dev/null || die "'$t' is missing (apt-get install containerd runc iproute2 util-linux openssl)"
  done
  [ -x /usr/lib/cni/bridge ] || die "/usr/lib/cni/bridge is missing (apt-get install containernetworking-plugins)"
  grep -q '^cgroup .*cpuset' /proc/mounts || die "needs cgroup v1 hierarchies (cpuset missing)"
  down_quiet
  # The names and addresses are fixed: one cluster per machine.
  if ip link show "$BRIDGE" >/dev/null 2>&1 || [ -e /run/netns/cairn-n1 ]; then
    die "another cluster is up ($BRIDGE or netns cairn-n1 exists): run 'cluster.sh down' on its directory"
  fi
  mkdir -p "$dir/logs" "$RUNDIR"
  : >"$dir/pids"
  mountpoint -q "$RUNDIR" || { mount --bind "$RUNDIR" "$RUNDIR" && mount --make-private "$RUNDIR"; }
  local tools
  tools=$("$root/scripts/go-tools.sh" etcd kube-apiserver kube-controller-manager kube-scheduler \
    kubelet kubectl helm) || die "scripts/go-tools.sh failed"
  local etcd apiserver cm sched kubectl helm
  { read -r etcd; read -r apiserver; read -r cm; read -r sched; read -r kubelet; read -r kubectl
    read -r helm; } <<<"$tools"
  local imgs
  imgs=$("$root/e2e/cluster/images.sh") || die "e2e/cluster/images.sh failed"
  pause_image=$(sed -n 's/^pause=\([^ ]*\) .*/\1/p' <<<"$imgs")
  archives=()
  while read -r line; do archives+=("${line#* }"); done <<<"$imgs"
  archives+=("${EXTRA_IMAGE_ARCHIVES[@]}")

  make_pki
  ip link add "$BRIDGE" type bridge
  ip addr add "$HOST_IP/24" dev "$BRIDGE"
  ip addr add "$API_IP/32" dev "$BRIDGE"
  ip link set "$BRIDGE" up

  local ep pp
  ep=$(free_port)
  pp=$(free_port)
  start etcd "$etcd" --name e2e --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$ep" --advertise-client-urls "http://127.0.0.1:$ep" \
    --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
    --initial-cluster "e2e=http://127.0.0.1:$pp" --log-level warn
  local p=$dir/pki
  start kube-apiserver "$apiserver" --etcd-servers "http://127.0.0.1:$ep" \
    --bind-address "$API_IP" --advertise-address "$API_IP" --secure-port 443 \
    --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
    --client-ca-file "$p/ca.crt" --token-auth-file "$p/tokens.csv" \
    --authorization-mode RBAC --service-cluster-ip-range 10.96.0.0/24 \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --endpoint-reconciler-type none --allow-privileged=true \
    --kubelet-preferred-address-types InternalIP,Hostname \
    --cert-dir "$dir/apiserver-certs"
  local k=("$kubectl" --kubeconfig "$dir/admin.kubeconfig")
  wait_for 120 "kube-apiserver /readyz" "${k[@]}" get --raw /readyz
  start kube-controller-manager "$cm" --kubeconfig "$dir/admin.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$(free_port)" --leader-elect=false \
    --service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" \
    --use-service-account-credentials=true --node-monitor-grace-period 20s
  start kube-scheduler "$sched" --kubeconfig "$dir/admin.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$(free_port)" --leader-elect=false

  local n
  for n in $(seq 1 "$nodes"); do make_node "$n"; done
  for n in $(seq 1 "$nodes"); do start_node "$n"; done
  for n in $(seq 1 "$nodes"); do
    wait_for 180 "node n$n Ready" "${k[@]}" wait --for=condition=Ready "node/n$n" --timeout=2s
  done
  wait_for 60 "the default ServiceAccount" "${k[@]}" get serviceaccount default
  cat >"$dir/env" <<EOF
KUBECONFIG=$dir/admin.kubeconfig
KUBECTL=$kubectl
HELM=$helm
NODES=$nodes
WORKLOAD_IMAGE=$(sed -n 's/^workload=\([^ ]*\) .*/\1/p' <<<"$imgs")
PROVISIONER_IMAGE=$(sed -n 's/^csi-provisioner=\([^ ]*\) .*/\1/p' <<<"$imgs")
EOF
}

# Pids of processes that belong to node N: in its network namespace, its
# mount namespace, or its cgroup tree (pods with their own netns).
node_pids() {
  local n=$1 netino="" mntino="" pid
  [ -e /run/netns/cairn-n"$n" ] && netino=$(stat -Lc %i /run/netns/cairn-n"$n" 2>/dev/null || true)
  [ -e "$RUNDIR/n$n.mnt" ] && mntino=$(stat -Lc %i "$RUNDIR/n$n.mnt" 2>/dev/null || true)
  local net mnt
  for pid in /proc/[0-9]*; do
    pid=${pid#/proc/}
    [ "$pid" = $$ ] && continue
    # Bounded: reading the namespaces of a process stuck in the kernel (a
    # hung FUSE request of anyone's on this machine) blocks.
    { read -r net; read -r mnt; } < <(timeout 2 stat -Lc %i /proc/"$pid"/ns/net \
      /proc/"$pid"/ns/mnt 2>/dev/null || true)
    if { [ -n "$netino" ] && [ "${net:-}" = "$netino" ]; } ||
      { [ -n "$mntino" ] && [ "${mnt:-}" = "$mntino" ]; }; then
      echo "$pid"
    fi
    net='' mnt=''
  done
  if [ -d /sys/fs/cgroup/pids/cairn-n"$n" ]; then
    find /sys/fs/cgroup/pids/cairn-n"$n" -name cgroup.procs -exec cat {} + 2>/dev/null || true
  fi
}

# Fails (after doing all it can) when anything of the cluster survives.
down_quiet() {
  [ -n "$dir" ] || return 0
  local problems=()
  if [ -f "$dir/pids" ]; then
    local pid name
    while read -r pid name; do kill -9 -- "-$pid" "$pid" 2>/dev/null || true; done <"$dir/pids"
  fi
  local n pids
  for n in 1 2; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      pids=$(node_pids "$n" | sort -u)
      [ -z "$pids" ] && break
      # shellcheck disable=SC2086
      kill -9 $pids 2>/dev/null || true
      sleep 0.3
    done
    pids=$(node_pids "$n" | sort -u | tr '\n' ' ')
    [ -z "$pids" ] || problems+=("processes of node $n survive: $pids")
    # The mount namespace goes with its last process and its nsfs bind;
    # every mount inside it (containers' rootfs, FUSE mounts) goes with it.
    if [ -e "$RUNDIR/n$n.mnt" ]; then
      umount "$RUNDIR/n$n.mnt" 2>/dev/null || true
      rm -f "$RUNDIR/n$n.mnt"
    fi
    ip netns del cairn-n"$n" 2>/dev/null || true
    ip link del cairn-v"$n" 2>/dev/null || true
    local h
    for h in /sys/fs/cgroup/*/cairn-n"$n"; do
      [ -d "$h" ] && find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  # The chart's detachMounters puts mounters in cairn-mounters (killed above
  # with their node); removed only once empty.
  for h in /sys/fs/cgroup/*/cairn-mounters /sys/fs/cgroup/cairn-mounters; do
    [ -d "$h" ] && rmdir "$h" 2>/dev/null || true
  done
  local leftover
  leftover=$(findmnt -rn -o TARGET | grep -F "$dir/" || true)
  [ -z "$leftover" ] || problems+=("mounts under $dir survive: $leftover")
  for n in 1 2; do
    [ ! -e /run/netns/cairn-n"$n" ] || problems+=("netns cairn-n$n survives")
    [ ! -d /sys/fs/cgroup/memory/cairn-n"$n" ] || problems+=("cgroup /cairn-n$n survives")
  done
  ! ip link show "$BRIDGE" >/dev/null 2>&1 || problems+=("link $BRIDGE survives")
  if ((${#problems[@]})); then
    printf 'cluster: teardown incomplete: %s\n' "${problems[@]}" >&2
    return 1
  fi
  rm -rf "$dir/n1" "$dir/n2" "$dir/etcd" "$dir/pki" "$dir/apiserver-certs" "$dir/pids" "$dir/env"
}

cmd=${1:-}
dir=${2:-}
[ -n "$dir" ] || die "usage: cluster.sh up DIR [NODES] | down DIR | node-exec DIR N CMD..."
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
read -ra EXTRA_IMAGE_ARCHIVES <<<"${CLUSTER_IMAGE_ARCHIVES:-}"
case $cmd in
  up) up "${3:-1}" ;;
  down) down_quiet ;;
  node-exec) shift 2; n=$1; shift; in_node "$n" "$@" ;;
  *) die "unknown command '$cmd'" ;;
esac
