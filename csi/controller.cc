// Controller service: claims to named Cairn volumes (csi/driver.h).
#include <algorithm>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/crypto.h"
#include "core/digest.h"
#include "core/log.h"
#include "core/path.h"
#include "core/rpc_client.h"
#include "core/status.h"
#include "csi/driver.h"

namespace cairn::csi {
namespace v1 = ::csi::v1;

namespace {

std::string Param(const google::protobuf::Map<std::string, std::string>& m, const std::string& k) {
  auto it = m.find(k);
  return it == m.end() ? "" : it->second;
}

// A Cairn volume name for a request without volumeName or PVC name: the
// request name itself when it is a valid name, else a stable digest of it.
std::string NameFor(const std::string& request_name) {
  if (ValidateVolumeName(request_name).ok()) return request_name;
  return absl::StrCat("csi-", Sha256(request_name).ToHex().substr(0, 40));
}

std::string Fingerprint(const v1::CreateVolumeRequest& req) {
  std::vector<std::string> parts;
  std::vector<std::pair<std::string, std::string>> params(req.parameters().begin(),
                                                          req.parameters().end());
  std::sort(params.begin(), params.end());
  for (const auto& [k, v] : params) parts.push_back(absl::StrCat(k, "=", v));
  parts.push_back(absl::StrCat("required=", req.capacity_range().required_bytes()));
  parts.push_back(absl::StrCat("limit=", req.capacity_range().limit_bytes()));
  if (req.volume_content_source().has_snapshot()) {
    parts.push_back(absl::StrCat("snapshot=", req.volume_content_source().snapshot().snapshot_id()));
  } else if (req.volume_content_source().has_volume()) {
    parts.push_back(absl::StrCat("volume=", req.volume_content_source().volume().volume_id()));
  }
  return absl::StrJoin(parts, "\n");
}

void FillVolume(const Provisioned& p, v1::Volume* out) {
  out->set_volume_id(p.volume_id);
  if (p.source.starts_with("snapshot:")) {
    out->mutable_content_source()->mutable_snapshot()->set_snapshot_id(p.source.substr(9));
  } else if (p.source.starts_with("volume:")) {
    out->mutable_content_source()->mutable_volume()->set_volume_id(p.source.substr(7));
  }
  out->set_capacity_bytes(p.capacity_bytes);
  (*out->mutable_volume_context())[kCtxVolume] = p.name;
  (*out->mutable_volume_context())[kCtxNamespace] = p.ns;
}

// Claims that share one named volume share its volume ID, so a repeated
// DeleteVolume (which a CO may send, and the external-provisioner does) cannot
// be told from another claim's: counting them could delete the volume under
// a live claim. So once a second claim binds a volume, no DeleteVolume
// removes it; it is deleted through the Volume API (or a Volume resource).
void KeepIfShared(PluginState& next, const std::string& volume_id) {
  int bindings = 0;
  for (const auto& [name, e] : next.provisioned) bindings += e.volume_id == volume_id ? 1 : 0;
  if (bindings < 2) return;
  for (auto& [name, e] : next.provisioned) {
    if (e.volume_id != volume_id || !e.delete_on_delete) continue;
    e.delete_on_delete = false;
    CAIRN_LOG_INFO("volume %s/%s (%s) is shared by claims: DeleteVolume will keep it", e.ns, e.name,
                   volume_id);
  }
}

grpc::Status Reply(std::string_view rpc, const absl::Status& st) {
  if (!st.ok()) CAIRN_LOG_WARNING("%s: %s", rpc, st.ToString());
  return ToGrpc(st);
}

}  // namespace

absl::Status ControllerService::Init() {
  CAIRN_ASSIGN_OR_RETURN(PluginState loaded, state_file_->Load());
  absl::MutexLock lock(&mu_);
  state_ = std::move(loaded);
  return absl::OkStatus();
}

grpc::Status ControllerService::ControllerGetCapabilities(
    grpc::ServerContext*, const v1::ControllerGetCapabilitiesRequest*,
    v1::ControllerGetCapabilitiesResponse* resp) {
  for (auto type : {v1::ControllerServiceCapability::RPC::CREATE_DELETE_VOLUME,
                    v1::ControllerServiceCapability::RPC::LIST_VOLUMES,
                    v1::ControllerServiceCapability::RPC::SINGLE_NODE_MULTI_WRITER,
                    v1::ControllerServiceCapability::RPC::CREATE_DELETE_SNAPSHOT,
                    v1::ControllerServiceCapability::RPC::LIST_SNAPSHOTS,
                    v1::ControllerServiceCapability::RPC::CLONE_VOLUME,
                    v1::ControllerServiceCapability::RPC::GET_SNAPSHOT}) {
    resp->add_capabilities()->mutable_rpc()->set_type(type);
  }
  return grpc::Status::OK;
}

grpc::Status ControllerService::CreateVolume(grpc::ServerContext*,
                                             const v1::CreateVolumeRequest* req,
                                             v1::CreateVolumeResponse* resp) {
  return Reply("CreateVolume", DoCreate(*req, resp));
}

absl::Status ControllerService::DoCreate(const v1::CreateVolumeRequest& req,
                                         v1::CreateVolumeResponse* resp) {
  if (req.name().empty()) return absl::InvalidArgumentError("CreateVolume needs a name");
  if (req.volume_capabilities().empty()) {
    return absl::InvalidArgumentError("CreateVolume needs at least one volume capability");
  }
  for (const auto& cap : req.volume_capabilities()) CAIRN_RETURN_IF_ERROR(CheckCapability(cap));
  const auto& params = req.parameters();
  static const std::set<std::string> kKnown = {kParamVersion, kParamVolumeName,
                                               kParamDeletionPolicy, kParamNamespace,
                                               kParamPvcName, kParamPvcNamespace,
                                               "csi.storage.k8s.io/pv/name"};
  for (const auto& [k, v] : params) {
    if (!kKnown.contains(k)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown StorageClass parameter \"", k,
          "\" (known: version, volumeName, deletionPolicy, namespace)"));
    }
  }
  uint32_t version = 2;
  if (std::string v = Param(params, kParamVersion); !v.empty()) {
    if (!absl::SimpleAtoi(v, &version) || (version != 1 && version != 2)) {
      return absl::InvalidArgumentError(absl::StrCat("parameter version must be 1 or 2, not \"", v, "\""));
    }
  }
  std::string policy = Param(params, kParamDeletionPolicy);
  if (policy.empty()) policy = "Retain";
  if (policy != "Retain" && policy != "Delete") {
    return absl::InvalidArgumentError(
        absl::StrCat("parameter deletionPolicy must be Retain or Delete, not \"", policy, "\""));
  }
  std::string ns = Param(params, kParamNamespace);
  if (ns.empty()) ns = Param(params, kParamPvcNamespace);
  ns = NamespaceOrDefault(ns);
  CAIRN_RETURN_IF_ERROR(ValidateNamespace(ns));
  std::string name = Param(params, kParamVolumeName);
  if (name.empty()) name = Param(params, kParamPvcName);
  if (name.empty()) name = NameFor(req.name());
  CAIRN_RETURN_IF_ERROR(ValidateVolumeName(name));
  const auto& cap = req.capacity_range();
  if (cap.required_bytes() < 0 || cap.limit_bytes() < 0) {
    return absl::OutOfRangeError("capacity must not be negative");
  }
  if (cap.limit_bytes() > 0 && cap.required_bytes() > cap.limit_bytes()) {
    return absl::OutOfRangeError("required capacity exceeds the capacity limit");
  }
  std::string fingerprint = Fingerprint(req);

  absl::MutexLock lock(&mu_);
  api::VolumeRef ref;
  ref.set_namespace_(ns);
  ref.set_name(name);
  if (auto it = state_.provisioned.find(req.name()); it != state_.provisioned.end()) {
    if (it->second.fingerprint != fingerprint) {
      return absl::AlreadyExistsError(absl::StrCat(
          "volume request \"", req.name(), "\" already exists with different parameters or capacity"));
    }
    if (it->second.volume_id.empty()) {
      // An intent (see RecordIntent): an earlier attempt was creating
      // ns/name and did not get to record the result. The same parameters
      // give the same ns/name, so a volume there is the one it made.
      auto made = api_->Get(ref);
      if (made.ok()) {
        Provisioned p = it->second;
        p.volume_id = made->id();
        PluginState next = state_;
        next.provisioned[p.request_name] = p;
        KeepIfShared(next, p.volume_id);
        if (absl::Status st = state_file_->Save(next); !st.ok()) {
          return absl::UnavailableError(absl::StrCat("cannot record the new volume: ", st.message()));
        }
        state_ = std::move(next);
        CAIRN_LOG_INFO("CreateVolume %s -> %s/%s (%s, created by an interrupted attempt)", req.name(),
                       ns, name, p.volume_id);
        FillVolume(p, resp->mutable_volume());
        return absl::OkStatus();
      }
      if (made.status().code() != absl::StatusCode::kNotFound) return made.status();
    } else {
      // Still there? A volume deleted behind our back is created again.
      auto existing = api_->Get([&] {
        api::VolumeRef r;
        r.set_id(it->second.volume_id);
        return r;
      }());
      if (existing.ok()) {
        FillVolume(it->second, resp->mutable_volume());
        return absl::OkStatus();
      }
      if (existing.status().code() != absl::StatusCode::kNotFound) return existing.status();
    }
    state_.provisioned.erase(it);
  }
  Provisioned p;
  p.request_name = req.name();
  p.ns = ns;
  p.name = name;
  p.fingerprint = fingerprint;
  p.capacity_bytes = cap.required_bytes() > 0 ? cap.required_bytes() : cap.limit_bytes();
  p.delete_on_delete = policy == "Delete";
  // Write-ahead: before creating ns/name, record that this request is about
  // to (an entry without a volume ID). A crash after the create but before
  // the record below would otherwise leave a volume that the retry finds
  // and binds as someone else's, so policy Delete would never remove it.
  auto record_intent = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    Provisioned intent = p;
    intent.created = true;
    PluginState next = state_;
    next.provisioned[intent.request_name] = intent;
    if (absl::Status st = state_file_->Save(next); !st.ok()) {
      return absl::UnavailableError(absl::StrCat("cannot record the volume request: ", st.message()));
    }
    state_ = std::move(next);
    return absl::OkStatus();
  };
  // A create that surely failed leaves no intent behind; one whose outcome
  // is unknown keeps it for the retry to resolve.
  auto drop_intent_unless_unknown = [&](const absl::Status& st) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    absl::StatusCode c = st.code();
    if (c == absl::StatusCode::kUnavailable || c == absl::StatusCode::kDeadlineExceeded ||
        c == absl::StatusCode::kUnknown || c == absl::StatusCode::kAborted) {
      return;
    }
    PluginState next = state_;
    if (next.provisioned.erase(p.request_name) > 0 && state_file_->Save(next).ok()) {
      state_ = std::move(next);
    }
  };
  bool created = false;
  std::string source;
  absl::StatusOr<api::Volume> volume;
  if (req.has_volume_content_source()) {
    // A clone of a snapshot (itself a clone) or of a volume's head: a new
    // volume whose first head is that root; nothing is copied.
    std::string from;
    const auto& content = req.volume_content_source();
    if (content.has_snapshot()) {
      const std::string& id = content.snapshot().snapshot_id();
      if (!id.starts_with(kSnapshotIdPrefix)) {
        return absl::NotFoundError(absl::StrCat("no snapshot has ID \"", id, "\""));
      }
      from = id.substr(std::string_view(kSnapshotIdPrefix).size());
      source = absl::StrCat("snapshot:", id);
    } else if (content.has_volume()) {
      from = content.volume().volume_id();
      source = absl::StrCat("volume:", from);
    } else {
      return absl::InvalidArgumentError("volume_content_source names neither a snapshot nor a volume");
    }
    if (!ValidateVolumeId(from).ok()) {
      return absl::NotFoundError(absl::StrCat("no source volume or snapshot \"", from, "\""));
    }
    // A volume already there is someone else's: refuse before the intent,
    // which a retry would otherwise take as ours.
    if (auto there = api_->Get(ref); there.ok()) {
      return absl::AlreadyExistsError(absl::StrCat(
          "volume ", ns, "/", name, " exists; a volume made from a snapshot or clone must be new"));
    } else if (there.status().code() != absl::StatusCode::kNotFound) {
      return there.status();
    }
    CAIRN_RETURN_IF_ERROR(record_intent());
    volume = api_->Clone(from, ns, name);
    if (!volume.ok()) drop_intent_unless_unknown(volume.status());
    if (!volume.ok() && volume.status().code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError(absl::StrCat("the content source ", source.substr(source.find(':') + 1),
                                              " does not exist"));
    }
    if (!volume.ok() && volume.status().code() == absl::StatusCode::kAlreadyExists) {
      return absl::AlreadyExistsError(absl::StrCat(
          "volume ", ns, "/", name, " exists; a volume made from a snapshot or clone must be new"));
    }
    created = volume.ok();
  } else {
    volume = api_->Get(ref);
  }
  if (!req.has_volume_content_source() && !volume.ok() &&
      volume.status().code() == absl::StatusCode::kNotFound) {
    api::CreateVolumeRequest create;
    create.set_namespace_(ns);
    create.set_name(name);
    create.set_version(version);
    CAIRN_RETURN_IF_ERROR(record_intent());
    volume = api_->Create(create);
    if (!volume.ok()) drop_intent_unless_unknown(volume.status());
    created = volume.ok();
    // Another claim (or a person) created it between our look-up and our
    // create: bind it like any existing volume.
    if (!volume.ok() && volume.status().code() == absl::StatusCode::kAlreadyExists) {
      volume = api_->Get(ref);
    }
  }
  if (!volume.ok()) return volume.status();
  if (volume->version() != version && !Param(params, kParamVersion).empty()) {
    return absl::AlreadyExistsError(absl::StrCat("volume ", ns, "/", name, " exists as version ",
                                                 volume->version(), ", not ", version));
  }
  p.volume_id = volume->id();
  p.created = created;
  p.source = source;
  PluginState next = state_;
  next.provisioned[p.request_name] = p;
  KeepIfShared(next, p.volume_id);
  if (absl::Status st = state_file_->Save(next); !st.ok()) {
    if (created) (void)api_->Delete(p.volume_id);
    return absl::UnavailableError(absl::StrCat("cannot record the new volume: ", st.message()));
  }
  state_ = std::move(next);
  CAIRN_LOG_INFO("CreateVolume %s -> %s/%s (%s, %s)", req.name(), ns, name, p.volume_id,
                 created ? "created" : "bound");
  FillVolume(p, resp->mutable_volume());
  return absl::OkStatus();
}

