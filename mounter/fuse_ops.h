// The libfuse low-level glue (shared/STYLE.md §10): each callback takes the
// Filesystem from fuse_req_userdata, calls it, and replies. Nothing throws
// into libfuse; errors leave through StatusToErrno (core/status.h).
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "mounter/filesystem.h"

namespace cairn::mounter {

// The operations table; userdata must be a Filesystem*.
const fuse_lowlevel_ops& FuseOps();

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
