// Node service: one detached cairn-mount per publish (csi/driver.h).
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/crypto.h"
#include "core/digest.h"
#include "mounter/control.h"
#include "core/log.h"
#include "core/path.h"
#include "core/rpc_client.h"
#include "core/status.h"
#include "csi/driver.h"

namespace cairn::csi {
namespace fs = std::filesystem;
namespace v1 = ::csi::v1;

namespace {

std::string Ctx(const google::protobuf::Map<std::string, std::string>& m, const std::string& k) {
  auto it = m.find(k);
  return it == m.end() ? "" : it->second;
}

absl::StatusOr<bool> Bool(const std::string& key, const std::string& value) {
  std::string v = absl::AsciiStrToLower(value);
  if (v.empty() || v == "false" || v == "0" || v == "no") return false;
  if (v == "true" || v == "1" || v == "yes") return true;
  return absl::InvalidArgumentError(absl::StrCat("volume attribute ", key,
                                                 " must be true or false, not \"", value, "\""));
}

bool ReadOnlyMode(const v1::VolumeCapability& cap) {
  auto m = cap.access_mode().mode();
  return m == v1::VolumeCapability::AccessMode::SINGLE_NODE_READER_ONLY ||
         m == v1::VolumeCapability::AccessMode::MULTI_NODE_READER_ONLY;
}

grpc::Status Reply(std::string_view rpc, const absl::Status& st) {
  if (!st.ok()) CAIRN_LOG_WARNING("%s: %s", rpc, st.ToString());
  return ToGrpc(st);
}

// A target path as the kubelet gives it: absolute, normalised, and under
// --kubelet-dir when that is set.
absl::StatusOr<fs::path> CheckTarget(const std::string& path, const fs::path& kubelet_dir) {
  if (path.empty()) return absl::InvalidArgumentError("target_path is required");
  fs::path p(path);
  if (!p.is_absolute()) {
    return absl::InvalidArgumentError(absl::StrCat("target_path must be absolute: ", path));
  }
  p = p.lexically_normal();
  if (p.has_filename() == false) p = p.parent_path();
  if (!kubelet_dir.empty()) {
    fs::path rel = p.lexically_relative(kubelet_dir);
    if (rel.empty() || *rel.begin() == ".." || rel == ".") {
      return absl::InvalidArgumentError(absl::StrCat("target_path ", p.string(),
                                                     " is outside the kubelet directory ",
                                                     kubelet_dir.string()));
    }
  }
  return p;
}

void RemoveTargetDir(const fs::path& target) {
  if (::rmdir(target.c_str()) != 0 && errno != ENOENT && errno != ENOTEMPTY) {
    CAIRN_LOG_WARNING("cannot remove %s: %s", target.string(), std::strerror(errno));
  }
}

}  // namespace

std::vector<std::string> NodeService::MounterEnv() const {
  std::vector<std::string> env;
  if (!options_.token_file.empty()) {
    env.push_back(absl::StrCat("CAIRN_TOKEN_FILE=", options_.token_file));
  }
  return env;
}

LaunchSpec NodeService::SpecOf(const Publication& p) const {
  LaunchSpec spec;
  spec.binary = options_.mounter;
  spec.args = p.mounter_args;
  spec.env = MounterEnv();
  spec.log_file = p.log_file;
  spec.target = p.target;
  spec.volume_id = p.cairn_id;
  return spec;
}

void NodeService::RepairMounters() {
  absl::MutexLock lock(&mu_);
  PluginState next = state_;
  bool changed = false;
  std::vector<MounterId> live;
  for (auto& [target, p] : next.publications) {
    if (!p.mounter.pod.empty() && IsAlive(p.mounter) && !p.mounter_args.empty()) {
      std::string was = p.mounter.pod;
      if (auto st = launcher_->Repair(SpecOf(p), &p.mounter); !st.ok()) {
        CAIRN_LOG_WARNING("mounter of %s at %s: %s", p.cairn_id, target, st.ToString());
      }
      changed |= p.mounter.pod != was;
    }
    live.push_back(p.mounter);
  }
  if (changed) {
    if (auto st = state_file_->Save(next); !st.ok()) {
      CAIRN_LOG_WARNING("cannot record the new mounter pods: %s", st.ToString());
    } else {
      state_ = std::move(next);
    }
  }
  if (auto st = launcher_->CollectGarbage(live); !st.ok()) {
    CAIRN_LOG_WARNING("mounter pods: %s", st.ToString());
  }
}

absl::Status NodeService::Init() {
  CAIRN_ASSIGN_OR_RETURN(PluginState loaded, state_file_->Load());
  absl::MutexLock lock(&mu_);
  state_ = std::move(loaded);
  for (const auto& [target, p] : state_.publications) {
    if (IsAlive(p.mounter) && IsCairnMounted(target)) {
      CAIRN_LOG_INFO("re-adopted the mount of %s at %s (mounter %d)", p.cairn_id, target,
                     p.mounter.pid);
    } else {
      CAIRN_LOG_WARNING("the mounter of %s at %s is gone; unpublish will clean up", p.cairn_id,
                        target);
    }
  }
  return absl::OkStatus();
}

size_t NodeService::UpgradeMounters() {
  absl::MutexLock lock(&mu_);
  size_t asked = 0;
  for (const auto& [target, p] : state_.publications) {
    if (!IsAlive(p.mounter)) continue;
    if (auto st = launcher_->Upgrade(p.mounter); !st.ok()) {
      CAIRN_LOG_WARNING("upgrade of the mounter of %s at %s: %s", p.cairn_id, target,
                        st.ToString());
      continue;
    }
    CAIRN_LOG_INFO("upgrading the mounter of %s at %s (holder %d)", p.cairn_id, target,
                   p.mounter.pid);
    ++asked;
  }
  return asked;
}

grpc::Status NodeService::NodeGetCapabilities(grpc::ServerContext*,
                                              const v1::NodeGetCapabilitiesRequest*,
                                              v1::NodeGetCapabilitiesResponse* resp) {
  for (auto type : {v1::NodeServiceCapability::RPC::GET_VOLUME_STATS,
                    v1::NodeServiceCapability::RPC::VOLUME_CONDITION,
                    v1::NodeServiceCapability::RPC::SINGLE_NODE_MULTI_WRITER,
                    // The kubelet hands the pod's fsGroup to NodePublish
                    // instead of chowning every file (fsGroupPolicy: File);
                    // the mounter presents the volume with that group.
                    v1::NodeServiceCapability::RPC::VOLUME_MOUNT_GROUP}) {
    resp->add_capabilities()->mutable_rpc()->set_type(type);
  }
  return grpc::Status::OK;
}

grpc::Status NodeService::NodeGetInfo(grpc::ServerContext*, const v1::NodeGetInfoRequest*,
                                      v1::NodeGetInfoResponse* resp) {
  resp->set_node_id(options_.node_id);
  return grpc::Status::OK;
}

grpc::Status NodeService::NodePublishVolume(grpc::ServerContext*,
                                            const v1::NodePublishVolumeRequest* req,
                                            v1::NodePublishVolumeResponse*) {
  return Reply("NodePublishVolume", DoPublish(*req));
}

absl::Status NodeService::DoPublish(const v1::NodePublishVolumeRequest& req) {
  if (req.volume_id().empty()) return absl::InvalidArgumentError("volume_id is required");
  CAIRN_ASSIGN_OR_RETURN(fs::path target, CheckTarget(req.target_path(), options_.kubelet_dir));
  if (!req.has_volume_capability()) {
    return absl::InvalidArgumentError("volume_capability is required");
  }
  CAIRN_RETURN_IF_ERROR(CheckCapability(req.volume_capability()));
  const auto& ctx = req.volume_context();
  bool read_only = req.readonly() || ReadOnlyMode(req.volume_capability());
  CAIRN_ASSIGN_OR_RETURN(bool ephemeral, Bool(kCtxEphemeral, Ctx(ctx, kCtxEphemeral)));
  CAIRN_ASSIGN_OR_RETURN(bool create_if_missing,
                         Bool(kCtxCreateIfMissing, Ctx(ctx, kCtxCreateIfMissing)));
  std::string pod_ns = Ctx(ctx, kCtxPodNamespace);
  std::string asked_ns = Ctx(ctx, kCtxNamespace);
  std::string ns;
  if (ephemeral) {
    // The pod's author wrote these attributes: the pod's own namespace is
    // the only one it may reach.
    if (pod_ns.empty()) {
      return absl::InvalidArgumentError(
          "an inline volume needs the pod's namespace: the CSIDriver must set podInfoOnMount: true");
    }
    if (!asked_ns.empty() && asked_ns != pod_ns) {
      return absl::PermissionDeniedError(absl::StrCat(
          "an inline volume of a pod in namespace ", pod_ns, " may not use namespace ", asked_ns,
          "; use a PersistentVolume for volumes of other namespaces"));
    }
    ns = pod_ns;
  } else {
    ns = !asked_ns.empty() ? asked_ns : (!pod_ns.empty() ? pod_ns : "default");
  }
  CAIRN_RETURN_IF_ERROR(ValidateNamespace(ns));
  std::string name = Ctx(ctx, kCtxVolume);
  CAIRN_ASSIGN_OR_RETURN(bool anonymous, Bool(kCtxAnonymous, Ctx(ctx, kCtxAnonymous)));
  if (anonymous) {
    if (!ephemeral) {
      return absl::InvalidArgumentError(
          "ephemeral: \"true\" is for inline volumes in a pod spec (a new volume per pod)");
    }
    if (!name.empty() || create_if_missing) {
      return absl::InvalidArgumentError(
          "an ephemeral volume is anonymous: give it no volume name and no createIfMissing");
    }
  }
  bool by_id = !ephemeral && req.volume_id().starts_with("vo-");
  if (by_id) {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(req.volume_id()));
  } else if (!anonymous) {  // an anonymous volume is made below
    if (name.empty()) {
      return absl::NotFoundError(absl::StrCat("volume ", req.volume_id(),
                                              " is not a Cairn volume ID (vo-…) and the volume "
                                              "attributes name no volume"));
    }
    CAIRN_RETURN_IF_ERROR(ValidateVolumeName(name));
  }
  std::string sub_path;
  if (std::string s = Ctx(ctx, kCtxSubPath); !s.empty()) {
    auto normalized = NormalizePath(s);
    if (!normalized.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("subPath: ", normalized.status().message()));
    }
    sub_path = *normalized;
  }
  std::string commit_interval = Ctx(ctx, kCtxCommitInterval);
  if (!commit_interval.empty()) {
    double s;
    if (!absl::SimpleAtod(commit_interval, &s) || s <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "commitInterval must be a positive number of seconds, not \"", commit_interval, "\""));
    }
  }
  uint32_t version = 0;
  if (std::string v = Ctx(ctx, kCtxVersion); !v.empty()) {
    if (!absl::SimpleAtoi(v, &version) || (version != 1 && version != 2)) {
      return absl::InvalidArgumentError(absl::StrCat("version must be 1 or 2, not \"", v, "\""));
    }
  }
  const std::string& mount_group = req.volume_capability().mount().volume_mount_group();
  if (!mount_group.empty()) {
    uint32_t gid;
    // (gid_t)-1 means "no group" to chown(2): not a group a volume can show.
    if (!absl::SimpleAtoi(mount_group, &gid) || gid == UINT32_MAX ||
        !std::all_of(mount_group.begin(), mount_group.end(),
                     [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); })) {
      return absl::InvalidArgumentError(absl::StrCat(
          "volume_mount_group must be a numeric group ID (the pod's fsGroup), not \"",
          mount_group, "\""));
    }
  }
  std::string fingerprint = absl::StrJoin(
      {by_id      ? req.volume_id()
       : anonymous ? absl::StrCat(ns, "/ephemeral:", req.volume_id())
                   : absl::StrCat(ns, "/", name),
       std::string(read_only ? "ro" : "rw"), sub_path, commit_interval},
      "|");
  // Only when set, so publications recorded before the group existed keep
  // their fingerprint and a repeated publish of them stays OK.
  if (!mount_group.empty()) absl::StrAppend(&fingerprint, "|group=", mount_group);

  std::string reuse_id;
  absl::MutexLock lock(&mu_);
  if (auto it = state_.publications.find(target.string()); it != state_.publications.end()) {
    const Publication& p = it->second;
    bool serving = IsAlive(p.mounter) && IsCairnMounted(target);
    if (p.fingerprint != fingerprint) {
      return absl::AlreadyExistsError(absl::StrCat(
          target.string(), " is already published with other arguments (", p.fingerprint, ")"));
    }
    if (serving) return absl::OkStatus();
    CAIRN_LOG_WARNING("the mounter at %s is gone; mounting again", target.string());
    // The same anonymous volume again, if its lease has not lapsed yet.
    if (anonymous) reuse_id = p.cairn_id;
    (void)LazyUnmount(target);
    PluginState next = state_;
    next.publications.erase(target.string());
    CAIRN_RETURN_IF_ERROR(state_file_->Save(next));
    state_ = std::move(next);
  } else if (IsMountPoint(target)) {
    return absl::FailedPreconditionError(
        absl::StrCat("something this plugin did not mount is mounted at ", target.string()));
  }

  api::VolumeRef ref;
  ref.set_namespace_(ns);
  if (by_id) {
    ref.set_id(req.volume_id());
  } else if (!reuse_id.empty()) {
    ref.set_id(reuse_id);
  } else {
    ref.set_name(name);
  }
  absl::StatusOr<api::Volume> volume;
  if (anonymous && reuse_id.empty()) {
    // Its lease (30 s) lasts until the mounter, which renews it at once,
    // is up; if the mount fails the volume lapses on its own.
    api::CreateVolumeRequest create;
    create.set_namespace_(ns);
    create.set_version(version);
    create.set_ephemeral(true);
    volume = api_->Create(create);
  } else {
    volume = api_->Get(ref);
  }
  if (!volume.ok() && volume.status().code() == absl::StatusCode::kNotFound && !anonymous) {
    if (!create_if_missing || by_id) {
      return absl::NotFoundError(absl::StrCat(
          by_id ? absl::StrCat("volume ", req.volume_id())
                : absl::StrCat("volume ", name, " in namespace ", ns),
          " does not exist", by_id ? "" : " (set createIfMissing: \"true\" to create it)"));
    }
    api::CreateVolumeRequest create;
    create.set_namespace_(ns);
    create.set_name(name);
    create.set_version(version);
    create.set_create_if_missing(true);
    volume = api_->Create(create);
  }
  if (!volume.ok()) return volume.status();
  bool single_writer = req.volume_capability().access_mode().mode() ==
                       v1::VolumeCapability::AccessMode::SINGLE_NODE_SINGLE_WRITER;
  for (const auto& [other_target, other] : state_.publications) {
    if (other.cairn_id == volume->id() && (single_writer || other.single_writer)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "volume ", volume->id(), " is published at ", other_target,
          " and one of the two publishes asks for SINGLE_NODE_SINGLE_WRITER access"));
    }
  }
  if (version != 0 && volume->version() != version) {
    return absl::FailedPreconditionError(absl::StrCat("volume ", volume->name(), " is version ",
                                                      volume->version(), ", not ", version));
  }

  bool made_dir = false;
  std::error_code ec;
  if (!fs::exists(target, ec)) {
    if (!fs::create_directory(target, ec) && ec) {
      return ErrnoToStatus(ec.value(), absl::StrCat("create ", target.string()));
    }
    made_dir = true;
  }
  fs::path logs = options_.state_dir / "logs";
  fs::create_directories(logs, ec);
  LaunchSpec spec;
  spec.binary = options_.mounter;
  spec.target = target;
  spec.log_file = logs / absl::StrCat(Sha256(target.string()).ToHex().substr(0, 16), ".log");
  spec.args = {volume->id(), target.string(), "--namespace", volume->namespace_(), "--server",
               options_.client.server, "--cache-dir", options_.cache_dir.string(),
               "--final-commit-timeout",
               absl::StrCat(absl::ToDoubleSeconds(options_.final_commit_timeout))};
  // A mounter that dies or is upgraded hands the pod's mount over instead
  // of breaking it (docs/csi.md "Restarts and failures").
  spec.args.push_back("--handover");
  if (read_only) spec.args.push_back("--read-only");
  if (!sub_path.empty()) spec.args.insert(spec.args.end(), {"--sub-path", sub_path});
  if (!mount_group.empty()) spec.args.insert(spec.args.end(), {"--mount-group", mount_group});
  if (!commit_interval.empty()) {
    spec.args.insert(spec.args.end(), {"--commit-interval", commit_interval});
  }
  spec.env = MounterEnv();
  spec.volume_id = volume->id();
  auto mounter = launcher_->Launch(spec, options_.mount_timeout);
  if (!mounter.ok()) {
    if (made_dir) RemoveTargetDir(target);
    return absl::Status(mounter.status().code() == absl::StatusCode::kDeadlineExceeded
                            ? absl::StatusCode::kDeadlineExceeded
                            : absl::StatusCode::kInternal,
                        absl::StrCat("mounting ", volume->id(), " at ", target.string(),
                                     " failed: ", mounter.status().message()));
  }
  Publication p;
  p.volume_id = req.volume_id();
  p.cairn_id = volume->id();
  p.ns = volume->namespace_();
  p.target = target.string();
  p.read_only = read_only;
  p.single_writer = single_writer;
  p.fingerprint = fingerprint;
  p.mounter = *mounter;
  p.log_file = spec.log_file.string();
  p.mounter_args = spec.args;
  PluginState next = state_;
  next.publications[p.target] = p;
  if (absl::Status st = state_file_->Save(next); !st.ok()) {
    (void)launcher_->Stop(*mounter, options_.final_commit_timeout);
    (void)LazyUnmount(target);
    if (made_dir) RemoveTargetDir(target);
    return absl::UnavailableError(absl::StrCat("cannot record the mount: ", st.message()));
  }
  state_ = std::move(next);
  CAIRN_LOG_INFO("published %s (%s/%s) at %s%s, mounter %d", volume->id(), volume->namespace_(),
                 volume->name(), target.string(), read_only ? " read-only" : "", mounter->pid);
  return absl::OkStatus();
}

