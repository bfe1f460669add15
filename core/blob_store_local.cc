// LocalBlobStore: blobs as files under root/<volume id>/<aa>/<bb>/<hex>.
//
// Several processes may share a root. Writers never modify a visible file:
// a blob is written to a uniquely named temporary in its final directory
// ("." prefix, so List skips it), fsynced, renamed over the final name and
// the directory fsynced, so a reader sees a whole blob or none. Two writers
// of one address both rename; each rename is atomic and either content is a
// valid sealing of that address. Shard directories are created with mkdir,
// treating EEXIST as success, so racing creators are harmless.
// NewBatch (PutObjects) writes blobs the same way but with O_DIRECT and
// fsyncs the directories once per batch; see LocalBatch.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <system_error>
#include <algorithm>
#include <functional>
#include <set>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/blob_store.h"
#include "core/crypto.h"
#include "core/fd.h"
#include "core/path.h"
#include "core/status.h"

namespace cairn {
namespace {

// Debian's abseil 20220623 has its own absl::string_view (not an alias of
// std::string_view), so std::string_view must be converted explicitly.
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

namespace fs = std::filesystem;

std::chrono::system_clock::time_point ToTimePoint(const struct timespec& ts) {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)));
}

absl::Status FsyncPath(const fs::path& dir) {
  ScopedFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("open ", dir.string()));
  if (::fsync(fd.get()) != 0) return ErrnoToStatus(errno, absl::StrCat("fsync ", dir.string()));
  return absl::OkStatus();
}

// mkdir that tolerates a concurrent creator. A directory we did create is
// made durable by fsyncing its parent, so a blob renamed into it later does
// not vanish with its directory entry after a crash.
// The parent is fsynced on EEXIST too: the process that created the
// directory may not have made its entry durable yet, and a blob acknowledged
// inside it must not vanish with a power cut. fsync of an already clean
// directory returns at once, so the common case stays cheap.
absl::Status MkdirDurable(const fs::path& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoToStatus(errno, absl::StrCat("mkdir ", dir.string()));
  }
  return FsyncPath(dir.parent_path());
}

absl::Status WriteAll(int fd, std::string_view data, const fs::path& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoToStatus(errno, absl::StrCat("write ", path.string()));
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

// Calls fn(name) for every entry of `dir` except "." and "..". A missing
// directory has no entries.
absl::Status ForEachEntry(const fs::path& dir, const std::function<void(const char*)>& fn) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    if (errno == ENOENT || errno == ENOTDIR) return absl::OkStatus();
    return ErrnoToStatus(errno, absl::StrCat("opendir ", dir.string()));
  }
  absl::Status status;
  for (;;) {
    errno = 0;
    struct dirent* e = ::readdir(d);
    if (e == nullptr) {
      if (errno != 0) status = ErrnoToStatus(errno, absl::StrCat("readdir ", dir.string()));
      break;
    }
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    fn(e->d_name);
  }
  ::closedir(d);
  return status;
}

