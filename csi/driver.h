// cairn-csi: the CSI v1 plugin (Identity, Controller, Node) and the kubelet
// plugin-registration service, on unix sockets (core/grpc_server.h).
//
// Node: each NodePublishVolume starts one detached cairn-mount for the
// target path (csi/mounts.h); NodeUnpublishVolume commits, stops it and
// unmounts. Controller: a CreateVolume maps a claim to a named Cairn volume
// (created or bound) and answers with its ID (vo-…, contract C1). What both
// remember lives in a StateFile under --state-dir (csi/state.h).
//
// Errors: handlers validate first and answer with the CSI code the caller
// retries by (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, UNAVAILABLE when
// the control plane is down, PERMISSION_DENIED for a namespace a pod may not
// use); a failed publish leaves nothing mounted and nothing recorded.
//
// Thread-safety: gRPC calls run concurrently; each service serialises its
// state changes with one mutex (node: mu_, which is also held across a
// mount or unmount so that two calls on one target cannot interleave).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/rpc_client.h"
#include "csi/mounts.h"
#include "csi/state.h"
#include "proto/csi.grpc.pb.h"
#include "proto/pluginregistration.grpc.pb.h"
#include "proto/volume.grpc.pb.h"

namespace cairn::csi {

inline constexpr char kDriverName[] = "csi.cairn.dev";
// volume_context keys (PV volumeAttributes or inline volumeAttributes).
inline constexpr char kCtxVolume[] = "volume";
inline constexpr char kCtxNamespace[] = "namespace";
inline constexpr char kCtxSubPath[] = "subPath";
inline constexpr char kCtxCommitInterval[] = "commitInterval";
inline constexpr char kCtxCreateIfMissing[] = "createIfMissing";
inline constexpr char kCtxVersion[] = "version";
inline constexpr char kCtxPodNamespace[] = "csi.storage.k8s.io/pod.namespace";
inline constexpr char kCtxEphemeral[] = "csi.storage.k8s.io/ephemeral";
// An inline volume with ephemeral: "true" and no volume name: a new
// anonymous Cairn volume per pod volume, held by its mounter's lease and
// deleted once the pod's mount ends (docs/decisions.md D34).
inline constexpr char kCtxAnonymous[] = "ephemeral";
// StorageClass parameters and --extra-create-metadata keys.
inline constexpr char kParamVersion[] = "version";
inline constexpr char kParamVolumeName[] = "volumeName";
inline constexpr char kParamDeletionPolicy[] = "deletionPolicy";
inline constexpr char kParamNamespace[] = "namespace";
inline constexpr char kParamPvcName[] = "csi.storage.k8s.io/pvc/name";
inline constexpr char kParamPvcNamespace[] = "csi.storage.k8s.io/pvc/namespace";
// Where CSI snapshots live: one clone per snapshot (csi/state.h).
inline constexpr char kSnapshotNamespace[] = "cairn-csi-snapshots";
inline constexpr char kSnapshotIdPrefix[] = "snap-";

enum class Mode { kController, kNode, kAll };

struct CsiOptions {
  std::string endpoint = "unix:///csi/csi.sock";
  std::string node_id;
  ClientOptions client;                 // --server, --token-file
  std::string token_file;               // handed to mounters as CAIRN_TOKEN_FILE
  Mode mode = Mode::kAll;
  std::filesystem::path state_dir = "/var/lib/cairn-csi";
  std::filesystem::path kubelet_dir;    // empty: targets anywhere
  std::filesystem::path registration_dir;  // empty: no kubelet registration socket
  // The CSI socket as the kubelet sees it (a container sees it elsewhere);
  // empty: the --endpoint path.
  std::filesystem::path registration_path;
  std::filesystem::path mounter = "cairn-mount";  // resolved next to cairn-csi if relative
  std::filesystem::path cache_dir = "/var/cache/cairn";
  // Non-empty: mounters join NAME cgroups under this root (PrepareMounterCgroups).
  std::filesystem::path mounter_cgroup_root;
  std::string mounter_cgroup = "cairn-mounters";
  absl::Duration mount_timeout = absl::Seconds(30);
  absl::Duration final_commit_timeout = absl::Seconds(30);
  // Pod mode (--mounter-mode pod): mounters run in mounter pods shaped by
  // this Pod template (JSON), csi/mount_pods.h.
  bool mount_pods = false;
  std::filesystem::path mount_pod_template;
  std::string version = "0.1.0";
};

inline constexpr char kCsiUsage[] =
    "usage: cairn-csi --node-id NODE [options]\n"
    "\n"
    "The Cairn CSI plugin (driver csi.cairn.dev): Identity, Controller and Node\n"
    "services on a unix socket. Each NodePublishVolume starts a detached cairn-mount\n"
    "that survives restarts of this process, under a holder that keeps the mount\n"
    "alive when the mounter dies; state lives in --state-dir. SIGUSR2 upgrades every\n"
    "mounter on the node to the binary now at --mounter, keeping open files open.\n"
    "\n"
    "Options:\n"
    "  --version                   print the version and exit (as the first argument)\n"
    "  --endpoint unix:///PATH     CSI socket (default unix:///csi/csi.sock)\n"
    "  --node-id NODE              this node's name (required for node and all)\n"
    "  --server HOST:PORT          control plane (env CAIRN_SERVER, default 127.0.0.1:7420)\n"
    "  --token-file F              bearer token for the control plane\n"
    "  --mode controller|node|all  services to serve (default all)\n"
    "  --state-dir DIR             durable plugin state (default /var/lib/cairn-csi)\n"
    "  --kubelet-dir DIR           refuse target paths outside DIR\n"
    "  --registration-dir DIR      serve kubelet plugin registration on\n"
    "                              DIR/csi.cairn.dev-reg.sock\n"
    "  --kubelet-registration-path PATH  the CSI socket's path on the node, told to\n"
    "                              the kubelet (default: the --endpoint path)\n"
    "  --mounter PATH              cairn-mount binary (default: next to cairn-csi)\n"
    "  --cache-dir DIR             node-local chunk cache for mounters (default /var/cache/cairn)\n"
    "  --mounter-cgroup-root DIR   start each mounter in cgroups under DIR (the node's\n"
    "                              /sys/fs/cgroup), out of this container's, so that it\n"
    "                              outlives the container (with hostPID)\n"
    "  --mounter-cgroup NAME       the cgroup's name in each hierarchy (default cairn-mounters)\n"
    "  --mount-timeout SECONDS     how long a mount may take to become ready (default 30)\n"
    "  --final-commit-timeout S    how long an unpublish may retry its commit (default 30)\n"
    "  --mounter-mode process|pod  run each mount's mounter as a process next to this\n"
    "                              one (default), or in a mounter pod on this node that\n"
    "                              the plugin creates through the Kubernetes API (its\n"
    "                              service account; the pod's namespace); the mount's\n"
    "                              holder stays a process, so the mount outlives the pod\n"
    "  --mount-pod-template FILE   the mounter pods' Pod (JSON): image, resources, volumes\n";

// `args` excludes the program name. InvalidArgument for bad usage;
// HelpRequested() (core/flags.h) for -h/--help.
[[nodiscard]] absl::StatusOr<CsiOptions> ParseCsiArgs(const std::vector<std::string>& args,
                                                     ClientOptions client);

// The control plane as the plugin uses it: short deadlines, errors as
// absl::Status with UNAVAILABLE kept distinct.
class VolumeApi {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<VolumeApi>> Connect(
      const ClientOptions& options);
  absl::StatusOr<api::Volume> Get(const api::VolumeRef& ref);
  absl::StatusOr<api::Volume> Create(const api::CreateVolumeRequest& request);
  absl::Status Delete(const std::string& volume_id);
  // A clone of `source_id`'s head as ns/name (api CloneVolume).
  absl::StatusOr<api::Volume> Clone(const std::string& source_id, const std::string& ns,
                                    const std::string& name);
  absl::Status Ping();

