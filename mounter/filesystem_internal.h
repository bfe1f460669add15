// Internal to the Filesystem implementation (mounter/filesystem*.cc): the
// inode tree's Node and the open-file Handle, and the small helpers the
// parts share. Nothing outside those files includes this.
//
// Thread-safety: a Node's mutable fields are guarded by the owning
// Filesystem's mu_ and reachable only through View(fs) (mu_ held at least
// shared) and Edit(fs) (mu_ held exclusively), so clang's -Wthread-safety
// checks every access; an ABSL_GUARDED_BY on a nested type's member cannot
// name the outer object's mutex, an accessor taking the Filesystem can.
// `ino` and `type` never change after construction; the atomics need no
// lock. A Node is owned by shared_ptrs (the inode table, its parent's
// children, pending changes, handles); `parent` and `extra_links` point to
// directories that outlive it while it is attached.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/path.h"
#include "core/status.h"
#include "mounter/filesystem.h"

namespace cairn::mounter {

inline constexpr uint32_t kDefaultDirMode = 0755;

inline absl::Status Errno(int err, std::string_view what) { return ErrnoToStatus(err, what); }

inline int64_t NowNs() { return absl::ToUnixNanos(absl::Now()); }

// core/path.h's SplitParent, as owned strings ("a/b/c" → {"a/b", "c"};
// "c" → {"", "c"}).
inline std::pair<std::string, std::string> Split(std::string_view path) {
  auto [dir, name] = SplitParent(path);
  return {std::string(dir), std::string(name)};
}

// A commit that failed for a transient reason (control plane unreachable,
// cancelled, timed out) answers EIO: EAGAIN does not survive the kernel's
// xattr path as itself, and callers read the reason from the status.
inline absl::Status ForControl(absl::Status status) {
  int err = StatusToErrno(status);
  if (err == EAGAIN || err == ENOSYS) return WithErrno(std::move(status), EIO);
  return status;
}

// LookupPath, with every directory on the way loaded through the reader
// first: it repairs damaged node-cache copies, and LookupPath then finds
// them in the ObjectStore's cache of parsed directories.
absl::StatusOr<objects::Entry> LookupRepairing(ChunkReader& reader, ObjectStore& objects,
                                               const Digest& root, std::string_view path);

// The S_IF* bits of a special file's entry type.
inline mode_t SpecialFileType(objects::EntryType type) {
  switch (type) {
    case objects::FIFO: return S_IFIFO;
    case objects::SOCKET: return S_IFSOCK;
    case objects::CHAR_DEVICE: return S_IFCHR;
    case objects::BLOCK_DEVICE: return S_IFBLK;
    default: return 0;
  }
}

inline bool IsSpecialFile(objects::EntryType type) { return SpecialFileType(type) != 0; }

struct Filesystem::Node {
  struct Fields;
  Node(uint64_t ino, objects::EntryType type) : ino(ino), type(type) {}
  // A node with its fields set before anyone else can reach it.
  Node(uint64_t ino, objects::EntryType type, Fields fields);

  struct Fields {
    uint32_t mode = 0644;  // permission bits with setuid/setgid/sticky (07777)
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    // Kept apart from mtime; reads move it relatime-style, in memory only
    // (no change is logged for a read: it is committed with the node's
    // next change).
    int64_t atime_ns = 0;
    // The stored owner (objects.proto format 2). has_owner false: the entry
    // stores none (written before owners were, or by `volume put`) and
    // shows the mount's default owner (Filesystem::PresentLocked).
    bool has_owner = false;
    uint32_t uid = 0;
    uint32_t gid = 0;
    uint64_t rdev = 0;  // CHAR_DEVICE / BLOCK_DEVICE
    // DIRECTORY: children that are directories (st_nlink = 2 + this) once
    // loaded; before, what the entry records, or -1 when it records none.
    int64_t subdirs = -1;
    // FILE: the base content (chunks or inline), until staged.
    std::shared_ptr<const objects::Entry> base;
    std::shared_ptr<StagedFile> staged;
    std::string symlink;
    // DIRECTORY
    Digest tree;
    bool loaded = false;
    std::map<std::string, std::shared_ptr<Node>> children;
    // Position. `parent` is valid while attached (a parent outlives its
    // children: a non-empty directory cannot be detached).
    bool attached = false;
    Node* parent = nullptr;
    std::string name;
    std::vector<std::pair<Node*, std::string>> extra_links;  // v2 hard links
    uint64_t link_id = 0;
    // A hard link of the base: the names it had when committed, and how
    // many of them this mount has listed; the rest count in st_nlink.
    uint32_t base_links = 0;
    uint32_t base_names_seen = 0;
    uint32_t UnseenLinks() const {
      return base_links > base_names_seen ? base_links - base_names_seen : 0;
    }
    bool put_pending = false;  // a PUT of this node is in the change log
    uint64_t jid = 0;          // names the node in the journal (0: not yet)

    // Mode, times, owner and device number from a stored entry (absent
    // times read as its mtime).
    void TakeAttributes(const objects::Entry& e) {
      mode = e.mode() & 07777;
      mtime_ns = e.mtime_ns();
      ctime_ns = e.ctime_ns() != 0 ? e.ctime_ns() : e.mtime_ns();
      atime_ns = e.atime_ns() != 0 ? e.atime_ns() : e.mtime_ns();
      has_owner = e.has_uid() && e.has_gid();
      uid = e.uid();
      gid = e.gid();
      rdev = e.rdev();
      if (e.has_subdirs()) subdirs = e.subdirs();
    }
    // The owner, times and device number into an entry being committed or
    // journaled (mode and mtime are set by the caller, as before).
    void PutAttributes(objects::Entry& e) const {
      if (has_owner) {
        e.set_uid(uid);
        e.set_gid(gid);
      }
      e.set_atime_ns(atime_ns);
      e.set_ctime_ns(ctime_ns);
      e.set_rdev(rdev);
    }
  };
  const Fields& View(const Filesystem& fs) const ABSL_SHARED_LOCKS_REQUIRED(fs.mu_) {
    return fields_;
  }
  Fields& Edit(const Filesystem& fs) ABSL_EXCLUSIVE_LOCKS_REQUIRED(fs.mu_) { return fields_; }

  const uint64_t ino;
  const objects::EntryType type;
  // Kernel references and open handles.
  std::atomic<uint64_t> nlookup{0};
  std::atomic<int> open{0};
  // Operations changing the staged content without an open handle
  // (truncate by path) between staging it and logging the change: a commit
  // finishing meanwhile must not swap the staged file out (see SetAttr).
  std::atomic<int> modifying{0};

 private:
  Fields fields_;
};

inline Filesystem::Node::Node(uint64_t ino, objects::EntryType type, Fields fields)
    : ino(ino), type(type), fields_(std::move(fields)) {}

struct Filesystem::Handle {
  std::shared_ptr<Node> node;
  bool writable = false;
  // End of the last read: a read starting there is sequential (readahead).
  std::atomic<uint64_t> next_read{0};
  // Reads in a row that started near the previous one's end (capped): a
  // reader counts as sequential from the second such read on, so one read
  // landing near a random reader's last does not fetch whole chunks.
  std::atomic<int> near_reads{0};
};

}  // namespace cairn::mounter
