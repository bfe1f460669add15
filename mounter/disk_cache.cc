#include "mounter/disk_cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "core/crypto.h"
#include "core/log.h"
#include "core/status.h"

namespace cairn::mounter {
namespace fs = std::filesystem;

namespace {

// Reads a whole file with one pread into `*out`, sized by fstat (resize
// zero-fills only beyond the string's current size); NotFound if it does not
// exist.
absl::Status ReadWhole(const fs::path& path, std::string* out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("open ", path.string()));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoToStatus(err, absl::StrCat("stat ", path.string()));
  }
  out->resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < out->size()) {
    ssize_t n = ::pread(fd, out->data() + got, out->size() - got, static_cast<off_t>(got));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return ErrnoToStatus(err, absl::StrCat("read ", path.string()));
    }
    if (n == 0) break;  // shrank (torn/replaced): authentication fails upstream
    got += static_cast<size_t>(n);
  }
  out->resize(got);
  // Refresh atime explicitly: relatime/noatime mounts would not, and
  // eviction orders by it.
  struct timespec times[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
  ::futimens(fd, times);
  ::close(fd);
  return absl::OkStatus();
}

// Pages of the first `size` bytes of `fd` in the page cache, via
// cachestat(2); 0 where the kernel lacks it.
uint64_t CachedPages(int fd, size_t size) {
#ifndef __NR_cachestat
#define __NR_cachestat 451  // same number on every architecture
#endif
  struct {
    uint64_t off, len;
  } range{0, size};
  struct {
    uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
  } cs{};
  if (::syscall(__NR_cachestat, fd, &range, &cs, 0) != 0) return 0;
  return cs.nr_cache;
}

}  // namespace

absl::StatusOr<std::unique_ptr<DiskCache>> DiskCache::Open(BlobStore* remote, const fs::path& dir,
                                                           uint64_t max_bytes) {
  std::error_code ec;
  fs::create_directories(dir / "blobs", ec);
  if (ec) return ErrnoToStatus(ec.value(), absl::StrCat("create cache ", dir.string()));
  return std::unique_ptr<DiskCache>(new DiskCache(remote, dir, max_bytes));
}

DiskCache::DiskCache(BlobStore* remote, fs::path dir, uint64_t max_bytes)
    : remote_(remote), dir_(std::move(dir)), max_bytes_(max_bytes) {
  if (max_bytes_ > 0) evictor_ = std::thread([this] { EvictLoop(); });
  writer_ = std::thread([this] { WriteLoop(); });
}

DiskCache::~DiskCache() {
  {
    absl::MutexLock lock(&wmu_);
    wstop_ = true;  // the writer drains its queue first
  }
  writer_.join();
  {
    absl::MutexLock lock(&wmu_);
    pending_.clear();  // returns buffers while the pool still exists
  }
  {
    absl::MutexLock lock(&pool_mu_);
    for (char* p : free_bufs_) std::free(p);
    free_bufs_.clear();
  }
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (evictor_.joinable()) evictor_.join();
}

DiskCache::Blob::~Blob() { owner->ReturnBuffer(data); }

char* DiskCache::TakeBuffer() {
  absl::MutexLock lock(&pool_mu_);
  if (!free_bufs_.empty()) {
    char* p = free_bufs_.back();
    free_bufs_.pop_back();
    return p;
  }
  if (bufs_ >= kMaxBufs) return nullptr;
  void* p = nullptr;
  if (::posix_memalign(&p, 4096, kBufBytes) != 0) return nullptr;
  ++bufs_;
  return static_cast<char*>(p);
}

void DiskCache::ReturnBuffer(char* p) {
  absl::MutexLock lock(&pool_mu_);
  if (free_bufs_.size() < kKeptBufs) {
    free_bufs_.push_back(p);
    return;
  }
  --bufs_;
  std::free(p);
}

