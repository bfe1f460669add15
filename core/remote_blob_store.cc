#include "core/remote_blob_store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace cairn {

absl::Status RemoteBlobStore::Put(std::string_view volume_id, const Digest& address,
                                  std::string_view sealed) {
  std::vector<std::pair<Digest, std::string>> one;
  one.emplace_back(address, std::string(sealed));
  return client_->PutObjects(volume_id, one);
}

absl::StatusOr<std::string> RemoteBlobStore::Get(std::string_view volume_id,
                                                 const Digest& address) {
  absl::StatusOr<std::vector<std::string>> got = client_->GetObjects(volume_id, {address});
  if (absl::IsDataLoss(got.status())) {
    // The server answered without the object.
    return absl::NotFoundError(absl::StrCat("object ", address.ToHex(), " not found"));
  }
  if (!got.ok()) return got.status();
  return std::move(got->front());
}

absl::StatusOr<BlobStore::Range> RemoteBlobStore::GetRange(std::string_view volume_id,
                                                           const Digest& address,
                                                           uint64_t offset, uint64_t length) {
  return client_->GetObjectRange(volume_id, address, offset, length);
}

namespace {

// One PutObjects stream, opened by the first Add.
class RemoteBatch final : public BlobStore::Batch {
 public:
  RemoteBatch(VolumeApiClient* client, std::string_view volume_id)
      : client_(client), volume_id_(volume_id) {}
  absl::Status Add(const Digest& address, std::string_view sealed) override {
    if (stream_ == nullptr) {
      CAIRN_ASSIGN_OR_RETURN(stream_, client_->OpenPutStream(volume_id_));
    }
    return stream_->Write(address, std::string(sealed));
  }
  absl::Status Finish() override {
    if (stream_ == nullptr) return absl::OkStatus();
    absl::Status done = stream_->Finish();
    stream_.reset();
    return done;
  }

 private:
  VolumeApiClient* const client_;
  const std::string volume_id_;
  std::unique_ptr<VolumeApiClient::PutStream> stream_;
};

}  // namespace

std::unique_ptr<BlobStore::Batch> RemoteBlobStore::NewBatch(std::string_view volume_id) {
  return std::make_unique<RemoteBatch>(client_, volume_id);
}

absl::StatusOr<bool> RemoteBlobStore::Contains(std::string_view volume_id,
                                               const Digest& address) {
  CAIRN_ASSIGN_OR_RETURN(std::vector<Digest> missing, client_->MissingObjects(volume_id, {address}));
  return missing.empty();
}

absl::Status RemoteBlobStore::Touch(std::string_view volume_id, const Digest& address) {
  // MissingObjects refreshes the mtime of every blob it finds present.
  CAIRN_ASSIGN_OR_RETURN(bool present, Contains(volume_id, address));
  if (!present) return absl::NotFoundError(absl::StrCat("object ", address.ToHex(), " not stored"));
  return absl::OkStatus();
}

absl::Status RemoteBlobStore::List(std::string_view, const std::function<void(const BlobInfo&)>&) {
  return absl::UnimplementedError("RemoteBlobStore::List is not part of the Volume API");
}
absl::Status RemoteBlobStore::Delete(std::string_view, const Digest&) {
  return absl::UnimplementedError("RemoteBlobStore::Delete: the control plane collects garbage");
}
absl::StatusOr<std::vector<std::string>> RemoteBlobStore::ListVolumes() {
  return absl::UnimplementedError("RemoteBlobStore::ListVolumes is not part of the Volume API");
}
absl::Status RemoteBlobStore::DeleteVolume(std::string_view) {
  return absl::UnimplementedError("RemoteBlobStore::DeleteVolume: use DeleteVolume on the API");
}

}  // namespace cairn