 private:
  VolumeApi() = default;
  std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout) const;
  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<api::VolumeService::Stub> stub_;
};

class IdentityService final : public ::csi::v1::Identity::Service {
 public:
  IdentityService(VolumeApi* api, bool controller, std::string version)
      : api_(api), controller_(controller), version_(std::move(version)) {}
  grpc::Status GetPluginInfo(grpc::ServerContext*, const ::csi::v1::GetPluginInfoRequest*,
                             ::csi::v1::GetPluginInfoResponse*) override;
  grpc::Status GetPluginCapabilities(grpc::ServerContext*,
                                     const ::csi::v1::GetPluginCapabilitiesRequest*,
                                     ::csi::v1::GetPluginCapabilitiesResponse*) override;
  grpc::Status Probe(grpc::ServerContext*, const ::csi::v1::ProbeRequest*,
                     ::csi::v1::ProbeResponse*) override;

 private:
  VolumeApi* api_;
  bool controller_;
  std::string version_;
};

class ControllerService final : public ::csi::v1::Controller::Service {
 public:
  ControllerService(VolumeApi* api, StateFile* state) : api_(api), state_file_(state) {}
  // Reads the state file; DataLoss if it is damaged.
  [[nodiscard]] absl::Status Init();
  grpc::Status CreateVolume(grpc::ServerContext*, const ::csi::v1::CreateVolumeRequest*,
                            ::csi::v1::CreateVolumeResponse*) override;
  grpc::Status DeleteVolume(grpc::ServerContext*, const ::csi::v1::DeleteVolumeRequest*,
                            ::csi::v1::DeleteVolumeResponse*) override;
  grpc::Status ValidateVolumeCapabilities(grpc::ServerContext*,
                                          const ::csi::v1::ValidateVolumeCapabilitiesRequest*,
                                          ::csi::v1::ValidateVolumeCapabilitiesResponse*) override;
  grpc::Status ListVolumes(grpc::ServerContext*, const ::csi::v1::ListVolumesRequest*,
                           ::csi::v1::ListVolumesResponse*) override;
  grpc::Status ControllerGetCapabilities(grpc::ServerContext*,
                                         const ::csi::v1::ControllerGetCapabilitiesRequest*,
                                         ::csi::v1::ControllerGetCapabilitiesResponse*) override;
  grpc::Status CreateSnapshot(grpc::ServerContext*, const ::csi::v1::CreateSnapshotRequest*,
                              ::csi::v1::CreateSnapshotResponse*) override;
  grpc::Status DeleteSnapshot(grpc::ServerContext*, const ::csi::v1::DeleteSnapshotRequest*,
                              ::csi::v1::DeleteSnapshotResponse*) override;
  grpc::Status ListSnapshots(grpc::ServerContext*, const ::csi::v1::ListSnapshotsRequest*,
                             ::csi::v1::ListSnapshotsResponse*) override;
  grpc::Status GetSnapshot(grpc::ServerContext*, const ::csi::v1::GetSnapshotRequest*,
                           ::csi::v1::GetSnapshotResponse*) override;

