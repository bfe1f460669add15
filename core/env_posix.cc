// PosixEnv: Env over the real filesystem. ENOENT and ENOTDIR both mean
// "not there" (a missing parent shows as either), so both become NotFound.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "core/env.h"
#include "core/fd.h"
#include "core/status.h"

namespace cairn {
namespace {

namespace fs = std::filesystem;

absl::Status PathError(int err, std::string_view what, const fs::path& path) {
  const std::string context = std::string(what) + " " + path.string();
  if (err == ENOENT || err == ENOTDIR) return absl::NotFoundError(context + ": not found");
  return ErrnoToStatus(err, context);
}

std::chrono::system_clock::time_point ToTimePoint(const struct timespec& ts) {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)));
}

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(ScopedFd fd, fs::path path, bool write_once)
      : fd_(std::move(fd)), path_(std::move(path)), write_once_(write_once) {}

  absl::Status Append(std::string_view data) override {
    if (write_once_ && offset_ == 0) {
      CAIRN_ASSIGN_OR_RETURN(bool direct, WriteDirect(data));
      if (direct) {
        offset_ += data.size();
        return absl::OkStatus();
      }
    }
    while (!data.empty()) {
      ssize_t n = ::write(fd_.get(), data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return PathError(errno, "write", path_);
      data.remove_prefix(static_cast<size_t>(n));
      offset_ += static_cast<uint64_t>(n);
    }
    return absl::OkStatus();
  }

  absl::Status Sync() override {
    if (::fdatasync(fd_.get()) != 0) return PathError(errno, "fdatasync", path_);
    return absl::OkStatus();
  }

  absl::Status Close() override {
    if (!fd_.valid()) return absl::OkStatus();
    if (::close(fd_.release()) != 0) return PathError(errno, "close", path_);
    return absl::OkStatus();
  }

 private:
  // Writes `data` to the still empty file with O_DIRECT, bypassing the page
  // cache: blobs are written once and rarely read back soon, and the copy
  // into fresh page-cache pages was most of PutObjects' CPU (perf: 62% in
  // copy_folio_from_iter_atomic). The data goes through one aligned buffer
  // per thread, padded to the block size, then the file is truncated to the
  // real size (made durable by the caller's Sync). False (file still empty,
  // O_DIRECT off again) when the filesystem refuses O_DIRECT or the data is
  // small; the caller then writes it buffered.
  absl::StatusOr<bool> WriteDirect(std::string_view data) {
    constexpr size_t kAlign = 4096;
    constexpr size_t kKeptBufferBytes = 8 << 20;
    if (data.size() < 64 * 1024) return false;
    struct Buffer {
      ~Buffer() { std::free(mem); }
      char* mem = nullptr;
      size_t size = 0;
      bool unsupported = false;
    };
    thread_local Buffer buffer;
    if (buffer.unsupported) return false;
    const size_t padded = (data.size() + kAlign - 1) / kAlign * kAlign;
    if (buffer.size < padded) {
      void* mem = nullptr;
      if (::posix_memalign(&mem, kAlign, padded) != 0) return false;
      std::free(buffer.mem);
      buffer.mem = static_cast<char*>(mem);
      buffer.size = padded;
    }
    std::memcpy(buffer.mem, data.data(), data.size());
    std::memset(buffer.mem + data.size(), 0, padded - data.size());
    const int fd = fd_.get();
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_DIRECT) != 0) {
      buffer.unsupported = true;
      return false;
    }
    size_t done = 0;
    bool ok = true;
    while (done < padded) {
      ssize_t n = ::pwrite(fd, buffer.mem + done, padded - done, static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || static_cast<size_t>(n) % kAlign != 0) {
        if (n < 0 && errno == EINVAL) buffer.unsupported = true;
        ok = false;
        break;
      }
      done += static_cast<size_t>(n);
    }
    ::fcntl(fd, F_SETFL, flags);
    // A chunk (4 MiB plus seal) fits the kept buffer; a rare big directory
    // object must not pin its size in every thread that ever wrote one.
    if (buffer.size > kKeptBufferBytes) {
      std::free(buffer.mem);
      buffer.mem = nullptr;
      buffer.size = 0;
    }
    if (ok && ::ftruncate(fd, static_cast<off_t>(data.size())) != 0) ok = false;
    // Back to an empty file for the buffered fallback.
    if (!ok && ::ftruncate(fd, 0) != 0) return PathError(errno, "truncate", path_);
    if (ok && ::lseek(fd, static_cast<off_t>(data.size()), SEEK_SET) < 0) {
      return PathError(errno, "seek", path_);
    }
    return ok;
  }

  ScopedFd fd_;
  const fs::path path_;
  const bool write_once_;
  uint64_t offset_ = 0;
};

