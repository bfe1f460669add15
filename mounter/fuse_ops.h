// The libfuse low-level glue (shared/STYLE.md §10): each callback takes the
// FuseContext from fuse_req_userdata, calls its Filesystem, and replies.
// Nothing throws into libfuse; errors leave through StatusToErrno
// (core/status.h).
//
// Hand-over (mounter/handover.h): node IDs handed to the kernel are
// recorded in the context's InodeLog. The kernel sees file handles as
// `generation << 40 | Filesystem handle`, so a replacement never mistakes
// its predecessor's handles for its own; such a handle (opened by the
// mounter taken over from) is opened again from the request's node ID and
// open flags, and directory handles are listed again.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "mounter/filesystem.h"
#include "mounter/handover.h"
#include "mounter/inode_log.h"

namespace cairn::mounter {

// What the callbacks reach through fuse_req_userdata (and the custom I/O
// hooks through the session's userdata). `fs` must outlive it; `io` and
// `inodes` may be null (no hand-over). `generation` is the mounter's number
// on this connection (mounter/handover.h; 0 without a holder): the top bits
// of every handle the kernel gets. Thread-safe.
class FuseContext {
 public:
  static constexpr uint64_t kHandleMask = (uint64_t{1} << 40) - 1;
  FuseContext(Filesystem* fs, FuseConnectionIo* io, InodeLog* inodes, uint64_t generation)
      : fs_(fs),
        io_(io),
        inodes_(inodes),
        handle_base_(generation << 40),
        next_dir_(handle_base_ + 1) {}
  FuseContext(const FuseContext&) = delete;
  FuseContext& operator=(const FuseContext&) = delete;

  Filesystem* fs() const { return fs_; }
  FuseConnectionIo* io() const { return io_; }
  InodeLog* inodes() const { return inodes_; }

  // A directory listing taken at opendir; offsets index into it.
  struct DirHandle {
    std::vector<Filesystem::DirEntry> entries;
    bool read = false;  // a read at offset 0 happened
  };
  uint64_t AddDir(std::unique_ptr<DirHandle> handle);
  // Null if unknown.
  DirHandle* FindDir(uint64_t fh);
  // Registers `handle` under a number the kernel already uses.
  DirHandle* AdoptDir(uint64_t fh, std::unique_ptr<DirHandle> handle);
  void RemoveDir(uint64_t fh);

  // File handles: ours → the kernel's, and back. Inward: nullopt for a
  // handle of an earlier mounter that this one has not adopted.
  uint64_t Outward(uint64_t fh) const { return handle_base_ | fh; }
  std::optional<uint64_t> Inward(uint64_t kernel_fh);
  // Records that the kernel's `kernel_fh` is served by our `fh`; returns
  // the one recorded (an earlier adoption wins).
  uint64_t Adopt(uint64_t kernel_fh, uint64_t fh);
  // For release: Inward, and an adoption is forgotten.
  std::optional<uint64_t> Forget(uint64_t kernel_fh);

 private:
  Filesystem* const fs_;
  FuseConnectionIo* const io_;
  InodeLog* const inodes_;
  const uint64_t handle_base_;
  absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, uint64_t> adopted_ ABSL_GUARDED_BY(mu_);
  uint64_t next_dir_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, std::unique_ptr<DirHandle>> dirs_ ABSL_GUARDED_BY(mu_);
};

// The operations table; userdata must be a FuseContext*.
const fuse_lowlevel_ops& FuseOps();
// Hooks for fuse_session_custom_io that forward to the FuseContext's io()
// (which must then be set).
const fuse_custom_io& FuseIoHooks();

// Timeouts handed to the kernel for entries and attributes. Long, because
// only this mount changes its view, and a reload invalidates explicitly.
inline constexpr double kEntryTimeout = 300.0;

// Kernel-cache invalidation for Filesystem::Reload: inodes synchronously,
// entries from a background thread (the reload may run inside a request
// that holds the root directory's lock, which inval_entry would need).
// Owns that thread; destroy before the session.
class KernelNotifier {
 public:
  explicit KernelNotifier(fuse_session* se);
  ~KernelNotifier();
  KernelNotifier(const KernelNotifier&) = delete;
  KernelNotifier& operator=(const KernelNotifier&) = delete;
  Notifier notifier();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace cairn::mounter