bool IsHexShard(std::string_view name) {
  return name.size() == 2 && std::all_of(name.begin(), name.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

class LocalBlobStore : public BlobStore {
 public:
  explicit LocalBlobStore(fs::path root) : root_(std::move(root)) {}

  std::unique_ptr<Batch> NewBatch(std::string_view volume_id) override;

  absl::Status Put(std::string_view volume_id, const Digest& address,
                   std::string_view sealed) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    const std::string hex = address.ToHex();
    const fs::path dir = ShardDir(volume_id, hex);
    const fs::path final_path = dir / hex;
    // Present already: content-addressed, so only refresh the mtime (GC's
    // grace period restarts) and make sure its entry is durable (see
    // Touch). If it vanished in between, write it anew.
    if (::utimensat(AT_FDCWD, final_path.c_str(), nullptr, 0) == 0) return FsyncPath(dir);
    if (errno != ENOENT && errno != ENOTDIR) {
      return ErrnoToStatus(errno, absl::StrCat("touch ", final_path.string()));
    }
    // A concurrent DeleteVolume can remove the directories between mkdir
    // and open; one retry recreates them.
    for (int attempt = 0;; ++attempt) {
      CAIRN_RETURN_IF_ERROR(MkdirDurable(root_ / std::string(volume_id)));
      CAIRN_RETURN_IF_ERROR(MkdirDurable(dir.parent_path()));
      CAIRN_RETURN_IF_ERROR(MkdirDurable(dir));
      absl::Status st = WriteNew(dir, hex, sealed);
      if (st.ok() || !absl::IsNotFound(st) || attempt >= 1) return st;
    }
  }

  // A hard link: the clone shares the file, so no bytes are copied and the
  // blob stays on disk until neither volume references it.
  absl::Status Link(std::string_view from_volume, std::string_view to_volume,
                    const Digest& address) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(from_volume));
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(to_volume));
    const std::string hex = address.ToHex();
    const fs::path from = BlobPath(from_volume, address);
    const fs::path dir = ShardDir(to_volume, hex);
    CAIRN_RETURN_IF_ERROR(MkdirDurable(root_ / std::string(to_volume)));
    CAIRN_RETURN_IF_ERROR(MkdirDurable(dir.parent_path()));
    CAIRN_RETURN_IF_ERROR(MkdirDurable(dir));
    if (::link(from.c_str(), (dir / hex).c_str()) != 0 && errno != EEXIST) {
      if (errno == ENOENT) return NotFound(from_volume, address);
      return ErrnoToStatus(errno, absl::StrCat("link ", from.string()));
    }
    return FsyncPath(dir);
  }

  absl::StatusOr<std::string> Get(std::string_view volume_id, const Digest& address) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    const fs::path path = BlobPath(volume_id, address);
    ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
      if (errno == ENOENT || errno == ENOTDIR) return NotFound(volume_id, address);
      return ErrnoToStatus(errno, absl::StrCat("open ", path.string()));
    }
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("stat ", path.string()));
    }
    std::string out(static_cast<size_t>(st.st_size), '\0');
    size_t got = 0;
    while (got < out.size()) {
      ssize_t n = ::read(fd.get(), out.data() + got, out.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoToStatus(errno, absl::StrCat("read ", path.string()));
      if (n == 0) break;  // cannot happen for an immutable file; don't spin
      got += static_cast<size_t>(n);
    }
    out.resize(got);
    return out;
  }

  absl::StatusOr<bool> Contains(std::string_view volume_id, const Digest& address) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    const fs::path path = BlobPath(volume_id, address);
    struct stat st;
    if (::stat(path.c_str(), &st) == 0) return true;
    if (errno == ENOENT || errno == ENOTDIR) return false;
    return ErrnoToStatus(errno, absl::StrCat("stat ", path.string()));
  }

  absl::Status Touch(std::string_view volume_id, const Digest& address) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    const fs::path path = BlobPath(volume_id, address);
    // A caller that finds a blob present references it instead of storing
    // it, so its directory entry must be durable now: a concurrent batch
    // (PutObjects) renames blobs in before its directory fsyncs. fsync of
    // an already clean directory returns at once.
    if (::utimensat(AT_FDCWD, path.c_str(), nullptr, 0) == 0) return FsyncPath(path.parent_path());
    if (errno == ENOENT || errno == ENOTDIR) return NotFound(volume_id, address);
    return ErrnoToStatus(errno, absl::StrCat("touch ", path.string()));
  }

  absl::Status List(std::string_view volume_id,
                    const std::function<void(const BlobInfo&)>& fn) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    const fs::path vdir = root_ / std::string(volume_id);
    absl::Status inner;
    absl::Status outer = ForEachEntry(vdir, [&](const char* aa) {
      if (!inner.ok() || !IsHexShard(aa)) return;
      const fs::path adir = vdir / aa;
      absl::Status mid = ForEachEntry(adir, [&](const char* bb) {
        if (!inner.ok() || !IsHexShard(bb)) return;
        const fs::path bdir = adir / bb;
        absl::Status leaf = ForEachEntry(bdir, [&](const char* name) {
          if (!inner.ok()) return;
          // Temporaries start with '.', so FromHex refuses them; so does
          // anything else that is not a blob.
          absl::StatusOr<Digest> digest = Digest::FromHex(name);
          if (!digest.ok()) return;
          std::string hex = digest->ToHex();
          if (hex != name || hex.compare(0, 2, aa) != 0 || hex.compare(2, 2, bb) != 0) return;
          struct stat st;
          if (::stat((bdir / name).c_str(), &st) != 0) {
            // Deleted while we walked: not part of the listing.
            if (errno != ENOENT) inner = ErrnoToStatus(errno, absl::StrCat("stat ", name));
            return;
          }
          fn(BlobInfo{*digest, ToTimePoint(st.st_mtim), static_cast<uint64_t>(st.st_size)});
        });
        if (inner.ok() && !leaf.ok()) inner = leaf;
      });
      if (inner.ok() && !mid.ok()) inner = mid;
    });
    CAIRN_RETURN_IF_ERROR(inner);
    return outer;
  }

  absl::Status Delete(std::string_view volume_id, const Digest& address) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    const fs::path path = BlobPath(volume_id, address);
    if (::unlink(path.c_str()) == 0 || errno == ENOENT || errno == ENOTDIR) {
      return absl::OkStatus();
    }
    return ErrnoToStatus(errno, absl::StrCat("unlink ", path.string()));
  }

  absl::StatusOr<std::vector<std::string>> ListVolumes() override {
    std::vector<std::string> out;
    CAIRN_RETURN_IF_ERROR(ForEachEntry(root_, [&](const char* name) {
      if (!ValidateVolumeId(name).ok()) return;
      struct stat st;
      if (::stat((root_ / name).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) out.push_back(name);
    }));
    std::sort(out.begin(), out.end());
    return out;
  }

  absl::Status DeleteVolume(std::string_view volume_id) override {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id));
    const fs::path vdir = root_ / std::string(volume_id);
    std::error_code ec;
    fs::remove_all(vdir, ec);
    if (ec && ec != std::errc::no_such_file_or_directory) {
      return ErrnoToStatus(ec.value(), absl::StrCat("remove ", vdir.string()));
    }
    return absl::OkStatus();
  }

 private:
  friend class LocalBatch;

  fs::path ShardDir(std::string_view volume_id, const std::string& hex) const {
    return root_ / std::string(volume_id) / hex.substr(0, 2) / hex.substr(2, 2);
  }
  fs::path BlobPath(std::string_view volume_id, const Digest& address) const {
    std::string hex = address.ToHex();
    return ShardDir(volume_id, hex) / hex;
  }

  static absl::Status NotFound(std::string_view volume_id, const Digest& address) {
    return absl::NotFoundError(
        absl::StrCat("blob ", address.ToHex(), " of volume ", Sv(volume_id), " not found"));
  }

  // Temp file + fsync + rename + fsync(dir). NotFound if `dir` vanished.
  absl::Status WriteNew(const fs::path& dir, const std::string& hex, std::string_view sealed) {
    // pid + random: unique across processes and threads without coordination.
    const fs::path tmp = dir / absl::StrCat(".tmp.", hex.substr(0, 16), ".", ::getpid(), ".",
                                            absl::BytesToHexString(RandomBytes(8)));
    ScopedFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("create ", tmp.string()));
    absl::Status st = WriteAll(fd.get(), sealed, tmp);
    if (st.ok() && ::fsync(fd.get()) != 0) st = ErrnoToStatus(errno, "fsync " + tmp.string());
    if (st.ok() && ::close(fd.release()) != 0) st = ErrnoToStatus(errno, "close " + tmp.string());
    if (st.ok() && ::rename(tmp.c_str(), (dir / hex).c_str()) != 0) {
      st = ErrnoToStatus(errno, absl::StrCat("rename to ", (dir / hex).string()));
    }
    if (!st.ok()) {
      ::unlink(tmp.c_str());
      return st;
    }
    return FsyncPath(dir);
  }

  const fs::path root_;
};