 private:
  absl::Status DoCreate(const ::csi::v1::CreateVolumeRequest& req,
                        ::csi::v1::CreateVolumeResponse* resp);
  absl::Status DoDelete(const std::string& volume_id);
  absl::Status DoCreateSnapshot(const ::csi::v1::CreateSnapshotRequest& req,
                                ::csi::v1::CreateSnapshotResponse* resp);
  absl::Status DoDeleteSnapshot(const std::string& snapshot_id);
  VolumeApi* api_;
  StateFile* state_file_;
  absl::Mutex mu_;
  PluginState state_ ABSL_GUARDED_BY(mu_);
};

class NodeService final : public ::csi::v1::Node::Service {
 public:
  NodeService(const CsiOptions& options, VolumeApi* api, StateFile* state,
              MounterLauncher* launcher)
      : options_(options), api_(api), state_file_(state), launcher_(launcher) {}
  // Reads the state file and re-adopts the mounters that still serve;
  // records whose mounter is gone stay, so unpublish can clean up.
  [[nodiscard]] absl::Status Init();
  // Has every published mount hand over to a mounter started from the
  // binary now at --mounter (the pods' open files stay open). Returns how
  // many were asked.
  size_t UpgradeMounters();
  // Pod mode: re-creates the mounter pods that are gone (deleted, evicted,
  // ended) and deletes this node's mounter pods no publication uses.
  // Failures are logged; the next call tries again.
  void RepairMounters();
  grpc::Status NodePublishVolume(grpc::ServerContext*, const ::csi::v1::NodePublishVolumeRequest*,
                                 ::csi::v1::NodePublishVolumeResponse*) override;
  grpc::Status NodeUnpublishVolume(grpc::ServerContext*,
                                   const ::csi::v1::NodeUnpublishVolumeRequest*,
                                   ::csi::v1::NodeUnpublishVolumeResponse*) override;
  grpc::Status NodeGetVolumeStats(grpc::ServerContext*, const ::csi::v1::NodeGetVolumeStatsRequest*,
                                  ::csi::v1::NodeGetVolumeStatsResponse*) override;
  grpc::Status NodeGetCapabilities(grpc::ServerContext*,
                                   const ::csi::v1::NodeGetCapabilitiesRequest*,
                                   ::csi::v1::NodeGetCapabilitiesResponse*) override;
  grpc::Status NodeGetInfo(grpc::ServerContext*, const ::csi::v1::NodeGetInfoRequest*,
                           ::csi::v1::NodeGetInfoResponse*) override;

