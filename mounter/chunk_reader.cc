#include "mounter/chunk_reader.h"

#include <utility>

#include "core/log.h"

namespace cairn::mounter {
namespace {
// Set on the prefetch workers: their fetches serve sequential readers.
thread_local bool tls_prefetching = false;
}  // namespace

ChunkReader::ChunkReader(ObjectStore* objects, DiskCache* cache, uint64_t max_bytes,
                         int prefetch_threads)
    : objects_(objects), cache_(cache), max_bytes_(max_bytes) {
  for (int i = 0; i < prefetch_threads; ++i) workers_.emplace_back([this] { Worker(); });
}

ChunkReader::~ChunkReader() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  for (auto& t : workers_) t.join();
}

absl::StatusOr<ChunkData> ChunkReader::Fetch(const Digest& address) {
  if (cache_ != nullptr) {
    // Node-cache hit: read the sealed blob into a pooled buffer and open it
    // (authenticated on every read, as always); no per-chunk allocation of
    // the sealed copy. A copy that fails to authenticate is evicted and
    // fetched again from the control plane below.
    std::unique_ptr<DiskCache::ReadBuffer> sealed;
    {
      absl::MutexLock lock(&buf_mu_);
      if (!free_bufs_.empty()) {
        sealed = std::move(free_bufs_.back());
        free_bufs_.pop_back();
      }
    }
    if (sealed == nullptr) sealed = std::make_unique<DiskCache::ReadBuffer>();
    absl::StatusOr<std::string> plain = absl::NotFoundError("");
    // Sequential (prefetched) chunks are read with O_DIRECT: streamed once,
    // no CPU spent filling the page cache with sealed copies. A chunk a
    // reader waits for directly is more likely random access, which may
    // come back to it: read it through the page cache.
    bool local =
        cache_->ReadLocal(objects_->volume_id(), address, sealed.get(), tls_prefetching).ok();
    if (local) plain = objects_->key().Open(address, sealed->view());
    {
      absl::MutexLock lock(&buf_mu_);
      if (free_bufs_.size() < kKeptBuffers) free_bufs_.push_back(std::move(sealed));
    }
    if (plain.ok()) return std::make_shared<const std::string>(std::move(*plain));
    if (local) {
      CAIRN_LOG_WARNING("chunk %s failed to authenticate; refetching", address.ToHex());
      cache_->Evict(objects_->volume_id(), address);
    }
  }
  auto plain = objects_->GetChunk(address);
  if (!plain.ok() && plain.status().code() == absl::StatusCode::kDataLoss && cache_ != nullptr) {
    CAIRN_LOG_WARNING("chunk %s failed to authenticate; refetching", address.ToHex());
    cache_->Evict(objects_->volume_id(), address);
    plain = objects_->GetChunk(address);
  }
  if (!plain.ok()) return plain.status();
  return std::make_shared<const std::string>(std::move(*plain));
}

absl::StatusOr<std::shared_ptr<const objects::Directory>> ChunkReader::Directory(
    const Digest& address) {
  auto dir = objects_->GetDirectory(address);
  if (!dir.ok() && absl::IsDataLoss(dir.status()) && cache_ != nullptr) {
    CAIRN_LOG_WARNING("directory %s failed to authenticate; refetching", address.ToHex());
    cache_->Evict(objects_->volume_id(), address);
    dir = objects_->GetDirectory(address);
  }
  return dir;
}

absl::StatusOr<ChunkData> ChunkReader::Get(const Digest& address) {
  std::shared_ptr<Slot> slot;
  bool fetch = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = slots_.find(address);
    if (it != slots_.end()) {
      slot = it->second;
      if (slot->ready && slot->status.ok()) {
        lru_.splice(lru_.begin(), lru_, slot->lru);
        return slot->data;
      }
    } else {
      slot = std::make_shared<Slot>();
      slots_[address] = slot;
      fetch = true;
    }
  }
  if (!fetch) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(+[](Slot* s) { return s->ready; }, slot.get()));
    if (slot->status.ok()) return slot->data;
    return slot->status;
  }
  auto data = Fetch(address);
  absl::MutexLock lock(&mu_);
  slot->ready = true;
  if (!data.ok()) {
    slot->status = data.status();
    slots_.erase(address);  // the next reader tries again
    return data.status();
  }
  slot->data = *data;
  lru_.push_front(address);
  slot->lru = lru_.begin();
  bytes_ += (*data)->size();
  EvictLocked();
  return *data;
}

void ChunkReader::EvictLocked() {
  while (bytes_ > max_bytes_ && lru_.size() > 1) {
    Digest victim = lru_.back();
    lru_.pop_back();
    auto it = slots_.find(victim);
    if (it != slots_.end()) {
      bytes_ -= it->second->data->size();
      slots_.erase(it);
    }
  }
}

void ChunkReader::Prefetch(const Digest& address) {
  absl::MutexLock lock(&mu_);
  if (stop_ || workers_.empty() || slots_.contains(address)) return;
  if (queue_.size() >= 16) return;
  for (const Digest& queued : queue_) {
    if (queued == address) return;
  }
  queue_.push_back(address);
}

void ChunkReader::Worker() {
  tls_prefetching = true;
  for (;;) {
    Digest address;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](ChunkReader* r) ABSL_NO_THREAD_SAFETY_ANALYSIS { return r->stop_ || !r->queue_.empty(); },
          this));
      if (stop_) return;
      address = queue_.front();
      queue_.pop_front();
      if (slots_.contains(address)) continue;
    }
    (void)Get(address);
  }
}

}  // namespace cairn::mounter