grpc::Status ControllerService::DeleteVolume(grpc::ServerContext*,
                                             const v1::DeleteVolumeRequest* req,
                                             v1::DeleteVolumeResponse*) {
  return Reply("DeleteVolume", DoDelete(req->volume_id()));
}

absl::Status ControllerService::DoDelete(const std::string& volume_id) {
  if (volume_id.empty()) return absl::InvalidArgumentError("DeleteVolume needs a volume_id");
  absl::MutexLock lock(&mu_);
  // Claims that share one named volume share its ID, so a DeleteVolume
  // cannot say which claim it ends: it drops one binding, the creator's
  // last. A volume ever bound twice is kept (KeepIfShared).
  PluginState next = state_;
  auto victim = next.provisioned.end();
  for (auto it = next.provisioned.begin(); it != next.provisioned.end(); ++it) {
    if (it->second.volume_id != volume_id) continue;
    if (victim == next.provisioned.end() || (victim->second.created && !it->second.created)) {
      victim = it;
    }
  }
  if (victim == next.provisioned.end()) {
    CAIRN_LOG_INFO("DeleteVolume %s: not provisioned by this driver; nothing to do", volume_id);
    return absl::OkStatus();
  }
  Provisioned gone = victim->second;
  next.provisioned.erase(victim);
  bool still_bound = std::any_of(next.provisioned.begin(), next.provisioned.end(),
                                 [&](const auto& e) { return e.second.volume_id == volume_id; });
  if (gone.created && gone.delete_on_delete && !still_bound) {
    CAIRN_RETURN_IF_ERROR(api_->Delete(volume_id));
    CAIRN_LOG_INFO("DeleteVolume %s: deleted %s/%s (policy Delete)", volume_id, gone.ns, gone.name);
  } else {
    CAIRN_LOG_INFO("DeleteVolume %s: released claim %s, kept %s/%s (%s)", volume_id,
                   gone.request_name, gone.ns, gone.name,
                   still_bound ? "other claims bind it"
                               : (gone.created ? "policy Retain, or shared by claims" : "not created by this driver"));
  }
  if (next.provisioned.size() != state_.provisioned.size()) {
    CAIRN_RETURN_IF_ERROR(state_file_->Save(next));
    state_ = std::move(next);
  }
  return absl::OkStatus();
}

