#include "core/testing/fake_volume_api_client.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/object_store.h"
#include "core/status.h"
#include "core/testing/mem_stores.h"

namespace cairn {

class FakeVolumeApiClient::Stream final : public VolumeApiClient::PutStream {
 public:
  Stream(FakeVolumeApiClient* fake, std::string volume_id)
      : fake_(fake), volume_id_(std::move(volume_id)) {}
  absl::Status Write(const Digest& address, std::string&& sealed) override {
    pending_.emplace_back(address, std::move(sealed));
    return absl::OkStatus();
  }
  absl::Status Finish() override { return fake_->PutObjects(volume_id_, pending_); }

 private:
  FakeVolumeApiClient* const fake_;
  const std::string volume_id_;
  std::vector<std::pair<Digest, std::string>> pending_;
};

FakeVolumeApiClient::FakeVolumeApiClient(ClientOptions options)
    : VolumeApiClient(std::move(options)), blobs_(NewMemBlobStore()) {}

void FakeVolumeApiClient::FailNext(absl::Status status, int count) {
  absl::MutexLock lock(&mu_);
  fail_ = std::move(status);
  fail_count_ = count;
}

std::vector<api::CommitRequest> FakeVolumeApiClient::commits() const {
  absl::MutexLock lock(&mu_);
  return commits_;
}

std::vector<std::string> FakeVolumeApiClient::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

absl::Status FakeVolumeApiClient::Enter(std::string_view method) {
  absl::MutexLock lock(&mu_);
  calls_.emplace_back(method);
  if (fail_count_ > 0) {
    --fail_count_;
    return fail_;
  }
  return absl::OkStatus();
}

absl::StatusOr<FakeVolumeApiClient::Vol*> FakeVolumeApiClient::Find(const api::VolumeRef& ref) {
  if (!ref.id().empty()) {
    auto it = volumes_.find(ref.id());
    if (it == volumes_.end()) return absl::NotFoundError(absl::StrCat("volume ", ref.id(), " not found"));
    return &it->second;
  }
  for (auto& [id, v] : volumes_) {
    if (v.volume.namespace_() == ref.namespace_() && v.volume.name() == ref.name()) return &v;
  }
  return absl::NotFoundError(
      absl::StrCat("volume '", ref.name(), "' not found in namespace ", ref.namespace_()));
}

absl::StatusOr<api::Volume> FakeVolumeApiClient::CreateVolume(
    const api::CreateVolumeRequest& request) {
  CAIRN_RETURN_IF_ERROR(Enter("CreateVolume"));
  absl::MutexLock lock(&mu_);
  api::VolumeRef ref;
  ref.set_namespace_(request.namespace_());
  ref.set_name(request.name());
  if (absl::StatusOr<Vol*> found = Find(ref); found.ok()) {
    if (request.create_if_missing()) return (*found)->volume;
    return absl::AlreadyExistsError(absl::StrCat("volume '", request.name(), "' already exists"));
  }
  Vol v{.volume = {}, .key = DataKey::Generate(), .head = {}};
  const std::string id = absl::StrCat("vo-fake", next_id_++);
  v.volume.set_id(id);
  v.volume.set_namespace_(request.namespace_());
  v.volume.set_name(request.name());
  v.volume.set_version(request.version() == 0 ? 2 : request.version());
  v.volume.set_created_at_ns(absl::ToUnixNanos(absl::Now()));
  ObjectStore objects(blobs_.get(), id, v.key);
  CAIRN_ASSIGN_OR_RETURN(Digest root, objects.PutDirectory(objects::Directory()));
  v.head.set_volume_id(id);
  v.head.set_root(root.RawString());
  api::Volume out = v.volume;
  volumes_.emplace(id, std::move(v));
  return out;
}

absl::StatusOr<api::Volume> FakeVolumeApiClient::GetVolume(const api::VolumeRef& ref) {
  CAIRN_RETURN_IF_ERROR(Enter("GetVolume"));
  absl::MutexLock lock(&mu_);
  CAIRN_ASSIGN_OR_RETURN(Vol * v, Find(ref));
  return v->volume;
}

absl::StatusOr<api::ListVolumesResponse> FakeVolumeApiClient::ListVolumes(std::string_view ns) {
  CAIRN_RETURN_IF_ERROR(Enter("ListVolumes"));
  absl::MutexLock lock(&mu_);
  api::ListVolumesResponse response;
  for (const auto& [id, v] : volumes_) {
    if (v.volume.namespace_() == ns) *response.add_volumes() = v.volume;
  }
  return response;
}

absl::StatusOr<api::DeleteVolumeResponse> FakeVolumeApiClient::DeleteVolume(
    const api::DeleteVolumeRequest& request) {
  CAIRN_RETURN_IF_ERROR(Enter("DeleteVolume"));
  absl::MutexLock lock(&mu_);
  api::DeleteVolumeResponse response;
  absl::StatusOr<Vol*> v = Find(request.volume());
  if (absl::IsNotFound(v.status()) && request.allow_missing()) return response;
  if (!v.ok()) return v.status();
  volumes_.erase((*v)->volume.id());
  response.set_deleted(true);
  return response;
}

absl::StatusOr<api::Volume> FakeVolumeApiClient::RenameVolume(
    const api::RenameVolumeRequest& request) {
  CAIRN_RETURN_IF_ERROR(Enter("RenameVolume"));
  absl::MutexLock lock(&mu_);
  CAIRN_ASSIGN_OR_RETURN(Vol * v, Find(request.volume()));
  api::VolumeRef taken;
  taken.set_namespace_(v->volume.namespace_());
  taken.set_name(request.new_name());
  if (Find(taken).ok()) {
    return absl::AlreadyExistsError(absl::StrCat("volume '", request.new_name(), "' already exists"));
  }
  v->volume.set_name(request.new_name());
  return v->volume;
}

absl::StatusOr<std::vector<api::FileEntry>> FakeVolumeApiClient::ListFiles(
    const api::ListFilesRequest&) {
  CAIRN_RETURN_IF_ERROR(Enter("ListFiles"));
  return absl::UnimplementedError("the fake client serves no files; use a real server");
}
absl::StatusOr<api::FileEntry> FakeVolumeApiClient::Stat(const api::StatRequest&) {
  CAIRN_RETURN_IF_ERROR(Enter("Stat"));
  return absl::UnimplementedError("the fake client serves no files; use a real server");
}
absl::StatusOr<api::CommitResponse> FakeVolumeApiClient::RemoveFile(const api::RemoveFileRequest&) {
  CAIRN_RETURN_IF_ERROR(Enter("RemoveFile"));
  return absl::UnimplementedError("the fake client serves no files; use a real server");
}
absl::StatusOr<api::CommitResponse> FakeVolumeApiClient::CopyFiles(const api::CopyFilesRequest&) {
  CAIRN_RETURN_IF_ERROR(Enter("CopyFiles"));
  return absl::UnimplementedError("the fake client serves no files; use a real server");
}

absl::StatusOr<api::OpenVolumeResponse> FakeVolumeApiClient::OpenVolume(
    const api::VolumeRef& ref) {
  CAIRN_RETURN_IF_ERROR(Enter("OpenVolume"));
  absl::MutexLock lock(&mu_);
  CAIRN_ASSIGN_OR_RETURN(Vol * v, Find(ref));
  api::OpenVolumeResponse response;
  *response.mutable_volume() = v->volume;
  response.set_data_key(std::string(v->key.bytes()));
  *response.mutable_head() = v->head;
  response.set_hard_links(v->volume.version() >= 2);
  return response;
}

absl::StatusOr<api::Snapshot> FakeVolumeApiClient::GetHead(std::string_view volume_id) {
  CAIRN_RETURN_IF_ERROR(Enter("GetHead"));
  absl::MutexLock lock(&mu_);
  api::VolumeRef ref;
  ref.set_id(std::string(volume_id));
  CAIRN_ASSIGN_OR_RETURN(Vol * v, Find(ref));
  return v->head;
}

absl::StatusOr<api::Snapshot> FakeVolumeApiClient::Commit(const api::CommitRequest& request) {
  CAIRN_RETURN_IF_ERROR(Enter("Commit"));
  absl::MutexLock lock(&mu_);
  api::VolumeRef ref;
  ref.set_id(request.volume_id());
  CAIRN_ASSIGN_OR_RETURN(Vol * v, Find(ref));
  commits_.push_back(request);
  api::Snapshot next = v->head;
  next.set_parent_seq(v->head.seq());
  next.set_seq(v->head.seq() + 1);
  next.set_created_at_ns(absl::ToUnixNanos(absl::Now()));
  v->head = next;
  v->volume.set_head_seq(next.seq());
  return next;
}

absl::StatusOr<std::vector<std::string>> FakeVolumeApiClient::GetObjects(
    std::string_view volume_id, const std::vector<Digest>& addresses) {
  CAIRN_RETURN_IF_ERROR(Enter("GetObjects"));
  std::vector<std::string> out;
  for (const Digest& d : addresses) {
    CAIRN_ASSIGN_OR_RETURN(std::string sealed, blobs_->Get(volume_id, d));
    out.push_back(std::move(sealed));
  }
  return out;
}

absl::StatusOr<BlobRange> FakeVolumeApiClient::GetObjectRange(std::string_view volume_id,
                                                              const Digest& address,
                                                              uint64_t offset, uint64_t length) {
  CAIRN_RETURN_IF_ERROR(Enter("GetObjects"));
  return blobs_->GetRange(volume_id, address, offset, length);
}

absl::StatusOr<std::vector<Digest>> FakeVolumeApiClient::MissingObjects(
    std::string_view volume_id, const std::vector<Digest>& addresses) {
  CAIRN_RETURN_IF_ERROR(Enter("MissingObjects"));
  std::vector<Digest> missing;
  for (const Digest& d : addresses) {
    CAIRN_ASSIGN_OR_RETURN(bool present, blobs_->Contains(volume_id, d));
    if (!present) missing.push_back(d);
  }
  return missing;
}

absl::Status FakeVolumeApiClient::PutObjects(std::string_view volume_id,
                                             std::vector<std::pair<Digest, std::string>>& blobs) {
  CAIRN_RETURN_IF_ERROR(Enter("PutObjects"));
  for (const auto& [address, sealed] : blobs) {
    CAIRN_RETURN_IF_ERROR(blobs_->Put(volume_id, address, sealed));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<VolumeApiClient::PutStream>> FakeVolumeApiClient::OpenPutStream(
    std::string_view volume_id) {
  CAIRN_RETURN_IF_ERROR(Enter("OpenPutStream"));
  return std::make_unique<Stream>(this, std::string(volume_id));
}

}  // namespace cairn
