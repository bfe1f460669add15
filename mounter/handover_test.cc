#include "mounter/handover.h"

#include <fcntl.h>
#include <linux/fuse.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "gtest/gtest.h"

namespace cairn::mounter {
namespace {

std::string InitRequest(uint64_t unique) {
  std::string bytes(sizeof(fuse_in_header) + sizeof(fuse_init_in), '\0');
  fuse_in_header h{};
  h.len = static_cast<uint32_t>(bytes.size());
  h.opcode = FUSE_INIT;
  h.unique = unique;
  std::memcpy(bytes.data(), &h, sizeof h);
  return bytes;
}

struct SocketPair {
  SocketPair() {
    int sp[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
    a = ScopedFd(sp[0]);
    b = ScopedFd(sp[1]);
  }
  ScopedFd a, b;
};

TEST(HandoverTest, StatePassesWithItsDescriptor) {
  SocketPair s;
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  ScopedFd read_end(pipefd[0]);
  HandoverState out;
  out.fuse_fd = ScopedFd(pipefd[1]);
  out.init_request = InitRequest(42);
  out.journal_dir = "/var/cache/cairn/staging/vo-1/abc";
  out.generation = 3;
  ASSERT_TRUE(SendHandover(s.a.get(), out).ok());
  auto in = ReceiveHandover(s.b.get(), absl::Seconds(5));
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_EQ(in->init_request, out.init_request);
  EXPECT_EQ(in->journal_dir, out.journal_dir);
  EXPECT_EQ(in->generation, 3u);
  ASSERT_TRUE(in->fuse_fd.valid());
  EXPECT_NE(in->fuse_fd.get(), out.fuse_fd.get());
  // The same pipe: what goes in the received descriptor comes out here.
  ASSERT_EQ(::write(in->fuse_fd.get(), "x", 1), 1);
  char c = 0;
  ASSERT_EQ(::read(read_end.get(), &c, 1), 1);
  EXPECT_EQ(c, 'x');
  // Received descriptors are close-on-exec.
  EXPECT_NE(::fcntl(in->fuse_fd.get(), F_GETFD) & FD_CLOEXEC, 0);
}

TEST(HandoverTest, StartMessageWithoutDescriptorMeansMountAfresh) {
  SocketPair s;
  HandoverState fresh;
  fresh.generation = 1;
  ASSERT_TRUE(SendHandover(s.a.get(), fresh).ok());
  auto in = ReceiveHandover(s.b.get(), absl::Seconds(5));
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_FALSE(in->fuse_fd.valid());
  EXPECT_EQ(in->generation, 1u);
}

TEST(HandoverTest, ClosedPeerTimeoutAndGarbageAreDistinctErrors) {
  {
    SocketPair s;
    auto in = ReceiveHandover(s.b.get(), absl::Milliseconds(50));
    EXPECT_EQ(in.status().code(), absl::StatusCode::kDeadlineExceeded) << in.status();
    s.a.reset();
    in = ReceiveHandover(s.b.get(), absl::Seconds(5));
    EXPECT_EQ(in.status().code(), absl::StatusCode::kUnavailable) << in.status();
  }
  {
    SocketPair s;
    ASSERT_EQ(::send(s.a.get(), "hello", 5, 0), 5);
    auto in = ReceiveHandover(s.b.get(), absl::Seconds(5));
    EXPECT_EQ(in.status().code(), absl::StatusCode::kDataLoss) << in.status();
  }
  {
    // A descriptor with something that is not an INIT request is refused.
    SocketPair s;
    HandoverState bad;
    bad.fuse_fd = ScopedFd(::open("/dev/null", O_RDWR | O_CLOEXEC));
    bad.init_request = "not an init request, far too long to be a header anyway";
    ASSERT_TRUE(SendHandover(s.a.get(), bad).ok());
    auto in = ReceiveHandover(s.b.get(), absl::Seconds(5));
    EXPECT_EQ(in.status().code(), absl::StatusCode::kDataLoss) << in.status();
    EXPECT_NE(in.status().message().find("INIT"), std::string::npos) << in.status();
  }
}

TEST(HandoverTest, CheckInitRequest) {
  EXPECT_TRUE(CheckInitRequest(InitRequest(1)).ok());
  EXPECT_FALSE(CheckInitRequest("").ok());
  std::string wrong_len = InitRequest(1) + "x";
  EXPECT_FALSE(CheckInitRequest(wrong_len).ok());
  std::string other = InitRequest(1);
  uint32_t lookup = FUSE_LOOKUP;
  std::memcpy(other.data() + 4, &lookup, 4);
  EXPECT_FALSE(CheckInitRequest(other).ok());
}

// The hooks against a pipe standing in for /dev/fuse.
TEST(FuseConnectionIoTest, FirstWorkerRecordsTheInitRequest) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  ScopedFd r(p[0]), w(p[1]);
  FuseConnectionIo io;
  EXPECT_FALSE(io.WaitForInit(absl::ZeroDuration()).has_value());
  std::string init = InitRequest(7);
  ASSERT_EQ(::write(w.get(), init.data(), init.size()), static_cast<ssize_t>(init.size()));
  char buf[4096];
  ASSERT_EQ(io.Read(r.get(), buf, sizeof buf), static_cast<ssize_t>(init.size()));
  auto seen = io.WaitForInit(absl::Seconds(1));
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(*seen, init);
}

TEST(FuseConnectionIoTest, ReplacementReplaysInitAndSwallowsOnlyItsReply) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  ScopedFd r(p[0]), w(p[1]);
  std::string init = InitRequest(9);
  FuseConnectionIo io(init);
  char buf[4096];
  // First read: the saved request, without touching the descriptor.
  ASSERT_EQ(io.Read(r.get(), buf, sizeof buf), static_cast<ssize_t>(init.size()));
  EXPECT_EQ(std::string(buf, init.size()), init);
  fuse_out_header reply{sizeof(fuse_out_header), 0, 9};
  iovec iov{&reply, sizeof reply};
  EXPECT_EQ(io.Writev(w.get(), &iov, 1), static_cast<ssize_t>(sizeof reply));
  // Swallowed: nothing reached the descriptor.
  ASSERT_EQ(::fcntl(r.get(), F_SETFL, O_NONBLOCK), 0);
  EXPECT_EQ(::read(r.get(), buf, sizeof buf), -1);
  // Any other reply goes through.
  fuse_out_header other{sizeof(fuse_out_header), 0, 10};
  iovec iov2{&other, sizeof other};
  EXPECT_EQ(io.Writev(w.get(), &iov2, 1), static_cast<ssize_t>(sizeof other));
  EXPECT_EQ(::read(r.get(), buf, sizeof buf), static_cast<ssize_t>(sizeof other));
  // The same unique again (never sent by a kernel) is not swallowed twice.
  EXPECT_EQ(io.Writev(w.get(), &iov, 1), static_cast<ssize_t>(sizeof reply));
  EXPECT_EQ(::read(r.get(), buf, sizeof buf), static_cast<ssize_t>(sizeof reply));
}

TEST(FuseConnectionIoTest, DrainWakesABlockedReaderWithoutTakingARequest) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  ScopedFd r(p[0]), w(p[1]);
  FuseConnectionIo io;
  ssize_t result = 0;
  int err = 0;
  std::thread reader([&] {
    char buf[256];
    result = io.Read(r.get(), buf, sizeof buf);
    err = errno;
  });
  absl::SleepFor(absl::Milliseconds(50));
  io.Drain();
  reader.join();
  EXPECT_EQ(result, -1);
  EXPECT_EQ(err, ENODEV);
  EXPECT_TRUE(io.draining());
  // A request that arrives afterwards stays for the next reader.
  ASSERT_EQ(::write(w.get(), "q", 1), 1);
  char buf[8];
  EXPECT_EQ(io.Read(r.get(), buf, sizeof buf), -1);
  ASSERT_EQ(::read(r.get(), buf, sizeof buf), 1);
}

}  // namespace
}  // namespace cairn::mounter
