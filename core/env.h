// Env: the file operations the storage core performs, behind one narrow
// interface (shared/STYLE.md §5), so a test can put a fault-injecting
// filesystem under the local blob store and check what survives a power cut
// (testing/fault_env.h). PosixEnv() is the one real implementation.
//
// Durability is explicit, as on a real disk: file data is durable after
// WritableFile::Sync, and a directory's entries (files created, renamed or
// removed in it, subdirectories made) are durable only after SyncDir of that
// directory. Nothing else promises anything across a power cut.
//
// Failure: NotFound when a path (or its directory) does not exist,
// AlreadyExists for exclusive creates of an existing name, otherwise the
// errno mapped by ErrnoToStatus. Implementations are thread-safe; a
// WritableFile is used by one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cairn {

class WritableFile {
 public:
  virtual ~WritableFile() = default;
  [[nodiscard]] virtual absl::Status Append(std::string_view data) = 0;
  // Makes the data written so far durable (fdatasync).
  [[nodiscard]] virtual absl::Status Sync() = 0;
  // Closes; not a durability point. The destructor closes too, ignoring errors.
  [[nodiscard]] virtual absl::Status Close() = 0;
};

struct FileInfo {
  bool is_dir = false;
  uint64_t size = 0;
  std::chrono::system_clock::time_point mtime;
};

class Env {
 public:
  virtual ~Env() = default;

  struct WriteOptions {
    // The data is written once and not read back soon: an implementation
    // may bypass the page cache (O_DIRECT) for large appends.
    bool write_once = false;
  };
  // Creates `path` exclusively (AlreadyExists if present), mode 0644.
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      const std::filesystem::path& path, WriteOptions options) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path) = 0;
  // Bytes [offset, offset + length) of the file, clipped at its end, and
  // its size in `*size`. The default reads the whole file.
  [[nodiscard]] virtual absl::StatusOr<std::string> ReadFileRange(const std::filesystem::path& path,
                                                                  uint64_t offset, uint64_t length,
                                                                  uint64_t* size) {
    absl::StatusOr<std::string> all = ReadFile(path);
    if (!all.ok()) return all.status();
    *size = all->size();
    if (offset >= all->size()) return std::string();
    return all->substr(offset, length);
  }
  // Atomically replaces `to` (same directory in all current callers).
  [[nodiscard]] virtual absl::Status Rename(const std::filesystem::path& from,
                                            const std::filesystem::path& to) = 0;
  // A hard link: `to` names the file `from` names. NotFound if `from` is
  // missing, AlreadyExists if `to` is taken.
  [[nodiscard]] virtual absl::Status Link(const std::filesystem::path& from,
                                          const std::filesystem::path& to) = 0;
  // NotFound if absent.
  [[nodiscard]] virtual absl::Status RemoveFile(const std::filesystem::path& path) = 0;
  // One level, mode 0755. AlreadyExists if the name is taken.
  [[nodiscard]] virtual absl::Status CreateDir(const std::filesystem::path& path) = 0;
  // fsync of a directory: its entries become durable.
  [[nodiscard]] virtual absl::Status SyncDir(const std::filesystem::path& path) = 0;
  [[nodiscard]] virtual absl::StatusOr<FileInfo> Stat(const std::filesystem::path& path) = 0;
  // Sets the modification time to now. NotFound if absent.
  [[nodiscard]] virtual absl::Status Touch(const std::filesystem::path& path) = 0;
  // Calls fn(name) for every entry but "." and "..". NotFound if `dir` is
  // missing.
  [[nodiscard]] virtual absl::Status ListDir(const std::filesystem::path& dir,
                                             const std::function<void(const std::string&)>& fn) = 0;
  // Removes `path` and everything below it. Missing is OK.
  [[nodiscard]] virtual absl::Status RemoveTree(const std::filesystem::path& path) = 0;
};

// The real filesystem. Process-wide, never destroyed.
Env* PosixEnv();

// Creates `dir` and any missing parents, and makes each created entry
// durable in its parent. `dir`'s own entry is synced even when it already
// exists: existing is not durable if its maker died before syncing.
[[nodiscard]] absl::Status CreateDirsDurable(Env& env, const std::filesystem::path& dir);

}  // namespace cairn