class PosixEnvImpl final : public Env {
 public:
  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const fs::path& path,
                                                                WriteOptions options) override {
    ScopedFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd.valid()) return PathError(errno, "create", path);
    return std::unique_ptr<WritableFile>(
        new PosixWritableFile(std::move(fd), path, options.write_once));
  }

  absl::StatusOr<std::string> ReadFile(const fs::path& path) override {
    ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return PathError(errno, "open", path);
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return PathError(errno, "stat", path);
    std::string out(static_cast<size_t>(st.st_size), '\0');
    size_t got = 0;
    while (got < out.size()) {
      ssize_t n = ::read(fd.get(), out.data() + got, out.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return PathError(errno, "read", path);
      if (n == 0) break;  // shrank under us; return what is there, don't spin
      got += static_cast<size_t>(n);
    }
    out.resize(got);
    return out;
  }

  absl::StatusOr<std::string> ReadFileRange(const fs::path& path, uint64_t offset,
                                            uint64_t length, uint64_t* size) override {
    ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return PathError(errno, "open", path);
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return PathError(errno, "stat", path);
    *size = static_cast<uint64_t>(st.st_size);
    if (offset >= *size) return std::string();
    std::string out(static_cast<size_t>(std::min(length, *size - offset)), '\0');
    size_t got = 0;
    while (got < out.size()) {
      ssize_t n = ::pread(fd.get(), out.data() + got, out.size() - got,
                          static_cast<off_t>(offset + got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return PathError(errno, "read", path);
      if (n == 0) break;  // shrank under us: the caller's authentication fails
      got += static_cast<size_t>(n);
    }
    out.resize(got);
    return out;
  }

  absl::Status Rename(const fs::path& from, const fs::path& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) return PathError(errno, "rename to", to);
    return absl::OkStatus();
  }

  absl::Status Link(const fs::path& from, const fs::path& to) override {
    if (::link(from.c_str(), to.c_str()) != 0) {
      if (errno == EEXIST) return absl::AlreadyExistsError(absl::StrCat(to.string(), " exists"));
      return PathError(errno, "link", from);
    }
    return absl::OkStatus();
  }

  absl::Status RemoveFile(const fs::path& path) override {
    if (::unlink(path.c_str()) != 0) return PathError(errno, "unlink", path);
    return absl::OkStatus();
  }

  absl::Status CreateDir(const fs::path& path) override {
    if (::mkdir(path.c_str(), 0755) != 0) {
      if (errno == EEXIST) return absl::AlreadyExistsError(absl::StrCat(path.string(), " exists"));
      return PathError(errno, "mkdir", path);
    }
    return absl::OkStatus();
  }

  absl::Status SyncDir(const fs::path& path) override {
    ScopedFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid()) return PathError(errno, "open", path);
    if (::fsync(fd.get()) != 0) return PathError(errno, "fsync", path);
    return absl::OkStatus();
  }

  absl::StatusOr<FileInfo> Stat(const fs::path& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return PathError(errno, "stat", path);
    return FileInfo{.is_dir = S_ISDIR(st.st_mode),
                    .size = static_cast<uint64_t>(st.st_size),
                    .mtime = ToTimePoint(st.st_mtim)};
  }

  absl::Status Touch(const fs::path& path) override {
    if (::utimensat(AT_FDCWD, path.c_str(), nullptr, 0) != 0) {
      return PathError(errno, "touch", path);
    }
    return absl::OkStatus();
  }

  absl::Status ListDir(const fs::path& dir,
                       const std::function<void(const std::string&)>& fn) override {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return PathError(errno, "opendir", dir);
    absl::Status status;
    for (;;) {
      errno = 0;
      struct dirent* e = ::readdir(d);
      if (e == nullptr) {
        if (errno != 0) status = PathError(errno, "readdir", dir);
        break;
      }
      std::string_view name = e->d_name;
      if (name == "." || name == "..") continue;
      fn(std::string(name));
    }
    ::closedir(d);
    return status;
  }

  absl::Status RemoveTree(const fs::path& path) override {
    std::error_code ec;
    fs::remove_all(path, ec);
    if (ec && ec != std::errc::no_such_file_or_directory) {
      return ErrnoToStatus(ec.value(), absl::StrCat("remove ", path.string()));
    }
    return absl::OkStatus();
  }
};

}  // namespace

Env* PosixEnv() {
  static Env* const env = new PosixEnvImpl();
  return env;
}

absl::Status CreateDirsDurable(Env& env, const fs::path& dir) {
  if (dir.empty() || dir == dir.root_path()) return absl::OkStatus();
  const fs::path parent = dir.has_relative_path() ? dir.parent_path() : fs::path();
  absl::StatusOr<FileInfo> info = env.Stat(dir);
  if (info.ok()) {
    if (!info->is_dir) {
      return absl::FailedPreconditionError(absl::StrCat(dir.string(), " is not a directory"));
    }
    // Existing is not durable: whoever made it may have died before
    // syncing its entry. A clean directory's fsync returns at once.
  } else {
    if (!absl::IsNotFound(info.status())) return info.status();
    if (!parent.empty()) CAIRN_RETURN_IF_ERROR(CreateDirsDurable(env, parent));
    absl::Status made = env.CreateDir(dir);
    if (!made.ok() && !absl::IsAlreadyExists(made)) return made;
  }
  return env.SyncDir(parent.empty() ? fs::path(".") : parent);
}

}  // namespace cairn
