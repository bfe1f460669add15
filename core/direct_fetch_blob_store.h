// DirectFetchBlobStore: reads sealed blobs straight from the object store
// with presigned URLs the control plane hands out (GetObjectUrls), so bulk
// reads do not pass through it (docs/scale-out-s3.md). Everything else, and
// every read the object store does not answer, goes to `fallback` (the
// control plane's GetObjects): a refused or expired URL, a network error, a
// 5xx. When the control plane's blobs are not in an object store
// (Unimplemented) it stops asking and reads through `fallback` only.
//
// URLs are cached per blob until shortly before they expire. What is read
// is ciphertext; the caller authenticates it as always (a wrong or damaged
// answer fails its GCM tags, D8).
//
// Thread-safe; `client` and `fallback` must outlive the store.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "core/blob_store.h"
#include "core/volume_api_client.h"

namespace cairn {

class DirectFetchBlobStore : public BlobStore {
 public:
  DirectFetchBlobStore(VolumeApiClient* client, BlobStore* fallback);
  ~DirectFetchBlobStore() override;

  absl::StatusOr<std::string> Get(std::string_view volume_id, const Digest& address) override;
  absl::StatusOr<Range> GetRange(std::string_view volume_id, const Digest& address,
                                 uint64_t offset, uint64_t length) override;

  absl::Status Put(std::string_view volume_id, const Digest& address,
                   std::string_view sealed) override {
    return fallback_->Put(volume_id, address, sealed);
  }
  std::unique_ptr<Batch> NewBatch(std::string_view volume_id) override {
    return fallback_->NewBatch(volume_id);
  }
  absl::StatusOr<bool> Contains(std::string_view volume_id, const Digest& address) override {
    return fallback_->Contains(volume_id, address);
  }
  absl::Status Touch(std::string_view volume_id, const Digest& address) override {
    return fallback_->Touch(volume_id, address);
  }
  absl::Status List(std::string_view volume_id,
                    const std::function<void(const BlobInfo&)>& fn) override {
    return fallback_->List(volume_id, fn);
  }
  absl::Status Delete(std::string_view volume_id, const Digest& address) override {
    return fallback_->Delete(volume_id, address);
  }
  absl::StatusOr<std::vector<std::string>> ListVolumes() override {
    return fallback_->ListVolumes();
  }
  absl::Status DeleteVolume(std::string_view volume_id) override {
    return fallback_->DeleteVolume(volume_id);
  }

  // Reads answered by the object store, and reads that fell back.
  uint64_t direct_reads() const { return direct_reads_.load(); }
  uint64_t fallback_reads() const { return fallback_reads_.load(); }

 private:
  struct State;
  // One ranged (length > 0) or whole (length == 0, offset 0) GET from the
  // object store; any failure is the caller's cue to fall back.
  absl::StatusOr<Range> Fetch(std::string_view volume_id, const Digest& address, uint64_t offset,
                              uint64_t length);

  VolumeApiClient* const client_;
  BlobStore* const fallback_;
  std::unique_ptr<State> state_;
  std::atomic<bool> enabled_{true};
  std::atomic<uint64_t> direct_reads_{0};
  std::atomic<uint64_t> fallback_reads_{0};
};

}  // namespace cairn
