// InodeLog: which node IDs this mount handed to the kernel, and under which
// parent and name, so that a mounter taking over the same FUSE connection
// (mounter/handover.h) answers for the same inodes (docs/decisions.md D16).
// The kernel names files by node ID for as long as it caches them (open
// files, dentries for up to 300 s); node IDs are assigned per process, so a
// replacement without this table would serve the wrong files.
//
// The file is append-only: one record per (inode, parent, name) the kernel
// learnt from a lookup-like reply or a rename, written with write(2) only —
// the page cache keeps it when the mounter is killed, and a node crash ends
// the FUSE connection anyway, so it is never fsynced. Records: u32 payload
// length, then u64 ino, u64 parent, u32 type (S_IFMT bits), name bytes. A
// short tail (a write cut off) is ignored.
//
// Parent/name records rather than paths keep a rename of a directory one
// record: its children's records stay right.
//
// Thread-safe. A failed write is logged once and turns the log off (the
// mount keeps serving; only a hand-over would lose track of inodes).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/fd.h"

namespace cairn::mounter {

// The log's file name in a mount's journal directory.
inline constexpr char kInodeLogName[] = "inodes";

class InodeLog {
 public:
  struct Record {
    uint64_t ino = 0;
    uint64_t parent = 0;
    uint32_t type = 0;  // S_IFDIR, S_IFREG, S_IFLNK, …
    std::string name;
  };
  // An inode whose parent chain reaches the root (inode 1): its path below
  // the mount root, without a leading slash.
  struct Resolved {
    std::string path;
    uint64_t ino = 0;
    uint32_t type = 0;
  };

  // Creates (or truncates) `file` and writes `inherited` (a previous
  // worker's records, Read) into it first, so the chain goes on.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<InodeLog>> Create(
      const std::filesystem::path& file, const std::vector<Record>& inherited = {});
  InodeLog(const InodeLog&) = delete;
  InodeLog& operator=(const InodeLog&) = delete;

  // The kernel now knows `ino` as `name` in `parent`. Appends a record
  // unless that is already the newest one for `ino`.
  void Named(uint64_t ino, uint64_t parent, std::string_view name, uint32_t type);
  // A rename moved the inode the kernel knew at parent/name (if any).
  void Renamed(uint64_t parent, std::string_view name, uint64_t new_parent,
               std::string_view new_name);
  // OK, or the write error that turned the log off.
  absl::Status status();

  // The records of a log file, the newest per inode, oldest first. NotFound
  // if there is no file.
  [[nodiscard]] static absl::StatusOr<std::vector<Record>> Read(const std::filesystem::path& file);
  // The inodes of `records` that resolve to a path. Where two inodes claim
  // one path, the newer record wins.
  static std::vector<Resolved> Resolve(const std::vector<Record>& records);

 private:
  InodeLog(std::filesystem::path file, ScopedFd fd);
  void AppendLocked(const Record& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::filesystem::path file_;
  absl::Mutex mu_;
  ScopedFd fd_ ABSL_GUARDED_BY(mu_);
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  // The newest record per inode, and which inode each (parent, name)
  // names. Names are kept as 64-bit hashes: the maps cover every inode the
  // kernel has seen (a million after `ls -l` of a big directory), and a
  // collision costs at most one record not written.
  struct Place {
    uint64_t parent = 0;
    uint64_t name = 0;  // NameHash
    uint32_t type = 0;
  };
  static uint64_t NameHash(std::string_view name);
  void PlaceLocked(uint64_t ino, const Place& place) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::flat_hash_map<uint64_t, Place> place_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::pair<uint64_t, uint64_t>, uint64_t> at_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cairn::mounter
