#include "mounter/handover.h"

#include <linux/fuse.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/status.h"

namespace cairn::mounter {
namespace {

constexpr char kMagic[8] = {'C', 'A', 'I', 'R', 'N', 'H', 'O', '1'};
// Far above a real message (an INIT request is ~100 bytes, a path ≤ 4 KiB).
constexpr size_t kMaxMessage = 64 << 10;

void PutU32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }
void PutU64(std::string& out, uint64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); }

// Reads fields front to back; false once anything is short.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool U32(uint32_t* v) { return Take(v, 4); }
  bool U64(uint64_t* v) { return Take(v, 8); }
  bool Bytes(size_t n, std::string* out) {
    if (in_.size() < n) return false;
    out->assign(in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  bool empty() const { return in_.empty(); }

 private:
  bool Take(void* v, size_t n) {
    if (in_.size() < n) return false;
    std::memcpy(v, in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  std::string_view in_;
};

}  // namespace

namespace {

absl::StatusOr<sockaddr_un> UnixAddress(const std::filesystem::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string& s = path.native();
  if (s.empty() || s.size() >= sizeof addr.sun_path) {
    return absl::InvalidArgumentError(
        absl::StrCat("hand-over socket path \"", s, "\" is empty or longer than ",
                     sizeof addr.sun_path - 1, " bytes"));
  }
  std::memcpy(addr.sun_path, s.data(), s.size());
  return addr;
}

}  // namespace

absl::StatusOr<ScopedFd> ListenHandover(const std::filesystem::path& path) {
  CAIRN_ASSIGN_OR_RETURN(sockaddr_un addr, UnixAddress(path));
  ScopedFd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!sock.valid()) return ErrnoToStatus(errno, "socket");
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoToStatus(errno, absl::StrCat("remove the old ", path.string()));
  }
  if (::bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("bind ", path.string()));
  }
  if (::chmod(path.c_str(), 0600) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("chmod ", path.string()));
  }
  if (::listen(sock.get(), 4) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("listen ", path.string()));
  }
  return sock;
}

absl::StatusOr<ScopedFd> ConnectHandover(const std::filesystem::path& path,
                                         absl::Duration timeout) {
  CAIRN_ASSIGN_OR_RETURN(sockaddr_un addr, UnixAddress(path));
  absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    ScopedFd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (!sock.valid()) return ErrnoToStatus(errno, "socket");
    if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return sock;
    int err = errno;
    if (err != ENOENT && err != ECONNREFUSED && err != EAGAIN) {
      return ErrnoToStatus(err, absl::StrCat("connect to the holder at ", path.string()));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("no holder listens at ", path.string(),
                                                      " (", std::strerror(err), ")"));
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
}

absl::Status CheckInitRequest(const std::string& bytes) {
  fuse_in_header h;
  if (bytes.size() < sizeof h) return absl::InvalidArgumentError("INIT request too short");
  std::memcpy(&h, bytes.data(), sizeof h);
  if (h.opcode != FUSE_INIT) {
    return absl::InvalidArgumentError(absl::StrCat("not an INIT request (opcode ", h.opcode, ")"));
  }
  if (h.len != bytes.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("INIT request of ", bytes.size(), " bytes says ", h.len));
  }
  return absl::OkStatus();
}

absl::Status SendHandover(int sock, const HandoverState& state) {
  std::string payload(kMagic, sizeof kMagic);
  PutU64(payload, state.generation);
  PutU32(payload, static_cast<uint32_t>(state.init_request.size()));
  payload += state.init_request;
  std::string dir = state.journal_dir.string();
  PutU32(payload, static_cast<uint32_t>(dir.size()));
  payload += dir;
  if (payload.size() > kMaxMessage) return absl::InvalidArgumentError("hand-over message too big");

  iovec iov{payload.data(), payload.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (state.fuse_fd.valid()) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    int fd = state.fuse_fd.get();
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  for (;;) {
    ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(payload.size())) return absl::OkStatus();
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoToStatus(errno, "send hand-over message");
    return absl::DataLossError("hand-over message sent in part");
  }
}

