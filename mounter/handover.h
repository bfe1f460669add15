// Mounter hand-over (docs/decisions.md D16): the kernel's FUSE connection of
// a mount lives as long as any descriptor of its /dev/fuse file is open, so a
// second holder of that descriptor keeps the mount alive while the mounter
// serving it dies or is replaced, and the replacement serves the same
// connection: the pod's open files and its bind mount keep working.
//
// Two pieces live here, shared by every holder (today the per-mount holder
// process, mounter/holder.h; a mount-pod launcher may speak the same
// protocol):
//
// 1. The hand-over socket protocol. An AF_UNIX SOCK_SEQPACKET socket between
//    the holder and the mounter ("worker") it runs; each message is one
//    HandoverState, the /dev/fuse descriptor (if any) passed with
//    SCM_RIGHTS. The worker's end is named by the environment variable
//    kHandoverFdEnv (a descriptor number it inherited).
//    - holder → worker, first: either a state to take over (descriptor,
//      saved INIT request, the previous worker's journal directory) or one
//      without a descriptor (mount afresh).
//    - worker → holder, once it serves: its descriptor, the INIT request the
//      kernel sent at mount time, and its journal directory. The holder
//      keeps the latest.
//    - A worker that ends because it was asked to hand over (SIGUSR1) exits
//      with kHandedOverExit after answering everything it had taken; any
//      other death by signal is a crash. Both make the holder start the
//      next worker on the same connection; other exits end the mount.
//    - Mounter pods (docs/decisions.md D29): the worker is not the holder's
//      child but connects to a socket the holder listens on
//      (ListenHandover / ConnectHandover), so the holder cannot see its exit
//      status or signal it. The end of the connection is the worker's end
//      (a hand-over or a crash: the next worker to connect takes over), and
//      holder → worker, after the start message: any further message means
//      "end the mount" (unmount and make the final commit).
//
// 2. FuseConnectionIo, the libfuse custom I/O (fuse_session_custom_io,
//    libfuse 3.14) that makes a takeover possible: the kernel sends FUSE_INIT
//    once per connection, and libfuse refuses requests until it has seen
//    one. A first worker records the INIT request it reads; a replacement
//    is handed those bytes as its first read, and its reply to them is
//    swallowed, so the kernel never sees a second INIT reply. Drain() makes
//    every reader stop taking new requests (they stay queued in the kernel
//    for the next worker), so the session loop ends once the requests in
//    hand are answered.
//
// Thread-safety: FuseConnectionIo is thread-safe (its hooks run on every
// session thread). The protocol functions are safe for distinct sockets.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/fd.h"

namespace cairn::mounter {

// Names the worker's end of the hand-over socket (a descriptor number).
inline constexpr char kHandoverFdEnv[] = "CAIRN_HANDOVER_FD";
// Exit code of a worker that stopped serving so that the next one takes over.
inline constexpr int kHandedOverExit = 75;

struct HandoverState {
  ScopedFd fuse_fd;                   // the mount's /dev/fuse; invalid: mount afresh
  std::string init_request;           // FUSE_INIT as the kernel sent it
  std::filesystem::path journal_dir;  // of the worker that served (may be empty)
  uint64_t generation = 0;            // 1 for the first worker, +1 per takeover
};

// One message. Errors: the errno of sendmsg (EPIPE: the peer is gone).
[[nodiscard]] absl::Status SendHandover(int sock, const HandoverState& state);
// Waits up to `timeout` for one message. Unavailable when the peer closed
// the socket, DeadlineExceeded on timeout, DataLoss for a malformed message
// (any descriptor it carried is closed).
[[nodiscard]] absl::StatusOr<HandoverState> ReceiveHandover(int sock, absl::Duration timeout);

// The holder's end for workers that connect (mounter pods): a listening
// SOCK_SEQPACKET socket at `path` (a stale one there is replaced), mode 0600.
[[nodiscard]] absl::StatusOr<ScopedFd> ListenHandover(const std::filesystem::path& path);
// The worker's end: connects to the holder at `path`, retrying while it does
// not exist or does not accept yet, up to `timeout` (DeadlineExceeded).
[[nodiscard]] absl::StatusOr<ScopedFd> ConnectHandover(const std::filesystem::path& path,
                                                       absl::Duration timeout);

// The INIT request's identity, for logs and checks: its opcode must be
// FUSE_INIT and the length must match the header. InvalidArgument if not.
[[nodiscard]] absl::Status CheckInitRequest(const std::string& bytes);

class FuseConnectionIo {
 public:
  // A first worker: records the first FUSE_INIT it reads.
  FuseConnectionIo();
  // A replacement: `init_request` is its first read; the reply is swallowed.
  explicit FuseConnectionIo(std::string init_request);
  ~FuseConnectionIo();
  FuseConnectionIo(const FuseConnectionIo&) = delete;
  FuseConnectionIo& operator=(const FuseConnectionIo&) = delete;

  // The hooks (libfuse's fuse_custom_io read and writev; fuse_ops.cc
  // installs them). Read: -1 with errno ENODEV once draining, which libfuse
  // takes as the end of the session.
  ssize_t Read(int fd, void* buf, size_t len);
  ssize_t Writev(int fd, struct iovec* iov, int count);

  // The INIT request once one was read (or replayed), waiting up to `timeout`.
  std::optional<std::string> WaitForInit(absl::Duration timeout);
  void Drain();
  bool draining() const { return draining_.load(); }

 private:
  ScopedFd wake_;  // eventfd, readable once draining
  std::atomic<bool> draining_{false};
  absl::Mutex mu_;
  std::string init_ ABSL_GUARDED_BY(mu_);
  bool have_init_ ABSL_GUARDED_BY(mu_) = false;
  bool replay_pending_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<uint64_t> swallow_unique_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cairn::mounter
