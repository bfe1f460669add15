#include "mounter/chunk_reader.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status.h"

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
  const Key key{address, kWhole};
  std::shared_ptr<Slot> slot;
  bool fetch = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = slots_.find(key);
    if (it != slots_.end()) {
      slot = it->second;
      if (slot->ready && slot->status.ok()) {
        lru_.splice(lru_.begin(), lru_, slot->lru);
        return slot->data;
      }
    } else {
      slot = std::make_shared<Slot>();
      slots_[key] = slot;
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
    slots_.erase(key);  // the next reader tries again
    return data.status();
  }
  slot->data = *data;
  slot->view = **data;
  lru_.push_front(key);
  slot->lru = lru_.begin();
  bytes_ += (*data)->size();
  EvictLocked();
  return *data;
}

namespace {
ChunkReader::Slice Cut(ChunkData data, std::string_view view, uint64_t offset, uint64_t length) {
  if (offset >= view.size()) return {std::move(data), {}};
  return {std::move(data), view.substr(offset, length)};
}
}  // namespace

absl::StatusOr<SealedLayout> ChunkReader::Layout(const Digest& address) {
  {
    absl::MutexLock lock(&mu_);
    if (auto it = layouts_.find(address); it != layouts_.end()) return it->second;
  }
  BlobStore* blobs = objects_->blobs();
  CAIRN_ASSIGN_OR_RETURN(BlobRange head,
                         blobs->GetRange(objects_->volume_id(), address, 0, kSealHeaderSize));
  absl::StatusOr<SealedLayout> layout = SealedLayout::Parse(head.data, head.total_size);
  // Too short to be sealed: a damaged copy; the whole-chunk path repairs it.
  if (!layout.ok()) return SealedLayout::Parse("", kSealOverhead);
  absl::MutexLock lock(&mu_);
  // A layout is ~64 bytes; 64k of them cover 256 GiB of chunks.
  if (layouts_.size() >= 65536) layouts_.clear();
  layouts_[address] = *layout;
  return layout;
}

absl::StatusOr<ChunkData> ChunkReader::FetchBlocks(const Digest& address,
                                                   const SealedLayout& layout, uint64_t first,
                                                   uint64_t last) {
  BlobStore* blobs = objects_->blobs();
  auto attempt = [&](const SealedLayout& l) -> absl::StatusOr<std::string> {
    const uint64_t from = l.SealedOffset(first), to = l.SealedOffset(last);
    CAIRN_ASSIGN_OR_RETURN(BlobRange run,
                           blobs->GetRange(objects_->volume_id(), address, from, to - from));
    if (run.total_size != l.sealed_size()) {
      return absl::DataLossError(absl::StrCat("chunk ", address.ToHex(), " is ",
                                              run.total_size, " bytes; its header says ",
                                              l.sealed_size()));
    }
    return objects_->key().OpenBlocks(address, l, first, run.data);
  };
  absl::StatusOr<std::string> plain = attempt(layout);
  if (!plain.ok() && absl::IsDataLoss(plain.status()) && cache_ != nullptr) {
    // A damaged node-cache copy, or a header read from one sealing of the
    // chunk and blocks from another: drop both and read again.
    CAIRN_LOG_WARNING("chunk %s blocks %d-%d failed to authenticate; refetching",
                      address.ToHex(), first, last - 1);
    cache_->Evict(objects_->volume_id(), address);
    {
      absl::MutexLock lock(&mu_);
      layouts_.erase(address);
    }
    CAIRN_ASSIGN_OR_RETURN(SealedLayout fresh, Layout(address));
    if (!fresh.blocked() || fresh.block_count() != layout.block_count() ||
        fresh.block_size() != layout.block_size()) {
      return plain.status();
    }
    plain = attempt(fresh);
  }
  if (!plain.ok()) {
    return absl::Status(plain.status().code(),
                        absl::StrCat("object ", address.ToHex(), " of volume ",
                                     objects_->volume_id(), ": ", plain.status().message()));
  }
  return std::make_shared<const std::string>(std::move(*plain));
}

absl::StatusOr<ChunkReader::Slice> ChunkReader::Read(const Digest& address, uint64_t offset,
                                                     uint64_t length) {
  {
    absl::MutexLock lock(&mu_);
    auto it = slots_.find(Key{address, kWhole});
    if (it != slots_.end() && it->second->ready && it->second->status.ok()) {
      lru_.splice(lru_.begin(), lru_, it->second->lru);
      return Cut(it->second->data, it->second->view, offset, length);
    }
  }
  CAIRN_ASSIGN_OR_RETURN(SealedLayout layout, Layout(address));
  if (!layout.blocked()) {
    CAIRN_ASSIGN_OR_RETURN(ChunkData whole, Get(address));
    return Cut(whole, *whole, offset, length);
  }
  auto [first, last] = layout.BlocksFor(offset, length);
  if (first == last) return Slice{std::make_shared<const std::string>(), {}};
  const uint64_t base = first * layout.block_size();
  {
    absl::MutexLock lock(&mu_);
    std::vector<std::shared_ptr<Slot>> cached;
    for (uint64_t b = first; b < last; ++b) {
      auto it = slots_.find(Key{address, b});
      if (it == slots_.end() || !it->second->ready) break;
      cached.push_back(it->second);
    }
    if (cached.size() == last - first) {
      for (const auto& slot : cached) lru_.splice(lru_.begin(), lru_, slot->lru);
      if (cached.size() == 1) return Cut(cached[0]->data, cached[0]->view, offset - base, length);
      auto joined = std::make_shared<std::string>();
      for (const auto& slot : cached) joined->append(slot->view);
      ChunkData data = std::move(joined);
      return Cut(data, *data, offset - base, length);
    }
  }
  CAIRN_ASSIGN_OR_RETURN(ChunkData run, FetchBlocks(address, layout, first, last));
  absl::MutexLock lock(&mu_);
  std::string_view all = *run;
  for (uint64_t b = first; b < last; ++b) {
    const uint64_t at = (b - first) * layout.block_size();
    InsertLocked(Key{address, b}, run, all.substr(at, layout.PlainBlockSize(b)));
  }
  EvictLocked();
  return Cut(run, all, offset - base, length);
}

void ChunkReader::InsertLocked(const Key& key, ChunkData data, std::string_view view) {
  auto [it, inserted] = slots_.try_emplace(key, nullptr);
  if (!inserted) return;  // a concurrent reader put it there (or is fetching it whole)
  auto slot = std::make_shared<Slot>();
  slot->ready = true;
  slot->data = std::move(data);
  slot->view = view;
  lru_.push_front(key);
  slot->lru = lru_.begin();
  bytes_ += view.size();
  it->second = std::move(slot);
}

void ChunkReader::EvictLocked() {
  while (bytes_ > max_bytes_ && lru_.size() > 1) {
    Key victim = lru_.back();
    lru_.pop_back();
    auto it = slots_.find(victim);
    if (it != slots_.end()) {
      bytes_ -= it->second->view.size();
      slots_.erase(it);
    }
  }
}

void ChunkReader::Prefetch(const Digest& address) {
  absl::MutexLock lock(&mu_);
  if (stop_ || workers_.empty() || slots_.contains(Key{address, kWhole})) return;
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
      if (slots_.contains(Key{address, kWhole})) continue;
    }
    (void)Get(address);
  }
}

}  // namespace cairn::mounter
