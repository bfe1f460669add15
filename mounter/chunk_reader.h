// ChunkReader: plaintext chunks for the mounter's reads. Keeps the most
// recently used decrypted chunks in memory (FUSE asks for 128 KiB–1 MiB at a
// time; a 4 MiB chunk is fetched and opened once), merges concurrent fetches
// of one address, and prefetches chunks in the background (readahead).
//
// Random readers take Read(): of a blocked chunk (core/crypto.h) only the
// blocks (16 KiB as written now) the range touches are fetched (a range
// read of the node cache file, or of the control plane) and opened, and
// kept in memory by block. Chunks in the single-block form of older
// releases are read whole.
//
// Below it: ObjectStore over the DiskCache over the control plane. A chunk
// or block that fails to authenticate is evicted from the disk cache and
// fetched once more before the error is returned.
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
#include "core/crypto.h"
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

  // Plaintext bytes [offset, offset + length) of the chunk, clipped at its
  // end; `view` points into `data`, which keeps it alive.
  struct Slice {
    ChunkData data;
    std::string_view view;
  };
  [[nodiscard]] absl::StatusOr<Slice> Read(const Digest& address, uint64_t offset,
                                           uint64_t length);
  // Fetches in the background if not cached or in flight; errors dropped.
  void Prefetch(const Digest& address);

  // A directory object, with the same repair as chunks: a node-cache copy
  // that fails to authenticate is evicted and fetched again once.
  [[nodiscard]] absl::StatusOr<std::shared_ptr<const objects::Directory>> Directory(const Digest& address);

 private:
  // A whole chunk (block == kWhole) or one block of one.
  static constexpr uint64_t kWhole = ~uint64_t{0};
  struct Key {
    Digest address;
    uint64_t block = kWhole;
    friend bool operator==(const Key&, const Key&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.address, k.block);
    }
  };
  struct Slot {
    bool ready = false;
    absl::Status status;
    ChunkData data;         // a block's slot shares its run's buffer
    std::string_view view;  // the slot's bytes within `data`
    std::list<Key>::iterator lru;  // valid when ready and ok
  };
  absl::StatusOr<ChunkData> Fetch(const Digest& address);
  // The layout of a chunk, from its first bytes (cached).
  absl::StatusOr<SealedLayout> Layout(const Digest& address);
  // Fetches and opens blocks [first, last) as one run, with the same repair
  // as whole chunks.
  absl::StatusOr<ChunkData> FetchBlocks(const Digest& address, const SealedLayout& layout,
                                        uint64_t first, uint64_t last);
  void InsertLocked(const Key& key, ChunkData data, std::string_view view)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void Worker();
  void EvictLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  ObjectStore* const objects_;
  DiskCache* const cache_;
  const uint64_t max_bytes_;

  absl::Mutex mu_;
  absl::flat_hash_map<Key, std::shared_ptr<Slot>> slots_ ABSL_GUARDED_BY(mu_);
  std::list<Key> lru_ ABSL_GUARDED_BY(mu_);  // front: most recent
  // Layouts of chunks read by range; small, and dropped wholesale when full.
  absl::flat_hash_map<Digest, SealedLayout> layouts_ ABSL_GUARDED_BY(mu_);
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
