// DiskCache: the node-local cache of sealed blobs shared by every mount on
// the machine (DESIGN.md §3 "mounter"), as a BlobStore that wraps the remote
// one.
//
//   Get       local file if present (its atime is refreshed: LRU order),
//             else the remote, then stored locally.
//   Put       the remote first, then stored locally (so a mount reads back
//             what it just wrote without a round trip).
//   Contains  local, else remote.
//
// Layout: DIR/blobs/<volume id>/<aa>/<hex address>. Blobs are sealed, so the
// cache holds no plaintext and a corrupt file fails to authenticate upstream
// (callers Evict() and retry). Writes are temp file + rename, so several
// processes can share DIR: a reader sees a whole blob or none. Eviction keeps
// the total under `max_bytes`, least recently used first (by atime, which Get
// refreshes explicitly); one process evicts at a time (flock on DIR/evict.lock),
// and unlinking a file another process is reading is harmless.
//
// Thread-safe. Does not own `remote`.
#pragma once

#include <atomic>
#include <filesystem>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/blob_store.h"

namespace cairn::mounter {

class DiskCache final : public BlobStore {
 public:
  // Creates DIR/blobs. `max_bytes` 0 means unbounded.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<DiskCache>> Open(
      BlobStore* remote, const std::filesystem::path& dir, uint64_t max_bytes);
  ~DiskCache() override;

  absl::Status Put(std::string_view volume_id, const Digest& address,
                   std::string_view sealed) override;
  absl::StatusOr<std::string> Get(std::string_view volume_id, const Digest& address) override;
  absl::StatusOr<bool> Contains(std::string_view volume_id, const Digest& address) override;
  absl::Status Touch(std::string_view volume_id, const Digest& address) override;
  absl::Status List(std::string_view volume_id,
                    const std::function<void(const BlobInfo&)>& fn) override;
  absl::Status Delete(std::string_view volume_id, const Digest& address) override;
  absl::StatusOr<std::vector<std::string>> ListVolumes() override;
  absl::Status DeleteVolume(std::string_view volume_id) override;

  // Drops the local copy only (e.g. after it failed to authenticate).
  void Evict(std::string_view volume_id, const Digest& address);

  uint64_t hits() const { return hits_.load(); }
  uint64_t misses() const { return misses_.load(); }

 private:
  DiskCache(BlobStore* remote, std::filesystem::path dir, uint64_t max_bytes);
  std::filesystem::path PathFor(std::string_view volume_id, const Digest& address) const;
  void StoreLocal(std::string_view volume_id, const Digest& address, std::string_view sealed);
  // Scans the cache and deletes least recently used blobs until the total is
  // under 90% of max_bytes_. Runs on its own thread.
  void EvictLoop();
  void EvictOnce();

  BlobStore* const remote_;
  const std::filesystem::path dir_;
  const uint64_t max_bytes_;
  std::atomic<uint64_t> hits_{0}, misses_{0};
  // Bytes this process believes are cached (re-measured by every scan).
  std::atomic<uint64_t> approx_bytes_{0};

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool evict_wanted_ ABSL_GUARDED_BY(mu_) = true;  // scan once at start
  std::thread evictor_;
};

}  // namespace cairn::mounter