grpc::Status ControllerService::ValidateVolumeCapabilities(
    grpc::ServerContext*, const v1::ValidateVolumeCapabilitiesRequest* req,
    v1::ValidateVolumeCapabilitiesResponse* resp) {
  absl::Status st = [&]() -> absl::Status {
    if (req->volume_id().empty()) return absl::InvalidArgumentError("volume_id is required");
    if (req->volume_capabilities().empty()) {
      return absl::InvalidArgumentError("volume_capabilities are required");
    }
    if (!req->volume_id().starts_with("vo-")) {
      return absl::NotFoundError(absl::StrCat("no Cairn volume has ID ", req->volume_id()));
    }
    api::VolumeRef ref;
    ref.set_id(req->volume_id());
    CAIRN_RETURN_IF_ERROR(api_->Get(ref).status());
    for (const auto& cap : req->volume_capabilities()) {
      if (absl::Status c = CheckCapability(cap); !c.ok()) {
        resp->set_message(std::string(c.message()));
        return absl::OkStatus();
      }
    }
    auto* confirmed = resp->mutable_confirmed();
    *confirmed->mutable_volume_context() = req->volume_context();
    *confirmed->mutable_volume_capabilities() = req->volume_capabilities();
    *confirmed->mutable_parameters() = req->parameters();
    return absl::OkStatus();
  }();
  return Reply("ValidateVolumeCapabilities", st);
}

