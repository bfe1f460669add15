// Per-version volume limits through a mount (DESIGN.md C7): inodes, entries
// per directory, file size, hard links.
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

TEST_F(MountTest, V1InodeLimit) {
  // Limits live with the volume (small ones so the test reaches them); a
  // limit looser than the version allows is refused.
  RunResult loose = Cli({"volume", "create", "too-loose", "--version", "1", "--max-inodes",
                         "600000"});
  EXPECT_EQ(loose.exit_code, 1) << Describe(loose);
  EXPECT_THAT(loose.err, HasSubstr("above version 1's maximum of 500000"));
  std::string vol = NewVolume(1, {"--max-inodes", "5"});
  MOUNT_OR_RETURN(a, vol);
  ASSERT_EQ(::mkdir((*a / "d").c_str(), 0755), 0);
  for (int i = 0; i < 4; ++i) Spit(*a / absl::StrCat("d/f", i), "x");
  int fd = ::open((*a / "one-too-many").c_str(), O_CREAT | O_WRONLY, 0644);
  EXPECT_EQ(fd < 0 ? errno : 0, ENOSPC);
  EXPECT_EQ(Errno(::mkdir((*a / "dir2").c_str(), 0755)), ENOSPC);
  EXPECT_EQ(Errno(::symlink("x", (*a / "link").c_str())), ENOSPC);
  // Removing one makes room again.
  ASSERT_EQ(::unlink((*a / "d/f0").c_str()), 0);
  fd = ::open((*a / "now-fits").c_str(), O_CREAT | O_WRONLY, 0644);
  EXPECT_GE(fd, 0);
  if (fd >= 0) ::close(fd);
  ASSERT_EQ(Control("commit", *a).exit_code, 0);
  // The control plane enforces the same limit on every path in: an upload
  // past it fails as a whole.
  fs::path extra = dir_->path() / "inode-limit-extra.txt";
  Spit(extra, "x");
  RunResult put = Cli({"volume", "put", vol, extra.string(), "/extra.txt"});
  EXPECT_EQ(put.exit_code, 1) << Describe(put);
  EXPECT_THAT(put.err, HasSubstr("inode limit"));
}

TEST_F(MountTest, V2DirectoryEntryAndFileSizeLimits) {
  std::string vol = NewVolume(2, {"--max-dir-entries", "3", "--max-file-size", "1M"});
  MOUNT_OR_RETURN(a, vol);
  ASSERT_EQ(::mkdir((*a / "d").c_str(), 0755), 0);
  for (int i = 0; i < 3; ++i) Spit(*a / absl::StrCat("d/f", i), "x");
  int fd = ::open((*a / "d/f3").c_str(), O_CREAT | O_WRONLY, 0644);
  EXPECT_EQ(fd < 0 ? errno : 0, ENOSPC);
  EXPECT_EQ(Errno(::rename((*a / "d/f0").c_str(), (*a / "d/f0-renamed").c_str())), 0);
  // Another directory still has room.
  Spit(*a / "other.txt", "fine");
  EXPECT_TRUE(fs::exists(*a / "other.txt"));
  // File size: EFBIG at the write that would reach the limit.
  fd = ::open((*a / "big").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  std::string block(64 << 10, 'b');
  EXPECT_EQ(::pwrite(fd, block.data(), block.size(), 0), static_cast<ssize_t>(block.size()));
  EXPECT_EQ(Errno(::pwrite(fd, block.data(), block.size(), (1 << 20) - 1000)), EFBIG);
  EXPECT_EQ(Errno(::ftruncate(fd, 2 << 20)), EFBIG);
  ::close(fd);
  // Over-long names.
  std::string long_name(256, 'n');
  fd = ::open((*a / long_name).c_str(), O_CREAT | O_WRONLY, 0644);
  EXPECT_EQ(fd < 0 ? errno : 0, ENAMETOOLONG);
  RunResult r = Control("commit", *a);
  ASSERT_EQ(r.exit_code, 0) << Describe(r) << a->Log();
}

TEST_F(MountTest, HardLinksOnlyOnV2) {
  std::string v1 = NewVolume(1);
  MOUNT_OR_RETURN(a, v1);
  Spit(*a / "f", "content");
  EXPECT_EQ(Errno(::link((*a / "f").c_str(), (*a / "g").c_str())), EPERM);

  std::string v2 = NewVolume(2);
  MOUNT_OR_RETURN(b, v2);
  Spit(*b / "f", "linked");
  ASSERT_EQ(Errno(::link((*b / "f").c_str(), (*b / "g").c_str())), 0);
  struct stat sf, sg;
  ASSERT_EQ(::stat((*b / "f").c_str(), &sf), 0);
  ASSERT_EQ(::stat((*b / "g").c_str(), &sg), 0);
  EXPECT_EQ(sf.st_ino, sg.st_ino);
  EXPECT_EQ(sf.st_nlink, 2u);
  {
    std::ofstream out(*b / "g", std::ios::app);
    out << " twice";
  }
  EXPECT_EQ(Slurp(*b / "f"), "linked twice");
  RunResult r = Control("commit", *b);
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(HeadFile(v2, "f"), "linked twice");
  EXPECT_EQ(HeadFile(v2, "g"), "linked twice");
}

}  // namespace
}  // namespace cairn::e2e
