#include "mounter/volume_client.h"

#include <utility>

#include "core/direct_fetch_blob_store.h"
#include "core/remote_blob_store.h"
#include "core/status.h"
#include "core/volume_api_client.h"

namespace cairn::mounter {
namespace {

class GrpcVolumeClient final : public VolumeClient {
 public:
  GrpcVolumeClient(std::unique_ptr<VolumeApiClient> api, bool direct_reads)
      : api_(std::move(api)),
        blobs_(api_.get()),
        direct_(api_.get(), &blobs_),
        direct_reads_(direct_reads) {}

  absl::StatusOr<api::OpenVolumeResponse> Open(const api::VolumeRef& ref) override {
    return api_->OpenVolume(ref);
  }

  absl::StatusOr<api::Snapshot> Head(std::string_view volume_id) override {
    return api_->GetHead(volume_id);
  }

  absl::StatusOr<api::Snapshot> Commit(std::string_view volume_id, uint64_t base_seq,
                                       const objects::ChangeSet& changes,
                                       std::string_view idempotency_key) override {
    api::CommitRequest request;
    request.set_volume_id(std::string(volume_id));
    request.set_base_seq(base_seq);
    *request.mutable_changes() = changes;
    request.set_idempotency_key(std::string(idempotency_key));
    return api_->Commit(request);
  }

  BlobStore* blobs() override {
    return direct_reads_ ? static_cast<BlobStore*>(&direct_) : &blobs_;
  }
  void SetRetryFor(absl::Duration retry_for) override { api_->SetRetryFor(retry_for); }
  absl::Status RenewLease(std::string_view volume_id) override {
    api::RenewLeaseRequest request;
    request.mutable_volume()->set_id(std::string(volume_id));
    return api_->RenewLease(request).status();
  }

 private:
  std::unique_ptr<VolumeApiClient> api_;
  RemoteBlobStore blobs_;
  DirectFetchBlobStore direct_;  // reads from the object store, else blobs_
  const bool direct_reads_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<VolumeClient>> NewGrpcVolumeClient(const ClientOptions& options,
                                                                  bool direct_reads) {
  CAIRN_ASSIGN_OR_RETURN(std::unique_ptr<VolumeApiClient> api, VolumeApiClient::Connect(options));
  return std::make_unique<GrpcVolumeClient>(std::move(api), direct_reads);
}

}  // namespace cairn::mounter
