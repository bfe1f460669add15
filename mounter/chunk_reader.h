// ChunkReader: plaintext chunks for the mounter's reads. Keeps the most
// recently used decrypted chunks in memory (FUSE asks for 128 KiB–1 MiB at a
// time; a 4 MiB chunk is fetched and opened once), merges concurrent fetches
// of one address, and prefetches chunks in the background (readahead).
//
// Below it: ObjectStore over the DiskCache over the control plane. A chunk
// that fails to authenticate is evicted from the disk cache and fetched once
// more before the error is returned.
//
// Thread-safe. Lock order: mu_ and buf_mu_ are leaves.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/digest.h"
#include "core/object_store.h"
#include "mounter/disk_cache.h"

namespace cairn::mounter {

using ChunkData = std::shared_ptr<const std::string>;

class ChunkReader {
 public:
  // `objects` and `cache` (may be null) must outlive this.
  ChunkReader(ObjectStore* objects, DiskCache* cache, uint64_t max_bytes, int prefetch_threads);
  ~ChunkReader();
  ChunkReader(const ChunkReader&) = delete;
  ChunkReader& operator=(const ChunkReader&) = delete;

  [[nodiscard]] absl::StatusOr<ChunkData> Get(const Digest& address);
  // Fetches in the background if not cached or in flight; errors dropped.
  void Prefetch(const Digest& address);

  // A directory object, with the same repair as chunks: a node-cache copy
  // that fails to authenticate is evicted and fetched again once.
  [[nodiscard]] absl::StatusOr<std::shared_ptr<const objects::Directory>> Directory(const Digest& address);

 private:
  struct Slot {
    bool ready = false;
    absl::Status status;
    ChunkData data;
    std::list<Digest>::iterator lru;  // valid when ready and ok
  };
  absl::StatusOr<ChunkData> Fetch(const Digest& address);

  void Worker();
  void EvictLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  ObjectStore* const objects_;
  DiskCache* const cache_;
  const uint64_t max_bytes_;

  absl::Mutex mu_;
  absl::flat_hash_map<Digest, std::shared_ptr<Slot>> slots_ ABSL_GUARDED_BY(mu_);
  std::list<Digest> lru_ ABSL_GUARDED_BY(mu_);  // front: most recent
  uint64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<Digest> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;

  // Reused read buffers for sealed blobs from the node cache (no allocation,
  // page faults or zero-filling per chunk); at most kKeptBuffers are kept.
  static constexpr size_t kKeptBuffers = 6;
  absl::Mutex buf_mu_;  // leaf
  std::vector<std::unique_ptr<DiskCache::ReadBuffer>> free_bufs_ ABSL_GUARDED_BY(buf_mu_);
};

}  // namespace cairn::mounter