// A batch writes each blob as Put does, temporary + fdatasync + rename, so
// a name only ever shows a whole, durable blob and a crash leaves at most
// one temporary per writer (everything else is a complete orphan blob that
// GC collects). What it defers is the directory side: the shard
// directories' entries (mkdir and rename) are fsynced once per directory at
// Finish instead of three to four fsyncs per blob, and Finish returns only
// once they are durable. The blob data goes to the disk with O_DIRECT (see
// WriteDirect), so the fdatasync has only metadata left to commit.
class LocalBatch final : public BlobStore::Batch {
 public:
  LocalBatch(LocalBlobStore* store, std::string_view volume_id)
      : store_(store), volume_id_(volume_id) {}

  absl::Status Add(const Digest& address, std::string_view sealed) override {
    if (!validated_) {
      CAIRN_RETURN_IF_ERROR(ValidateVolumeId(volume_id_));
      validated_ = true;
    }
    const std::string hex = address.ToHex();
    const fs::path dir = store_->ShardDir(volume_id_, hex);
    const fs::path final_path = dir / hex;
    // Present already: refresh the mtime, as Put does. Its directory is
    // synced at Finish too, in case the writer that renamed it there has
    // not made the entry durable yet.
    if (::utimensat(AT_FDCWD, final_path.c_str(), nullptr, 0) == 0) {
      dirs_.insert(dir);
      return absl::OkStatus();
    }
    if (errno != ENOENT && errno != ENOTDIR) {
      return ErrnoToStatus(errno, absl::StrCat("touch ", final_path.string()));
    }
    // A concurrent DeleteVolume can remove the directories between mkdir
    // and open; one retry recreates them.
    for (int attempt = 0;; ++attempt) {
      // Each directory's entry in its parent is made durable at Finish.
      const fs::path vdir = store_->root_ / volume_id_;
      for (const fs::path& d : {vdir, dir.parent_path(), dir}) {
        if (::mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) {
          return ErrnoToStatus(errno, absl::StrCat("mkdir ", d.string()));
        }
        dirs_.insert(d.parent_path());
      }
      absl::Status st = WriteBlob(dir, hex, final_path, sealed);
      if (st.ok()) dirs_.insert(dir);
      if (st.ok() || !absl::IsNotFound(st) || attempt >= 1) return st;
    }
  }

