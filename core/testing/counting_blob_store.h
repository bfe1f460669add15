// A BlobStore that forwards to another and counts what is read through it,
// so tests can assert how much of a blob a reader fetched. Test-only
// (cairn_testing). Thread-safe if the inner store is; does not own it.
// Tests derive from it to intercept one call and forward the rest.
#pragma once

#include <atomic>
#include <cstdint>

#include "core/blob_store.h"

namespace cairn::testing {

class CountingBlobStore : public BlobStore {
 public:
  explicit CountingBlobStore(BlobStore* inner) : inner_(inner) {}

  std::atomic<uint64_t> gets{0};        // whole-blob reads
  std::atomic<uint64_t> range_gets{0};  // GetRange calls
  std::atomic<uint64_t> bytes{0};       // bytes returned by either

  absl::Status Put(std::string_view v, const Digest& a, std::string_view s) override {
    return inner_->Put(v, a, s);
  }
  absl::StatusOr<std::string> Get(std::string_view v, const Digest& a) override {
    absl::StatusOr<std::string> got = inner_->Get(v, a);
    ++gets;
    if (got.ok()) bytes += got->size();
    return got;
  }
  absl::StatusOr<Range> GetRange(std::string_view v, const Digest& a, uint64_t offset,
                                 uint64_t length) override {
    absl::StatusOr<Range> got = inner_->GetRange(v, a, offset, length);
    ++range_gets;
    if (got.ok()) bytes += got->data.size();
    return got;
  }
  absl::StatusOr<bool> Contains(std::string_view v, const Digest& a) override {
    return inner_->Contains(v, a);
  }
  absl::Status Touch(std::string_view v, const Digest& a) override { return inner_->Touch(v, a); }
  absl::Status List(std::string_view v, const std::function<void(const BlobInfo&)>& fn) override {
    return inner_->List(v, fn);
  }
  absl::Status Delete(std::string_view v, const Digest& a) override {
    return inner_->Delete(v, a);
  }
  absl::StatusOr<std::vector<std::string>> ListVolumes() override {
    return inner_->ListVolumes();
  }
  absl::Status DeleteVolume(std::string_view v) override { return inner_->DeleteVolume(v); }

 private:
  BlobStore* const inner_;
};

}  // namespace cairn::testing
