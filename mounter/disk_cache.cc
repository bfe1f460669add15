#include "mounter/disk_cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
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

// Reads a whole file; NotFound if it does not exist.
absl::StatusOr<std::string> ReadWhole(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("open ", path.string()));
  std::string out;
  struct stat st;
  if (::fstat(fd, &st) == 0) out.reserve(st.st_size);
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return ErrnoToStatus(err, absl::StrCat("read ", path.string()));
    }
    if (n == 0) break;
    out.append(buf, n);
  }
  // Refresh atime explicitly: relatime/noatime mounts would not, and
  // eviction orders by it.
  struct timespec times[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
  ::futimens(fd, times);
  ::close(fd);
  return out;
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
}

DiskCache::~DiskCache() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (evictor_.joinable()) evictor_.join();
}

fs::path DiskCache::PathFor(std::string_view volume_id, const Digest& address) const {
  std::string hex = address.ToHex();
  return dir_ / "blobs" / std::string(volume_id) / hex.substr(0, 2) / hex;
}

void DiskCache::StoreLocal(std::string_view volume_id, const Digest& address,
                           std::string_view sealed) {
  fs::path path = PathFor(volume_id, address);
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  fs::path tmp = path;
  static std::atomic<uint64_t> counter{0};
  tmp += absl::StrCat(".tmp.", ::getpid(), ".", counter.fetch_add(1));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    CAIRN_LOG_WARNING("cache: cannot write %s: %s", tmp.string(), std::strerror(errno));
    return;
  }
  size_t done = 0;
  bool ok = true;
  while (done < sealed.size()) {
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
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return;
  }
  uint64_t total = approx_bytes_.fetch_add(sealed.size()) + sealed.size();
  if (max_bytes_ > 0 && total > max_bytes_) {
    absl::MutexLock lock(&mu_);
    evict_wanted_ = true;
  }
}

absl::Status DiskCache::Put(std::string_view volume_id, const Digest& address,
                            std::string_view sealed) {
  CAIRN_RETURN_IF_ERROR(remote_->Put(volume_id, address, sealed));
  StoreLocal(volume_id, address, sealed);
  return absl::OkStatus();
}

absl::StatusOr<std::string> DiskCache::Get(std::string_view volume_id, const Digest& address) {
  auto local = ReadWhole(PathFor(volume_id, address));
  if (local.ok()) {
    hits_.fetch_add(1);
    return local;
  }
  misses_.fetch_add(1);
  CAIRN_ASSIGN_OR_RETURN(std::string sealed, remote_->Get(volume_id, address));
  StoreLocal(volume_id, address, sealed);
  return sealed;
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
  ::unlink(PathFor(volume_id, address).c_str());
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