  absl::Status Finish() override {
    // Deepest first: a shard's entries, then its parent's, then the root's.
    for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) {
      CAIRN_RETURN_IF_ERROR(FsyncPath(*it));
    }
    dirs_.clear();
    return absl::OkStatus();
  }

 private:
  // Temporary, data durable, renamed into place. NotFound if `dir` vanished.
  absl::Status WriteBlob(const fs::path& dir, const std::string& hex, const fs::path& final_path,
                         std::string_view sealed) {
    const fs::path tmp = dir / absl::StrCat(".tmp.", hex.substr(0, 16), ".", ::getpid(), ".",
                                            absl::BytesToHexString(RandomBytes(8)));
    ScopedFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("create ", tmp.string()));
    absl::StatusOr<bool> direct = WriteDirect(fd.get(), sealed);
    absl::Status st = !direct.ok() ? direct.status()
                      : *direct    ? absl::OkStatus()
                                   : WriteAll(fd.get(), sealed, tmp);
    if (st.ok() && ::fdatasync(fd.get()) != 0) st = ErrnoToStatus(errno, "fsync " + tmp.string());
    if (st.ok() && ::close(fd.release()) != 0) st = ErrnoToStatus(errno, "close " + tmp.string());
    if (st.ok() && ::rename(tmp.c_str(), final_path.c_str()) != 0) {
      st = ErrnoToStatus(errno, absl::StrCat("rename to ", final_path.string()));
    }
    if (!st.ok()) ::unlink(tmp.c_str());
    return st;
  }

  // Writes `data` to the empty file `fd` with O_DIRECT, bypassing the page
  // cache: blobs are written once and rarely read back soon, and the copy
  // into fresh page-cache pages was most of PutObjects' CPU (perf: 62% in
  // copy_folio_from_iter_atomic). The data goes through one aligned buffer
  // reused across the batch, padded to the block size, then the file is
  // truncated to the real size (made durable by the caller's fdatasync).
  // False (file still empty, O_DIRECT off again) when the filesystem refuses
  // O_DIRECT or the blob is small; the caller then writes it buffered.
  absl::StatusOr<bool> WriteDirect(int fd, std::string_view data) {
    constexpr size_t kAlign = 4096;
    if (direct_unsupported_ || data.size() < 64 * 1024) return false;
    const size_t padded = (data.size() + kAlign - 1) / kAlign * kAlign;
    if (aligned_size_ < padded) {
      void* mem = nullptr;
      if (::posix_memalign(&mem, kAlign, padded) != 0) return false;
      aligned_.reset(static_cast<char*>(mem));
      aligned_size_ = padded;
    }
    std::memcpy(aligned_.get(), data.data(), data.size());
    std::memset(aligned_.get() + data.size(), 0, padded - data.size());
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_DIRECT) != 0) {
      direct_unsupported_ = true;
      return false;
    }
    size_t done = 0;
    bool ok = true;
    while (done < padded) {
      ssize_t n = ::pwrite(fd, aligned_.get() + done, padded - done, static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || static_cast<size_t>(n) % kAlign != 0) {
        if (n < 0 && errno == EINVAL) direct_unsupported_ = true;
        ok = false;
        break;
      }
      done += static_cast<size_t>(n);
    }
    ::fcntl(fd, F_SETFL, flags);
    if (ok && ::ftruncate(fd, static_cast<off_t>(data.size())) != 0) ok = false;
    // Back to an empty file for the buffered fallback.
    if (!ok && ::ftruncate(fd, 0) != 0) return ErrnoToStatus(errno, "truncate blob temporary");
    return ok;
  }

  LocalBlobStore* const store_;
  const std::string volume_id_;
  bool validated_ = false;
  bool direct_unsupported_ = false;
  struct FreeDeleter {
    void operator()(char* p) const { std::free(p); }
  };
  std::unique_ptr<char, FreeDeleter> aligned_;
  size_t aligned_size_ = 0;
  std::set<fs::path> dirs_;
};

std::unique_ptr<BlobStore::Batch> LocalBlobStore::NewBatch(std::string_view volume_id) {
  return std::make_unique<LocalBatch>(this, volume_id);
}

}  // namespace

absl::StatusOr<std::unique_ptr<BlobStore>> OpenLocalBlobStore(const std::filesystem::path& root) {
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return ErrnoToStatus(ec.value(), absl::StrCat("create blob root ", root.string()));
  struct stat st;
  if (::stat(root.c_str(), &st) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("stat blob root ", root.string()));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("blob root ", root.string(), " is not a directory"));
  }
  return std::unique_ptr<BlobStore>(new LocalBlobStore(root));
}

}  // namespace cairn
