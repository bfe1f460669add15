// A mounter killed mid-work (SIGKILL) or ending with a failed final commit:
// committed data stays, the next mount recovers what was not committed.
// Real `cairn server` and `cairn mount` processes and kernel mounts over the
// shared fixture (e2e/mount_fixture.h); needs root and /dev/fuse.

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "e2e/mount_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn::e2e {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

TEST_F(MountTest, SigkillOfMounterKeepsCommittedDataAndNextMountCleansUp) {
  std::string vol = NewVolume();
  fs::path mp = dir_->path() / "killed";
  std::string id;
  {
    MOUNT_OR_RETURN(a, vol, {}, mp);
    id = VolumeId(*a);
    Spit(*a / "committed.txt", "safe");
    ASSERT_EQ(Control("commit", *a).exit_code, 0);
    a->child().Signal(SIGKILL);
    a->child().Wait(10s);
    struct stat st;
    EXPECT_EQ(Errno(::stat(mp.c_str(), &st)), ENOTCONN);
  }
  MOUNT_OR_RETURN(b, vol, {}, mp);
  EXPECT_EQ(Slurp(*b / "committed.txt"), "safe");
  EXPECT_EQ(b->Unmount(), 0) << b->Log();
  struct stat st;
  EXPECT_EQ(::stat(mp.c_str(), &st), 0);
  // The killed mounter's journal directory went with the next mount.
  std::error_code ec;
  EXPECT_TRUE(fs::is_empty(dir_->path() / "cache/staging" / id, ec) || ec) << ec.message();
}

// After a mounter crash the next mount of the volume on the node recovers
// what was not committed: namespace changes, files as of their last close or
// fsync (docs/mounter.md "Durability"); and it commits them.
TEST_F(MountTest, SigkilledMounterChangesAreRecoveredByTheNextMount) {
  std::string vol = NewVolume();
  fs::path mp = dir_->path() / "killed-recover";
  std::string big(3 << 20, 'B');  // beyond what stays in memory: a staging file
  big[12345] = 'x';
  {
    MOUNT_OR_RETURN(a, vol, {}, mp);
    Spit(*a / "base.txt", "base");
    Spit(*a / "gone.txt", "gone");
    ASSERT_EQ(Control("commit", *a).exit_code, 0);
    // fsync'd, then killed before any commit.
    int fd = ::open((*a / "checkpoint.bin").c_str(), O_CREAT | O_WRONLY, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, big.data(), big.size()), static_cast<ssize_t>(big.size()));
    ASSERT_EQ(::fsync(fd), 0) << std::strerror(errno);
    fd = ::open((*a / "small.txt").c_str(), O_CREAT | O_WRONLY, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, "small", 5), 5);
    ASSERT_EQ(::fsync(fd), 0);
    ::close(fd);
    // Closed, not fsynced: survives a mounter crash (not a power cut).
    ASSERT_EQ(::mkdir((*a / "dir").c_str(), 0750), 0);
    Spit(*a / "dir/closed.txt", "closed");
    ASSERT_EQ(::unlink((*a / "gone.txt").c_str()), 0);
    ASSERT_EQ(::rename((*a / "base.txt").c_str(), (*a / "moved.txt").c_str()), 0);
    // Still open, written, never fsynced or closed: may lose its writes.
    int open_fd = ::open((*a / "open.txt").c_str(), O_CREAT | O_WRONLY, 0644);
    ASSERT_GE(open_fd, 0);
    ASSERT_EQ(::write(open_fd, "unsynced", 8), 8);
    a->child().Signal(SIGKILL);
    a->child().Wait(10s);
    ::close(open_fd);
  }
  EXPECT_FALSE(HeadFile(vol, "checkpoint.bin").has_value());
  MOUNT_OR_RETURN(b, vol, {}, mp);
  EXPECT_THAT(b->Log(), HasSubstr("recovered"));
  EXPECT_EQ(Slurp(*b / "checkpoint.bin"), big);
  EXPECT_EQ(Slurp(*b / "small.txt"), "small");
  EXPECT_EQ(Slurp(*b / "dir/closed.txt"), "closed");
  EXPECT_FALSE(fs::exists(*b / "gone.txt"));
  EXPECT_FALSE(fs::exists(*b / "base.txt"));
  EXPECT_EQ(Slurp(*b / "moved.txt"), "base");
  struct stat st;
  ASSERT_EQ(::stat((*b / "dir").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  ASSERT_TRUE(fs::exists(*b / "open.txt"));
  EXPECT_TRUE(std::string_view("unsynced").starts_with(Slurp(*b / "open.txt")));
  // Committed by the recovering mount without being asked.
  EXPECT_EQ(HeadFile(vol, "checkpoint.bin"), big);
  EXPECT_EQ(HeadFile(vol, "dir/closed.txt"), "closed");
  EXPECT_FALSE(HeadFile(vol, "gone.txt").has_value());
  EXPECT_EQ(b->Unmount(), 0) << b->Log();
}

// A final commit that cannot reach the control plane leaves the changes in
// the journal, says so, and says what the slow unmount is doing; the next
// mount of the volume commits them.
TEST_F(MountTest, FailedFinalCommitIsRecoveredByTheNextMount) {
  cairn::testing::TempDir own;
  std::string vol = "final-commit-fails";
  auto server = OwnServer(own.path() / "data", vol);
  ASSERT_NE(server, nullptr);
  auto a = MountVolume(vol, {"--final-commit-timeout", "3"}, {}, server.get());
  ASSERT_NE(a, nullptr);
  Spit(*a / "pending.txt", "pending");
  server->Stop(SIGKILL);
  EXPECT_EQ(a->Unmount(), 1) << a->Log();
  EXPECT_THAT(a->Log(), HasSubstr("stay in"));
  EXPECT_THAT(a->Log(), HasSubstr("unmount of " + vol + ": final commit"));
  // The same data directory again, as after a control plane restart.
  auto again = OwnServer(own.path() / "data", "");
  ASSERT_NE(again, nullptr);
  ExpectFileInNewMountAndHead(*again, vol, "pending.txt", "pending");
}

}  // namespace
}  // namespace cairn::e2e