void DiskCache::StoreLater(std::string_view volume_id, const Digest& address,
                           std::string_view sealed) {
  std::string key = PathFor(volume_id, address).string();
  char* buf = sealed.size() <= kBufBytes - 4096 ? TakeBuffer() : nullptr;
  if (buf != nullptr) {
    std::memcpy(buf, sealed.data(), sealed.size());
    std::shared_ptr<const Blob> blob(new Blob{this, buf, sealed.size()});  // no temporary
    absl::MutexLock lock(&wmu_);
    if (pending_.contains(key)) return;  // already queued (blob's buffer goes back)
    if (!wstop_) {
      pending_[key] = blob;
      write_queue_.push_back({std::string(volume_id), address, std::move(blob)});
      return;
    }
  }
  // No buffer free (the disk is not keeping up) or shutting down: write
  // inline (backpressure).
  StoreLocal(volume_id, address, sealed);
}

void DiskCache::WriteLoop() {
  for (;;) {
    Pending item;
    {
      absl::MutexLock lock(&wmu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(wmu_) {
        return wstop_ || !write_queue_.empty();
      };
      wmu_.Await(absl::Condition(&ready));
      if (write_queue_.empty()) return;  // stopping, and drained
      item = std::move(write_queue_.front());
      write_queue_.pop_front();
      ++writing_;
    }
    StoreLocal(item.volume_id, item.address, std::string_view(item.blob->data, item.blob->size),
               /*aligned=*/true);
    item.blob.reset();  // outside wmu_: the destructor takes pool_mu_ only
    absl::MutexLock lock(&wmu_);
    --writing_;
  }
}

void DiskCache::Flush() {
  absl::MutexLock lock(&wmu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(wmu_) {
    return write_queue_.empty() && writing_ == 0;
  };
  wmu_.Await(absl::Condition(&idle));
}

fs::path DiskCache::PathFor(std::string_view volume_id, const Digest& address) const {
  std::string hex = address.ToHex();
  return dir_ / "blobs" / std::string(volume_id) / hex.substr(0, 2) / hex;
}

bool DiskCache::StoreLocal(std::string_view volume_id, const Digest& address,
                           std::string_view sealed, bool aligned) {
  fs::path path = PathFor(volume_id, address);
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  fs::path tmp = path;
  static std::atomic<uint64_t> counter{0};
  tmp += absl::StrCat(".tmp.", ::getpid(), ".", counter.fetch_add(1));
  constexpr size_t kAlign = 4096;
  bool direct = aligned && reinterpret_cast<uintptr_t>(sealed.data()) % kAlign == 0;
  int fd = -1;
  if (direct) {
    // O_DIRECT: no copy into new page-cache pages (see disk_cache.h). Not
    // every file system supports it (tmpfs); fall back to a buffered write.
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT, 0600);
    if (fd < 0) direct = false;
  }
  if (fd < 0) fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    CAIRN_LOG_WARNING("cache: cannot write %s: %s", tmp.string(), std::strerror(errno));
    absl::MutexLock lock(&wmu_);
    auto it = pending_.find(path.string());
    if (it != pending_.end() && it->second->data == sealed.data()) pending_.erase(it);
    return false;
  }
  size_t done = 0;
  bool ok = true;
  if (direct) {
    // Whole blocks: pad the last one (the buffer has room), then cut the
    // file back to the blob's size.
    size_t padded = (sealed.size() + kAlign - 1) / kAlign * kAlign;
    char* p = const_cast<char*>(sealed.data());
    std::memset(p + sealed.size(), 0, padded - sealed.size());
    while (done < padded) {
      ssize_t n = ::write(fd, p + done, padded - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || n % kAlign != 0) {
        ok = false;
        break;
      }
      done += n;
    }
    if (ok && ::ftruncate(fd, static_cast<off_t>(sealed.size())) != 0) ok = false;
    if (!ok) {  // e.g. EINVAL: the file system wants another alignment
      direct = false;
      ok = true;
      done = 0;
      int flags = ::fcntl(fd, F_GETFL);
      if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_DIRECT) != 0 || ::ftruncate(fd, 0) != 0 ||
          ::lseek(fd, 0, SEEK_SET) != 0) {
        ok = false;
        done = sealed.size();
      }
    }
  }
  while (!direct && done < sealed.size()) {
    ssize_t n = ::write(fd, sealed.data() + done, sealed.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      ok = false;
      break;
    }
    done += n;
  }
  // No fsync: this is a cache. A blob torn by a power loss fails to
  // authenticate and is evicted and refetched (see Evict).
  ::close(fd);
  {
    // Only a blob still wanted goes in place: Evict (a copy that failed to
    // authenticate) removes the pending entry, and must win over a write
    // queued before it.
    absl::MutexLock lock(&wmu_);
    if (aligned) {  // a queued write (see StoreLater)
      auto it = pending_.find(path.string());
      if (it != pending_.end() && it->second->data == sealed.data()) {
        pending_.erase(it);
      } else {
        ok = false;  // evicted (or re-queued) meanwhile
      }
    }
    if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
      ::unlink(tmp.c_str());
      return false;
    }
  }
  uint64_t total = approx_bytes_.fetch_add(sealed.size()) + sealed.size();
  if (max_bytes_ > 0 && total > max_bytes_) {
    absl::MutexLock lock(&mu_);
    evict_wanted_ = true;
  }
  return true;
}