absl::StatusOr<HandoverState> ReceiveHandover(int sock, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    pollfd p{sock, POLLIN, 0};
    absl::Duration left = deadline - absl::Now();
    int ms = left <= absl::ZeroDuration() ? 0 : static_cast<int>(absl::ToInt64Milliseconds(left)) + 1;
    if (timeout == absl::InfiniteDuration()) ms = -1;
    int r = ::poll(&p, 1, ms);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoToStatus(errno, "wait for a hand-over message");
    if (r == 0) return absl::DeadlineExceededError("no hand-over message in time");
    break;
  }
  std::string payload(kMaxMessage, '\0');
  iovec iov{payload.data(), payload.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ErrnoToStatus(errno, "receive hand-over message");

  HandoverState state;
  // Every descriptor that arrived is owned before anything can fail.
  std::vector<ScopedFd> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds.emplace_back(fd);
    }
  }
  if (n == 0 && fds.empty()) return absl::UnavailableError("the hand-over peer closed the socket");
  if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    return absl::DataLossError("hand-over message truncated");
  }
  if (fds.size() > 1) return absl::DataLossError("hand-over message with several descriptors");
  payload.resize(static_cast<size_t>(n));
  Reader in(payload);
  std::string magic;
  uint32_t init_len = 0, dir_len = 0;
  std::string dir;
  if (!in.Bytes(sizeof kMagic, &magic) || magic != std::string_view(kMagic, sizeof kMagic)) {
    return absl::DataLossError("not a hand-over message");
  }
  if (!in.U64(&state.generation) || !in.U32(&init_len) || !in.Bytes(init_len, &state.init_request) ||
      !in.U32(&dir_len) || !in.Bytes(dir_len, &dir) || !in.empty()) {
    return absl::DataLossError("malformed hand-over message");
  }
  state.journal_dir = dir;
  if (!fds.empty()) {
    if (auto st = CheckInitRequest(state.init_request); !st.ok()) {
      return absl::DataLossError(absl::StrCat("hand-over message: ", st.message()));
    }
    state.fuse_fd = std::move(fds.front());
  }
  return state;
}

// ---- FuseConnectionIo ---------------------------------------------------

FuseConnectionIo::FuseConnectionIo() : wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

FuseConnectionIo::FuseConnectionIo(std::string init_request) : FuseConnectionIo() {
  absl::MutexLock lock(&mu_);
  init_ = std::move(init_request);
  replay_pending_ = true;
}

FuseConnectionIo::~FuseConnectionIo() = default;

ssize_t FuseConnectionIo::Read(int fd, void* buf, size_t len) {
  {
    absl::MutexLock lock(&mu_);
    if (replay_pending_) {
      if (len < init_.size()) {
        errno = EINVAL;
        return -1;
      }
      replay_pending_ = false;
      std::memcpy(buf, init_.data(), init_.size());
      fuse_in_header h;
      std::memcpy(&h, init_.data(), sizeof h);
      swallow_unique_ = h.unique;
      have_init_ = true;
      return static_cast<ssize_t>(init_.size());
    }
  }
  // Wait for a request or for Drain(). Another reader may take the request
  // between the poll and the read; then this read blocks, which is what a
  // reader without hooks does too (libfuse cancels it at the session end).
  for (;;) {
    if (draining_.load()) {
      errno = ENODEV;
      return -1;
    }
    pollfd p[2] = {{fd, POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    int r = ::poll(p, 2, -1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (p[1].revents != 0) continue;  // draining
    if (p[0].revents != 0) break;
  }
  ssize_t n = ::read(fd, buf, len);
  if (n >= static_cast<ssize_t>(sizeof(fuse_in_header))) {
    const auto* h = static_cast<const fuse_in_header*>(buf);
    if (h->opcode == FUSE_INIT) {
      absl::MutexLock lock(&mu_);
      if (!have_init_) {
        init_.assign(static_cast<const char*>(buf), static_cast<size_t>(n));
        have_init_ = true;
      }
    }
  }
  return n;
}

ssize_t FuseConnectionIo::Writev(int fd, struct iovec* iov, int count) {
  if (count > 0 && iov[0].iov_len >= sizeof(fuse_out_header)) {
    fuse_out_header h;
    std::memcpy(&h, iov[0].iov_base, sizeof h);
    absl::MutexLock lock(&mu_);
    if (swallow_unique_ && *swallow_unique_ == h.unique) {
      // The kernel had this INIT answered by the first worker.
      swallow_unique_.reset();
      size_t total = 0;
      for (int i = 0; i < count; ++i) total += iov[i].iov_len;
      return static_cast<ssize_t>(total);
    }
  }
  return ::writev(fd, iov, count);
}

std::optional<std::string> FuseConnectionIo::WaitForInit(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto have = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return have_init_; };
  if (!mu_.AwaitWithTimeout(absl::Condition(&have), timeout)) return std::nullopt;
  return init_;
}

void FuseConnectionIo::Drain() {
  draining_.store(true);
  uint64_t one = 1;
  if (::write(wake_.get(), &one, sizeof one) < 0) {
    // The counter cannot overflow from single increments; nothing to do.
  }
}

}  // namespace cairn::mounter
