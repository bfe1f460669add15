// RemoteBlobStore: a BlobStore whose blobs live behind the control plane's
// Volume API, for code written against BlobStore (the mounter's node cache,
// ObjectStore). A thin adapter over VolumeApiClient, which does the
// deadlines and retries.
//
// Only the data-path methods work remotely: Put, Get, GetRange, Contains,
// Touch, and batches (one PutObjects stream per batch: the server makes its
// blobs durable together when the stream ends, D7).
// List, Delete, ListVolumes and DeleteVolume are the control plane's
// business and return Unimplemented. The server refreshes the mtime of
// every blob MissingObjects finds present, so Contains and Touch restart
// GC's grace period for what the caller is about to reference.
//
// Thread-safe; `client` must outlive the store.
#pragma once

#include <string>
#include <vector>

#include "core/blob_store.h"
#include "core/volume_api_client.h"

namespace cairn {

class RemoteBlobStore : public BlobStore {
 public:
  explicit RemoteBlobStore(VolumeApiClient* client) : client_(client) {}

  absl::Status Put(std::string_view volume_id, const Digest& address,
                   std::string_view sealed) override;
  absl::StatusOr<std::string> Get(std::string_view volume_id, const Digest& address) override;
  absl::StatusOr<Range> GetRange(std::string_view volume_id, const Digest& address,
                                 uint64_t offset, uint64_t length) override;
  std::unique_ptr<Batch> NewBatch(std::string_view volume_id) override;
  absl::StatusOr<bool> Contains(std::string_view volume_id, const Digest& address) override;
  absl::Status Touch(std::string_view volume_id, const Digest& address) override;
  absl::Status List(std::string_view volume_id,
                    const std::function<void(const BlobInfo&)>& fn) override;
  absl::Status Delete(std::string_view volume_id, const Digest& address) override;
  absl::StatusOr<std::vector<std::string>> ListVolumes() override;
  absl::Status DeleteVolume(std::string_view volume_id) override;

 private:
  VolumeApiClient* const client_;
};

}  // namespace cairn