absl::Status DiskCache::Put(std::string_view volume_id, const Digest& address,
                            std::string_view sealed) {
  CAIRN_RETURN_IF_ERROR(remote_->Put(volume_id, address, sealed));
  StoreLocal(volume_id, address, sealed);
  return absl::OkStatus();
}

absl::StatusOr<std::string> DiskCache::Get(std::string_view volume_id, const Digest& address) {
  fs::path path = PathFor(volume_id, address);
  {
    absl::MutexLock lock(&wmu_);
    if (auto it = pending_.find(path.string()); it != pending_.end()) {
      hits_.fetch_add(1);
      return std::string(it->second->data, it->second->size);
    }
  }
  std::string local;
  if (ReadWhole(path, &local).ok()) {
    hits_.fetch_add(1);
    return local;
  }
  misses_.fetch_add(1);
  CAIRN_ASSIGN_OR_RETURN(std::string sealed, remote_->Get(volume_id, address));
  // The caller gets the blob now; the copy for the disk is written by the
  // writer thread (the write into the page cache used to be ~20 % of the
  // read path's CPU).
  StoreLater(volume_id, address, sealed);
  return sealed;
}

std::unique_ptr<BlobStore::Batch> DiskCache::NewBatch(std::string_view volume_id) {
  class CachingBatch final : public Batch {
   public:
    CachingBatch(DiskCache* cache, std::string_view volume_id)
        : cache_(cache), volume_id_(volume_id), remote_(cache->remote_->NewBatch(volume_id)) {}
    absl::Status Add(const Digest& address, std::string_view sealed) override {
      CAIRN_RETURN_IF_ERROR(remote_->Add(address, sealed));
      added_.emplace_back(address, std::string(sealed));
      return absl::OkStatus();
    }
    absl::Status Finish() override {
      CAIRN_RETURN_IF_ERROR(remote_->Finish());
      // Through the writer thread: the uploader does not wait for the disk.
      for (auto& [address, sealed] : added_) cache_->StoreLater(volume_id_, address, sealed);
      added_.clear();
      return absl::OkStatus();
    }

   private:
    DiskCache* const cache_;
    const std::string volume_id_;
    std::unique_ptr<Batch> remote_;
    std::vector<std::pair<Digest, std::string>> added_;
  };
  return std::make_unique<CachingBatch>(this, volume_id);
}

