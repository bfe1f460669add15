#include "mounter/testing/engine_volume_client.h"

#include "absl/strings/str_cat.h"
#include "core/api_convert.h"
#include "core/testing/mem_stores.h"
#include "core/crypto.h"
#include "core/status.h"

namespace cairn::mounter::testing {
EngineVolumeClient::EngineVolumeClient()
    : meta_(NewMemMetaStore()), store_(NewMemBlobStore()) {
  auto master = MasterKey::FromBytes(RandomBytes(MasterKey::kSize));
  engine_ = std::make_unique<Engine>(meta_.get(), store_.get(), *std::move(master));
}

EngineVolumeClient::~EngineVolumeClient() = default;

absl::StatusOr<api::OpenVolumeResponse> EngineVolumeClient::Describe(const VolumeRecord& volume) {
  CAIRN_ASSIGN_OR_RETURN(DataKey key, engine_->DataKeyFor(volume));
  CAIRN_ASSIGN_OR_RETURN(SnapshotRecord head, engine_->Head(volume.id));
  api::OpenVolumeResponse resp;
  resp.mutable_volume()->set_id(volume.id);
  resp.mutable_volume()->set_name(volume.name);
  resp.mutable_volume()->set_version(volume.version);
  resp.set_data_key(std::string(key.bytes()));
  *resp.mutable_head() = ToApi(head);
  resp.set_max_inodes(volume.limits.max_inodes);
  resp.set_max_dir_entries(volume.limits.max_dir_entries);
  resp.set_max_file_size(volume.limits.max_file_size);
  resp.set_hard_links(volume.limits.hard_links);
  return resp;
}

absl::StatusOr<api::OpenVolumeResponse> EngineVolumeClient::CreateVolume(
    const std::string& name, int version, std::optional<Limits> limits) {
  CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume,
                         engine_->CreateVolume("default", name, version, limits));
  return Describe(volume);
}

absl::StatusOr<api::OpenVolumeResponse> EngineVolumeClient::Open(const api::VolumeRef& ref) {
  absl::StatusOr<VolumeRecord> volume = ref.id().empty()
                                            ? engine_->GetVolume(ref.namespace_(), ref.name())
                                            : engine_->GetVolumeById(ref.id());
  CAIRN_RETURN_IF_ERROR(volume.status());
  return Describe(*volume);
}

absl::StatusOr<api::Snapshot> EngineVolumeClient::Head(std::string_view volume_id) {
  CAIRN_ASSIGN_OR_RETURN(SnapshotRecord head, engine_->Head(volume_id));
  return ToApi(head);
}

absl::StatusOr<api::Snapshot> EngineVolumeClient::Commit(std::string_view volume_id, uint64_t,
                                                         const objects::ChangeSet& changes,
                                                         std::string_view idempotency_key) {
  std::string key(idempotency_key);
  {
    absl::MutexLock lock(&mu_);
    keys_.push_back(key);
  }
  CommitFault fault;
  if (on_commit) fault = on_commit(changes);
  if (!fault.status.ok() && !fault.applied) return fault.status;
  // The engine deduplicates by key as the server does (and refuses a key
  // repeated with a different change set).
  CAIRN_ASSIGN_OR_RETURN(SnapshotRecord next, engine_->Commit(volume_id, changes, key));
  api::Snapshot out = ToApi(next);
  if (!fault.status.ok()) return fault.status;
  return out;
}

std::vector<std::string> EngineVolumeClient::keys() const {
  absl::MutexLock lock(&mu_);
  return keys_;
}

int EngineVolumeClient::commit_calls() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(keys_.size());
}

absl::Status EngineVolumeClient::HookedBlobs::Put(std::string_view v, const Digest& a,
                                                  std::string_view s) {
  return owner_->store_->Put(v, a, s);
}
absl::StatusOr<std::string> EngineVolumeClient::HookedBlobs::Get(std::string_view v,
                                                                 const Digest& a) {
  if (owner_->on_get) owner_->on_get(a);
  return owner_->store_->Get(v, a);
}
absl::StatusOr<BlobStore::Range> EngineVolumeClient::HookedBlobs::GetRange(std::string_view v,
                                                                           const Digest& a,
                                                                           uint64_t offset,
                                                                           uint64_t length) {
  if (owner_->on_get) owner_->on_get(a);
  return owner_->store_->GetRange(v, a, offset, length);
}
absl::StatusOr<bool> EngineVolumeClient::HookedBlobs::Contains(std::string_view v,
                                                               const Digest& a) {
  return owner_->store_->Contains(v, a);
}
absl::Status EngineVolumeClient::HookedBlobs::Touch(std::string_view v, const Digest& a) {
  return owner_->store_->Touch(v, a);
}
absl::Status EngineVolumeClient::HookedBlobs::List(
    std::string_view v, const std::function<void(const BlobInfo&)>& fn) {
  return owner_->store_->List(v, fn);
}
absl::Status EngineVolumeClient::HookedBlobs::Delete(std::string_view v, const Digest& a) {
  return owner_->store_->Delete(v, a);
}
absl::StatusOr<std::vector<std::string>> EngineVolumeClient::HookedBlobs::ListVolumes() {
  return owner_->store_->ListVolumes();
}
absl::Status EngineVolumeClient::HookedBlobs::DeleteVolume(std::string_view v) {
  return owner_->store_->DeleteVolume(v);
}

}  // namespace cairn::mounter::testing