grpc::Status ControllerService::ListVolumes(grpc::ServerContext*,
                                            const v1::ListVolumesRequest* req,
                                            v1::ListVolumesResponse* resp) {
  absl::Status st = [&]() -> absl::Status {
    if (req->max_entries() < 0) return absl::InvalidArgumentError("max_entries must not be negative");
    // Tokens are the last volume ID of the previous page; the listing is in
    // ID order, so a page boundary survives volumes added or deleted.
    const std::string& token = req->starting_token();
    if (!token.empty() && !ValidateVolumeId(token).ok()) {
      return absl::AbortedError(absl::StrCat("invalid starting_token \"", token, "\""));
    }
    absl::MutexLock lock(&mu_);
    std::map<std::string, const Provisioned*> by_id;
    for (const auto& [name, p] : state_.provisioned) {
      if (!p.volume_id.empty()) by_id.emplace(p.volume_id, &p);  // not an unresolved intent
    }
    auto it = token.empty() ? by_id.begin() : by_id.upper_bound(token);
    size_t max = req->max_entries() > 0 ? static_cast<size_t>(req->max_entries()) : SIZE_MAX;
    for (; it != by_id.end() && static_cast<size_t>(resp->entries_size()) < max; ++it) {
      FillVolume(*it->second, resp->add_entries()->mutable_volume());
    }
    if (it != by_id.end()) resp->set_next_token(std::prev(it)->first);
    return absl::OkStatus();
  }();
  return Reply("ListVolumes", st);
}

