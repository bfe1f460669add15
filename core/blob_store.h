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
};

// Blobs under `root`/<volume id>/<aa>/<bb>/<hex address>. Creates `root`.
[[nodiscard]] absl::StatusOr<std::unique_ptr<BlobStore>> OpenLocalBlobStore(
    const std::filesystem::path& root);

// In memory; for unit tests.
std::unique_ptr<BlobStore> NewMemBlobStore();

}  // namespace cairn