grpc::Status NodeService::NodeUnpublishVolume(grpc::ServerContext*,
                                              const v1::NodeUnpublishVolumeRequest* req,
                                              v1::NodeUnpublishVolumeResponse*) {
  return Reply("NodeUnpublishVolume", DoUnpublish(*req));
}

absl::Status NodeService::DoUnpublish(const v1::NodeUnpublishVolumeRequest& req) {
  if (req.volume_id().empty()) return absl::InvalidArgumentError("volume_id is required");
  CAIRN_ASSIGN_OR_RETURN(fs::path target, CheckTarget(req.target_path(), options_.kubelet_dir));
  absl::MutexLock lock(&mu_);
  auto it = state_.publications.find(target.string());
  if (it == state_.publications.end()) {
    // Not ours (or already gone): a Cairn mount left without a record is
    // detached so that the kubelet can clean up; anything else stays.
    if (IsCairnMounted(target)) CAIRN_RETURN_IF_ERROR(LazyUnmount(target));
    if (!IsMountPoint(target)) RemoveTargetDir(target);
    return absl::OkStatus();
  }
  Publication p = it->second;
  if (IsAlive(p.mounter) && IsCairnMounted(target)) {
    // A mounter pod must serve the final commit: one deleted a moment ago
    // is replaced first (the commit waits for it to take over).
    if (!p.mounter.pod.empty() && !p.mounter_args.empty()) {
      CAIRN_RETURN_IF_ERROR(launcher_->Repair(SpecOf(p), &p.mounter));
      if (p.mounter.pod != it->second.mounter.pod) {
        // Recorded, so that a failing commit below (kubelet retry) does
        // not leave the new pod to the garbage collection.
        PluginState next = state_;
        next.publications[p.target].mounter = p.mounter;
        CAIRN_RETURN_IF_ERROR(state_file_->Save(next));
        state_ = std::move(next);
      }
    }
    if (!p.read_only) {
      // Commit while the mount still serves: a failure leaves the mount
      // (and its uncommitted writes) in place for the kubelet's retry,
      // instead of the mounter giving up on them at exit.
      if (::setxattr(target.c_str(), mounter::kCommitAttr, "1", 1, 0) != 0) {
        int err = errno;
        return absl::UnavailableError(absl::StrCat(
            "the final commit of ", p.cairn_id, " at ", target.string(), " failed (",
            std::strerror(err), "); the mount stays until a retry succeeds"));
      }
    }
    CAIRN_RETURN_IF_ERROR(launcher_->Stop(p.mounter, options_.final_commit_timeout +
                                                         absl::Seconds(10)));
  }
  CAIRN_RETURN_IF_ERROR(LazyUnmount(target));
  PluginState next = state_;
  next.publications.erase(target.string());
  CAIRN_RETURN_IF_ERROR(state_file_->Save(next));
  state_ = std::move(next);
  RemoveTargetDir(target);
  CAIRN_LOG_INFO("unpublished %s from %s", p.cairn_id, target.string());
  return absl::OkStatus();
}