absl::StatusOr<BlobStore::Range> DiskCache::GetRange(std::string_view volume_id,
                                                     const Digest& address, uint64_t offset,
                                                     uint64_t length) {
  fs::path path = PathFor(volume_id, address);
  {
    absl::MutexLock lock(&wmu_);
    if (auto it = pending_.find(path.string()); it != pending_.end()) {
      hits_.fetch_add(1);
      return CutRange(address, std::string(it->second->data, it->second->size), offset, length);
    }
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    // A range read wants just its bytes: without this, every fresh open
    // starts the kernel's readahead over the blob (15 % of the mounter's
    // CPU under random reads, D31).
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
    Range range;
    struct stat st;
    absl::Status status;
    if (::fstat(fd, &st) != 0) {
      status = ErrnoToStatus(errno, absl::StrCat("stat ", path.string()));
    } else {
      range.total_size = static_cast<uint64_t>(st.st_size);
      if (offset > range.total_size) {
        status = absl::OutOfRangeError(absl::StrCat("offset ", offset, " is past the end of ",
                                                    path.string()));
      } else {
        range.data.resize(std::min(length, range.total_size - offset));
        size_t got = 0;
        while (got < range.data.size()) {
          ssize_t n = ::pread(fd, range.data.data() + got, range.data.size() - got,
                              static_cast<off_t>(offset + got));
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) {
            status = ErrnoToStatus(errno, absl::StrCat("read ", path.string()));
            break;
          }
          if (n == 0) break;  // shrank (replaced): authentication fails upstream
          got += static_cast<size_t>(n);
        }
        range.data.resize(got);
        // LRU order by atime (see Get), but a random reader must not pay
        // an inode update per read.
        if (absl::ToUnixSeconds(absl::Now()) - st.st_atim.tv_sec > 60) {
          struct timespec times[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
          ::futimens(fd, times);
        }
      }
    }
    ::close(fd);
    if (status.ok()) {
      hits_.fetch_add(1);
      return range;
    }
    if (absl::IsOutOfRange(status)) return status;
  }
  misses_.fetch_add(1);
  return remote_->GetRange(volume_id, address, offset, length);
}

DiskCache::ReadBuffer::~ReadBuffer() { std::free(data_); }

bool DiskCache::ReadBuffer::Reserve(size_t n) {
  if (n <= cap_) return true;
  void* p = nullptr;
  size_t cap = (n + (1u << 20) - 1) / (1u << 20) * (1u << 20);
  if (::posix_memalign(&p, 4096, cap) != 0) return false;
  std::free(data_);
  data_ = static_cast<char*>(p);
  cap_ = cap;
  return true;
}

