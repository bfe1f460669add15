// BlobStore: where sealed chunks and directory objects live, keyed by
// (volume ID, address). The store never sees plaintext or keys.
//
// Implementations are thread-safe. LocalBlobStore is also safe for several
// processes sharing one root: every write is temp file + fsync + rename +
// fsync(dir), so a reader sees a whole blob or none (shared/STYLE.md §6).
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/digest.h"

namespace cairn {

class BlobStore {
 public:
  struct BlobInfo {
    Digest address;
    std::chrono::system_clock::time_point mtime;
    uint64_t size = 0;
  };

  virtual ~BlobStore() = default;

  // Stores a blob. Storing an address that is already present succeeds and
  // refreshes its mtime (GC's grace period counts from there).
  [[nodiscard]] virtual absl::Status Put(std::string_view volume_id, const Digest& address,
                                         std::string_view sealed) = 0;
  // NotFound if absent.
  [[nodiscard]] virtual absl::StatusOr<std::string> Get(std::string_view volume_id,
                                                        const Digest& address) = 0;
  [[nodiscard]] virtual absl::StatusOr<bool> Contains(std::string_view volume_id,
                                                      const Digest& address) = 0;
  // Refreshes the mtime of a present blob; NotFound if absent.
  [[nodiscard]] virtual absl::Status Touch(std::string_view volume_id, const Digest& address) = 0;
  // Calls `fn` for every blob of the volume, in no particular order.
  [[nodiscard]] virtual absl::Status List(std::string_view volume_id,
                                          const std::function<void(const BlobInfo&)>& fn) = 0;
  // Missing is OK.
  [[nodiscard]] virtual absl::Status Delete(std::string_view volume_id, const Digest& address) = 0;
  // Volume IDs that have at least one blob (or an empty prefix left behind).
  [[nodiscard]] virtual absl::StatusOr<std::vector<std::string>> ListVolumes() = 0;
  // Removes every blob of the volume. Missing is OK.
  [[nodiscard]] virtual absl::Status DeleteVolume(std::string_view volume_id) = 0;

  // Several Puts sharing one durability point. Added blobs may stay
  // invisible (and not durable) until Finish; once Finish returns OK every
  // one of them is stored exactly as if Put had been called (visible, whole,
  // durable). A reader never sees a blob half-written at any time. A batch
  // dropped without Finish (or whose Finish failed) leaves each blob stored
  // or absent. Not thread-safe: one batch per writer.
  class Batch {
   public:
    virtual ~Batch() = default;
    [[nodiscard]] virtual absl::Status Add(const Digest& address, std::string_view sealed) = 0;
    [[nodiscard]] virtual absl::Status Finish() = 0;
  };
  // The default batch calls Put for each blob (durable at once).
  [[nodiscard]] virtual std::unique_ptr<Batch> NewBatch(std::string_view volume_id) {
    class PutEach final : public Batch {
     public:
      PutEach(BlobStore* store, std::string_view volume_id)
          : store_(store), volume_id_(volume_id) {}
      absl::Status Add(const Digest& address, std::string_view sealed) override {
        return store_->Put(volume_id_, address, sealed);
      }
      absl::Status Finish() override { return absl::OkStatus(); }

     private:
      BlobStore* const store_;
      const std::string volume_id_;
    };
    return std::make_unique<PutEach>(this, volume_id);
  }
};

// Blobs under `root`/<volume id>/<aa>/<bb>/<hex address>. Creates `root`.
[[nodiscard]] absl::StatusOr<std::unique_ptr<BlobStore>> OpenLocalBlobStore(
    const std::filesystem::path& root);

}  // namespace cairn