grpc::Status NodeService::NodeGetVolumeStats(grpc::ServerContext*,
                                             const v1::NodeGetVolumeStatsRequest* req,
                                             v1::NodeGetVolumeStatsResponse* resp) {
  return Reply("NodeGetVolumeStats", DoStats(*req, resp));
}

absl::Status NodeService::DoStats(const v1::NodeGetVolumeStatsRequest& req,
                                  v1::NodeGetVolumeStatsResponse* resp) {
  if (req.volume_id().empty()) return absl::InvalidArgumentError("volume_id is required");
  if (req.volume_path().empty()) return absl::InvalidArgumentError("volume_path is required");
  fs::path path = fs::path(req.volume_path()).lexically_normal();
  if (path.has_filename() == false) path = path.parent_path();
  Publication p;
  {
    absl::MutexLock lock(&mu_);
    auto it = state_.publications.find(path.string());
    if (it == state_.publications.end() || it->second.volume_id != req.volume_id()) {
      return absl::NotFoundError(absl::StrCat("volume ", req.volume_id(), " is not published at ",
                                              path.string()));
    }
    p = it->second;
  }
  auto* condition = resp->mutable_volume_condition();
  if (!IsAlive(p.mounter) || !IsCairnMounted(path)) {
    condition->set_abnormal(true);
    condition->set_message(absl::StrCat("the mounter of ", p.cairn_id,
                                        " is not running; the mount does not serve"));
    return absl::OkStatus();
  }
  struct statvfs st;
  if (::statvfs(path.c_str(), &st) != 0) {
    condition->set_abnormal(true);
    condition->set_message(absl::StrCat("statfs of the mount failed: ", std::strerror(errno)));
    return absl::OkStatus();
  }
  condition->set_abnormal(false);
  condition->set_message("mounted");
  auto* bytes = resp->add_usage();
  bytes->set_unit(v1::VolumeUsage::BYTES);
  bytes->set_total(static_cast<int64_t>(st.f_blocks * st.f_frsize));
  bytes->set_available(static_cast<int64_t>(st.f_bavail * st.f_frsize));
  bytes->set_used(static_cast<int64_t>((st.f_blocks - st.f_bfree) * st.f_frsize));
  auto* inodes = resp->add_usage();
  inodes->set_unit(v1::VolumeUsage::INODES);
  inodes->set_total(static_cast<int64_t>(st.f_files));
  inodes->set_available(static_cast<int64_t>(st.f_favail));
  inodes->set_used(static_cast<int64_t>(st.f_files - st.f_ffree));
  return absl::OkStatus();
}

}  // namespace cairn::csi