absl::Status DiskCache::ReadLocal(std::string_view volume_id, const Digest& address,
                                  ReadBuffer* out, bool direct_wanted) {
  fs::path path = PathFor(volume_id, address);
  {
    absl::MutexLock lock(&wmu_);
    if (auto it = pending_.find(path.string()); it != pending_.end()) {
      if (!out->Reserve(it->second->size)) return absl::ResourceExhaustedError("read buffer");
      std::memcpy(out->data_, it->second->data, it->second->size);
      out->size_ = it->second->size;
      hits_.fetch_add(1);
      return absl::OkStatus();
    }
  }
  constexpr size_t kAlign = 4096;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("open ", path.string()));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoToStatus(err, absl::StrCat("stat ", path.string()));
  }
  size_t size = static_cast<size_t>(st.st_size);
  size_t padded = (size + kAlign - 1) / kAlign * kAlign;
  if (!out->Reserve(padded + kAlign)) {
    ::close(fd);
    return absl::ResourceExhaustedError("read buffer");
  }
  auto fail = [&](const char* what) {
    int err = errno;
    ::close(fd);
    return ErrnoToStatus(err, absl::StrCat(what, " ", path.string()));
  };
  // 1. A blob wholly in the page cache is copied from it (cachestat(2),
  // Linux 6.5+, asks without starting any I/O; preadv2(RWF_NOWAIT) would
  // start readahead, reading the blob twice).
  size_t got = 0;
  if (!direct_wanted || CachedPages(fd, size) * kAlign >= size) {
    while (got < size) {
      ssize_t n = ::pread(fd, out->data_ + got, size - got, static_cast<off_t>(got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return fail("read");
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    size = got;  // shrank meanwhile: no O_DIRECT pass below
  }
  if (got < size) {
    // 2. The rest from the disk, with O_DIRECT where the file system allows
    // it: whole blocks at aligned offsets (the last read comes back short at
    // the end of the file).
    got = got / kAlign * kAlign;
    int dfd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
    bool direct = dfd >= 0;
    int rfd = direct ? dfd : fd;
    for (;;) {
      size_t want = (direct ? padded + kAlign : size) - got;
      if (want == 0) break;
      ssize_t n = ::pread(rfd, out->data_ + got, want, static_cast<off_t>(got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && direct && errno == EINVAL) {  // alignment refused: buffered
        ::close(dfd);
        dfd = -1;
        direct = false;
        rfd = fd;
        continue;
      }
      if (n < 0) {
        if (dfd >= 0) ::close(dfd);
        return fail("read");
      }
      if (n == 0) break;
      got += static_cast<size_t>(n);
      if (direct && got % kAlign != 0) break;  // end of file
    }
    if (dfd >= 0) ::close(dfd);
  }
  // A file that grew or shrank meanwhile (replaced, torn): whatever was read
  // fails to authenticate upstream, and the caller evicts it.
  out->size_ = std::min(got, padded + kAlign);
  struct timespec times[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
  ::futimens(fd, times);  // LRU order (see ReadWhole)
  ::close(fd);
  hits_.fetch_add(1);
  return absl::OkStatus();
}

absl::StatusOr<bool> DiskCache::Contains(std::string_view volume_id, const Digest& address) {
  // Only a blob the control plane already had can be in the cache, but GC
  // may have removed it there since; uploads (PutChunk) must not skip on a
  // local hit, so ask the remote.
  return remote_->Contains(volume_id, address);
}

absl::Status DiskCache::Touch(std::string_view volume_id, const Digest& address) {
  return remote_->Touch(volume_id, address);
}
absl::Status DiskCache::List(std::string_view volume_id,
                             const std::function<void(const BlobInfo&)>& fn) {
  return remote_->List(volume_id, fn);
}
absl::Status DiskCache::Delete(std::string_view volume_id, const Digest& address) {
  Evict(volume_id, address);
  return remote_->Delete(volume_id, address);
}
absl::StatusOr<std::vector<std::string>> DiskCache::ListVolumes() { return remote_->ListVolumes(); }
absl::Status DiskCache::DeleteVolume(std::string_view volume_id) {
  return remote_->DeleteVolume(volume_id);
}

void DiskCache::Evict(std::string_view volume_id, const Digest& address) {
  fs::path path = PathFor(volume_id, address);
  absl::MutexLock lock(&wmu_);
  pending_.erase(path.string());
  ::unlink(path.c_str());
}

void DiskCache::EvictLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || evict_wanted_; };
      mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Seconds(60));
      if (stop_) return;
      evict_wanted_ = false;
    }
    EvictOnce();
  }
}

void DiskCache::EvictOnce() {
  fs::path lock_path = dir_ / "evict.lock";
  int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) return;
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {  // another process is at it
    ::close(lock_fd);
    return;
  }
  struct Item {
    struct timespec atime;
    uint64_t size;
    fs::path path;
  };
  std::vector<Item> items;
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir_ / "blobs", ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st;
    if (::lstat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    items.push_back({st.st_atim, static_cast<uint64_t>(st.st_size), it->path()});
    total += st.st_size;
  }
  if (total > max_bytes_) {
    std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
      return a.atime.tv_sec != b.atime.tv_sec ? a.atime.tv_sec < b.atime.tv_sec
                                              : a.atime.tv_nsec < b.atime.tv_nsec;
    });
    uint64_t target = max_bytes_ / 10 * 9;
    uint64_t removed = 0;
    for (const Item& item : items) {
      if (total <= target) break;
      if (::unlink(item.path.c_str()) == 0) {
        total -= item.size;
        ++removed;
      }
    }
    CAIRN_LOG_INFO("cache: evicted %d blobs, %d bytes remain", removed, total);
  }
  approx_bytes_.store(total);
  ::flock(lock_fd, LOCK_UN);
  ::close(lock_fd);
}

}  // namespace cairn::mounter
