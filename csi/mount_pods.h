// Mount pods: the second MounterLauncher (docs/decisions.md D29, D30).
//
// Per publish, PodLauncher starts the mount's holder as a detached process
// on the node (ProcessLauncher::Start, `cairn-mount --handover-listen`),
// which listens on a unix socket under `socket_dir`, and asks the API
// server for a mounter pod on this node that runs `cairn-mount
// --handover-connect` on that socket: the pod mounts, hands its /dev/fuse
// descriptor to the holder (SCM_RIGHTS) and serves. The pod's CPU, memory,
// logs and restarts are Kubernetes': `kubectl top/logs/describe` show
// them, and its resources bound them. When the pod is OOM-killed the
// kubelet restarts its container; when it is deleted or upgraded, Repair
// creates a new one; either way the next mounter takes the connection over
// from the holder and the workload pod's mount never breaks.
//
// Pods are named cairn-mount-<target hash>-<random>, in `ns`, with the
// labels below, so `kubectl get pods -l cairn.dev/volume=vo-…` finds a
// volume's mounters. The pod's shape (image, resources, volumes, security
// context) comes from the chart-rendered `pod_template`; this file adds
// identity, placement and the mounter's arguments.
//
// Thread-safety: PodLauncher is not thread-safe; NodeService calls it under
// its mutex. Failure: API errors come back as kube statuses (errors.h);
// Launch leaves nothing behind when it fails.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "csi/mounts.h"
#include "operator/kube/client.h"

namespace cairn::csi {

inline constexpr char kMounterComponentLabel[] = "app.kubernetes.io/component";
inline constexpr char kMounterComponent[] = "mounter";
inline constexpr char kVolumeLabel[] = "cairn.dev/volume";
inline constexpr char kTargetHashLabel[] = "cairn.dev/target-hash";
inline constexpr char kNodeLabel[] = "cairn.dev/node";
inline constexpr char kTargetAnnotation[] = "cairn.dev/target";

struct MountPodOptions {
  std::string ns;            // where mounter pods live (the plugin's namespace)
  std::string node;          // spec.nodeName of every pod: this node
  kube::Json pod_template;   // a Pod; spec.containers[0] runs cairn-mount
  // Holders' sockets, at the same path inside mounter pods (a hostPath).
  std::filesystem::path socket_dir;
};

// 16 hex digits of SHA-256 of the target path.
std::string TargetHash(const std::filesystem::path& target);

// The mounter pod for `spec` named `name`: the template plus name,
// namespace, labels (component, volume, target hash, node), the target as
// an annotation, nodeName, restartPolicy OnFailure unless the template sets
// one, and container 0's args (spec.args without --handover, plus
// --handover-connect SOCKET) and env (spec.env appended). InvalidArgument
// if the template has no container.
[[nodiscard]] absl::StatusOr<kube::Json> BuildMounterPod(const MountPodOptions& options,
                                                        const std::string& name,
                                                        const LaunchSpec& spec);

class PodLauncher final : public MounterLauncher {
 public:
  // `holders` starts the holder processes; both pointers outlive this.
  PodLauncher(ProcessLauncher* holders, kube::Client* kube, MountPodOptions options)
      : holders_(holders), kube_(kube), options_(std::move(options)) {}

  // Holder, then pod; returns once the mount serves. On failure the holder
  // is killed, the pod deleted, and the error names the pod's state.
  absl::StatusOr<MounterId> Launch(const LaunchSpec& spec, absl::Duration timeout) override;
  // Stops the holder (it has the pod's mounter unmount and make its final
  // commit), then deletes the pod.
  absl::Status Stop(const MounterId& id, absl::Duration timeout) override;
  // Deletes the mounter pod: it hands the mount over as it goes, and
  // Repair's new pod (the plugin's current image) takes over.
  absl::Status Upgrade(const MounterId& id) override;
  // A mounter pod that is gone, being deleted, or ended is replaced by a
  // new one; `id->pod` names it. Process-mode mounts (no pod) are left.
  absl::Status Repair(const LaunchSpec& spec, MounterId* id) override;
  // Deletes this node's mounter pods that no id in `live` names.
  absl::Status CollectGarbage(const std::vector<MounterId>& live) override;

 private:
  std::filesystem::path Socket(const std::filesystem::path& target) const;
  absl::StatusOr<std::string> CreatePod(const LaunchSpec& spec);
  absl::Status DeletePod(const std::string& name);
  std::string PodState(const std::string& name);

  ProcessLauncher* holders_;
  kube::Client* kube_;
  const MountPodOptions options_;
};

}  // namespace cairn::csi
