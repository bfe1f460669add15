// DiskCache: the node-local cache of sealed blobs shared by every mount on
// the machine (DESIGN.md §3 "mounter"), as a BlobStore that wraps the remote
// one.
//
//   Get       local file if present (its atime is refreshed: LRU order),
//             else the remote, then stored locally by a background writer
//             (off the read path; until written, Get serves the blob from
//             the writer's queue).
//   GetRange  a pread of the local file if present (atime refreshed at most
//             once a minute), else a range read of the remote, which is not
//             stored (a random reader's blocks are not a whole blob).
//   Put       the remote first, then stored locally (so a mount reads back
//             what it just wrote without a round trip).
//   NewBatch  the remote's batch; each blob is stored locally once the
//             remote batch finished (a blob is never cached before the
//             control plane holds it durably).
//   Contains  the remote (uploads must not skip on a local hit).
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
#include <deque>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
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

  // A reusable 4 KiB-aligned read buffer (callers keep a few and reuse them).
  class ReadBuffer {
   public:
    ReadBuffer() = default;
    ~ReadBuffer();
    ReadBuffer(const ReadBuffer&) = delete;
    ReadBuffer& operator=(const ReadBuffer&) = delete;
    std::string_view view() const { return {data_, size_}; }

   private:
    friend class DiskCache;
    bool Reserve(size_t n);
    char* data_ = nullptr;
    size_t cap_ = 0;
    size_t size_ = 0;
  };
  // The local copy only, read into `*out`: what the page cache holds is
  // copied from it (checked with cachestat(2)); otherwise it is read with O_DIRECT
  // where the file system allows, straight from the disk into the reused
  // buffer with no page-cache pages to allocate, fill and copy from (with
  // the page cache dropped, the buffered read was ~30 % of the mounter's
  // CPU), and without caching the sealed copy a second time (the kernel
  // caches the plaintext pages of the FUSE file). NotFound if not cached
  // locally. Counts a hit.
  // `direct` false: read through the page cache instead (and leave the blob
  // there), for random readers that are likely to come back to it.
  absl::Status ReadLocal(std::string_view volume_id, const Digest& address, ReadBuffer* out,
                         bool direct = true);

  // Drops the local copy only (e.g. after it failed to authenticate).
  void Evict(std::string_view volume_id, const Digest& address);

  uint64_t hits() const { return hits_.load(); }
  uint64_t misses() const { return misses_.load(); }
  // Waits until every blob fetched so far is on disk (tests, shutdown).
  void Flush();

 private:
  DiskCache(BlobStore* remote, std::filesystem::path dir, uint64_t max_bytes);
  std::filesystem::path PathFor(std::string_view volume_id, const Digest& address) const;
  // Returns true if the blob is in place (the rename happened). `aligned`:
  // a queued write (StoreLater): sealed.data() is a pool buffer, 4 KiB-
  // aligned with room up to the next 4 KiB (O_DIRECT), and the file goes in
  // place only if that buffer is still the pending entry.
  bool StoreLocal(std::string_view volume_id, const Digest& address, std::string_view sealed,
                  bool aligned = false);
  // Queues a copy of a fetched blob for the writer thread; writes inline
  // when every buffer is queued already (backpressure).
  void StoreLater(std::string_view volume_id, const Digest& address, std::string_view sealed);
  void WriteLoop();
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

  // Background writes of fetched blobs. Keyed by path; the value is what
  // Get serves until the file is in place. Evict drops an entry, and the
  // writer only renames an entry still present (checked under wmu_).
  //
  // Queued blobs live in reused 4 KiB-aligned buffers written with O_DIRECT:
  // on this class of machine (VMs) a buffered write of a freshly fetched
  // 4 MiB blob into new page-cache pages cost more CPU than anything else on
  // the read path (copy_folio_from_iter_atomic, 35 % of the mounter's and
  // server's samples in a profile of a read from the control plane).
  static constexpr size_t kBufBytes = (4u << 20) + (64u << 10);
  static constexpr int kMaxBufs = 12;   // ~50 MiB queued at most
  static constexpr size_t kKeptBufs = 4;  // kept allocated when idle
  struct Blob {
    DiskCache* owner;
    char* data;  // aligned, kBufBytes
    size_t size;
    ~Blob();  // returns `data` to the pool; never copied
  };
  struct Pending {
    std::string volume_id;
    Digest address;
    std::shared_ptr<const Blob> blob;
  };
  char* TakeBuffer();          // nullptr when kMaxBufs are in use
  void ReturnBuffer(char* p);  // takes pool_mu_
  absl::Mutex wmu_;
  absl::flat_hash_map<std::string, std::shared_ptr<const Blob>> pending_ ABSL_GUARDED_BY(wmu_);
  std::deque<Pending> write_queue_ ABSL_GUARDED_BY(wmu_);
  int writing_ ABSL_GUARDED_BY(wmu_) = 0;
  bool wstop_ ABSL_GUARDED_BY(wmu_) = false;
  absl::Mutex pool_mu_;  // leaf
  std::vector<char*> free_bufs_ ABSL_GUARDED_BY(pool_mu_);
  int bufs_ ABSL_GUARDED_BY(pool_mu_) = 0;
  std::thread writer_;
};

}  // namespace cairn::mounter