 private:
  std::vector<std::string> MounterEnv() const;
  // What Launch was given for `p`, rebuilt from its record.
  LaunchSpec SpecOf(const Publication& p) const;
  absl::Status DoPublish(const ::csi::v1::NodePublishVolumeRequest& req);
  absl::Status DoUnpublish(const ::csi::v1::NodeUnpublishVolumeRequest& req);
  absl::Status DoStats(const ::csi::v1::NodeGetVolumeStatsRequest& req,
                       ::csi::v1::NodeGetVolumeStatsResponse* resp);
  const CsiOptions& options_;
  VolumeApi* api_;
  StateFile* state_file_;
  MounterLauncher* launcher_;
  absl::Mutex mu_;
  PluginState state_ ABSL_GUARDED_BY(mu_);
};

class RegistrationService final : public ::pluginregistration::Registration::Service {
 public:
  explicit RegistrationService(std::string csi_socket) : csi_socket_(std::move(csi_socket)) {}
  grpc::Status GetInfo(grpc::ServerContext*, const ::pluginregistration::InfoRequest*,
                       ::pluginregistration::PluginInfo*) override;
  grpc::Status NotifyRegistrationStatus(grpc::ServerContext*,
                                        const ::pluginregistration::RegistrationStatus*,
                                        ::pluginregistration::RegistrationStatusResponse*) override;
  // The last status the kubelet reported; false until it reported success.
  bool registered() const;

 private:
  std::string csi_socket_;
  mutable absl::Mutex mu_;
  bool registered_ ABSL_GUARDED_BY(mu_) = false;
};

// Serves until SIGTERM or SIGINT; returns the process exit code. SIGUSR2
// upgrades every mounter of the node (NodeService::UpgradeMounters).
int RunPlugin(const CsiOptions& options);

// Validates a CSI volume capability for a FUSE mount: mount access only,
// fs_type "" or "cairn", a known access mode. InvalidArgument otherwise.
[[nodiscard]] absl::Status CheckCapability(const ::csi::v1::VolumeCapability& cap);

}  // namespace cairn::csi