// ---- Snapshots ------------------------------------------------------------

namespace {

void FillSnapshot(const SnapshotEntry& e, v1::Snapshot* out) {
  out->set_snapshot_id(e.snapshot_id);
  out->set_source_volume_id(e.source_volume_id);
  out->set_size_bytes(e.size_bytes);
  out->set_ready_to_use(true);
  out->mutable_creation_time()->set_seconds(e.created_at_ns / 1'000'000'000);
  out->mutable_creation_time()->set_nanos(static_cast<int32_t>(e.created_at_ns % 1'000'000'000));
}

}  // namespace

grpc::Status ControllerService::CreateSnapshot(grpc::ServerContext*,
                                               const v1::CreateSnapshotRequest* req,
                                               v1::CreateSnapshotResponse* resp) {
  return Reply("CreateSnapshot", DoCreateSnapshot(*req, resp));
}

absl::Status ControllerService::DoCreateSnapshot(const v1::CreateSnapshotRequest& req,
                                                 v1::CreateSnapshotResponse* resp) {
  if (req.name().empty()) return absl::InvalidArgumentError("CreateSnapshot needs a name");
  if (req.source_volume_id().empty()) {
    return absl::InvalidArgumentError("CreateSnapshot needs a source_volume_id");
  }
  absl::MutexLock lock(&mu_);
  if (auto it = state_.snapshots.find(req.name()); it != state_.snapshots.end()) {
    if (it->second.source_volume_id != req.source_volume_id()) {
      return absl::AlreadyExistsError(absl::StrCat("snapshot \"", req.name(),
                                                   "\" already exists for volume ",
                                                   it->second.source_volume_id));
    }
    FillSnapshot(it->second, resp->mutable_snapshot());
    return absl::OkStatus();
  }
  if (!ValidateVolumeId(req.source_volume_id()).ok()) {
    return absl::NotFoundError(absl::StrCat("no volume has ID ", req.source_volume_id()));
  }
  std::string name = NameFor(req.name());
  auto clone = api_->Clone(req.source_volume_id(), kSnapshotNamespace, name);
  if (!clone.ok() && clone.status().code() == absl::StatusCode::kAlreadyExists) {
    // Made by an earlier attempt that did not get to record it.
    api::VolumeRef ref;
    ref.set_namespace_(kSnapshotNamespace);
    ref.set_name(name);
    clone = api_->Get(ref);
  }
  if (!clone.ok()) return clone.status();
  SnapshotEntry e;
  e.request_name = req.name();
  e.snapshot_id = absl::StrCat(kSnapshotIdPrefix, clone->id());
  e.source_volume_id = req.source_volume_id();
  e.created_at_ns = clone->created_at_ns();
  e.size_bytes = static_cast<int64_t>(clone->bytes());
  PluginState next = state_;
  next.snapshots[e.request_name] = e;
  if (absl::Status st = state_file_->Save(next); !st.ok()) {
    (void)api_->Delete(clone->id());
    return absl::UnavailableError(absl::StrCat("cannot record the snapshot: ", st.message()));
  }
  state_ = std::move(next);
  CAIRN_LOG_INFO("CreateSnapshot %s of %s -> %s", req.name(), req.source_volume_id(), e.snapshot_id);
  FillSnapshot(e, resp->mutable_snapshot());
  return absl::OkStatus();
}

grpc::Status ControllerService::DeleteSnapshot(grpc::ServerContext*,
                                               const v1::DeleteSnapshotRequest* req,
                                               v1::DeleteSnapshotResponse*) {
  return Reply("DeleteSnapshot", DoDeleteSnapshot(req->snapshot_id()));
}

absl::Status ControllerService::DoDeleteSnapshot(const std::string& snapshot_id) {
  if (snapshot_id.empty()) return absl::InvalidArgumentError("DeleteSnapshot needs a snapshot_id");
  absl::MutexLock lock(&mu_);
  PluginState next = state_;
  for (auto it = next.snapshots.begin(); it != next.snapshots.end(); ++it) {
    if (it->second.snapshot_id != snapshot_id) continue;
    CAIRN_RETURN_IF_ERROR(
        api_->Delete(snapshot_id.substr(std::string_view(kSnapshotIdPrefix).size())));
    next.snapshots.erase(it);
    CAIRN_RETURN_IF_ERROR(state_file_->Save(next));
    state_ = std::move(next);
    CAIRN_LOG_INFO("DeleteSnapshot %s", snapshot_id);
    return absl::OkStatus();
  }
  return absl::OkStatus();  // gone already
}

grpc::Status ControllerService::ListSnapshots(grpc::ServerContext*,
                                              const v1::ListSnapshotsRequest* req,
                                              v1::ListSnapshotsResponse* resp) {
  absl::Status st = [&]() -> absl::Status {
    if (req->max_entries() < 0) return absl::InvalidArgumentError("max_entries must not be negative");
    const std::string& token = req->starting_token();
    if (!token.empty() && !token.starts_with(kSnapshotIdPrefix)) {
      return absl::AbortedError(absl::StrCat("invalid starting_token \"", token, "\""));
    }
    absl::MutexLock lock(&mu_);
    std::map<std::string, const SnapshotEntry*> by_id;
    for (const auto& [name, e] : state_.snapshots) {
      if (!req->snapshot_id().empty() && e.snapshot_id != req->snapshot_id()) continue;
      if (!req->source_volume_id().empty() && e.source_volume_id != req->source_volume_id()) continue;
      by_id.emplace(e.snapshot_id, &e);
    }
    auto it = token.empty() ? by_id.begin() : by_id.upper_bound(token);
    size_t max = req->max_entries() > 0 ? static_cast<size_t>(req->max_entries()) : SIZE_MAX;
    for (; it != by_id.end() && static_cast<size_t>(resp->entries_size()) < max; ++it) {
      FillSnapshot(*it->second, resp->add_entries()->mutable_snapshot());
    }
    if (it != by_id.end()) resp->set_next_token(std::prev(it)->first);
    return absl::OkStatus();
  }();
  return Reply("ListSnapshots", st);
}

grpc::Status ControllerService::GetSnapshot(grpc::ServerContext*,
                                            const v1::GetSnapshotRequest* req,
                                            v1::GetSnapshotResponse* resp) {
  absl::Status st = [&]() -> absl::Status {
    if (req->snapshot_id().empty()) return absl::InvalidArgumentError("GetSnapshot needs a snapshot_id");
    absl::MutexLock lock(&mu_);
    for (const auto& [name, e] : state_.snapshots) {
      if (e.snapshot_id == req->snapshot_id()) {
        FillSnapshot(e, resp->mutable_snapshot());
        return absl::OkStatus();
      }
    }
    return absl::NotFoundError(absl::StrCat("no snapshot has ID \"", req->snapshot_id(), "\""));
  }();
  return Reply("GetSnapshot", st);
}

}  // namespace cairn::csi
