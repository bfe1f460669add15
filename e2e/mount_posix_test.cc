// POSIX behaviour of a mount (docs/mounter.md "POSIX scope"): the suite of
// syscalls, and the adversarial cases from the contract review.
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

// POSIX behaviour for one writer. Out of scope (docs/mounter.md): chown,
// special files (mknod of devices/FIFOs), RENAME_EXCHANGE, O_DIRECT, locks,
// atime, uid/gid per file.
TEST_F(MountTest, PosixSuite) {
  std::string vol = NewVolume();
  MOUNT_OR_RETURN(a, vol);
  const fs::path m = a->path();
  // create + write at offsets, sparse extension, read back.
  int fd = ::open((m / "f").c_str(), O_CREAT | O_EXCL | O_RDWR, 0640);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(Errno(::open((m / "f").c_str(), O_CREAT | O_EXCL | O_RDWR, 0640)), EEXIST);
  ASSERT_EQ(::pwrite(fd, "hello", 5, 0), 5);
  ASSERT_EQ(::pwrite(fd, "world", 5, 10), 5);
  char buf[32] = {};
  ASSERT_EQ(::pread(fd, buf, sizeof buf, 0), 15);
  EXPECT_EQ(std::string(buf, 15), std::string("hello\0\0\0\0\0world", 15));
  ASSERT_EQ(::fsync(fd), 0);
  // truncate shorter and longer.
  ASSERT_EQ(::ftruncate(fd, 3), 0);
  ASSERT_EQ(::ftruncate(fd, 6), 0);
  struct stat st;
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 6);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  ::close(fd);
  EXPECT_EQ(Slurp(m / "f"), std::string("hel\0\0\0", 6));
  // Large file across chunk boundaries, then a random write in the middle.
  std::string big(9 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + (i * 7919) % 26);
  Spit(m / "big", big);
  RunResult r = Control("commit", *a);
  ASSERT_EQ(r.exit_code, 0) << Describe(r) << a->Log();
  fd = ::open((m / "big").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, "XYZ", 3, (4 << 20) + 5), 3);
  ::close(fd);
  big.replace((4 << 20) + 5, 3, "XYZ");
  EXPECT_EQ(Slurp(m / "big"), big);
  // O_APPEND.
  fd = ::open((m / "f").c_str(), O_WRONLY | O_APPEND);
  ASSERT_EQ(::write(fd, "!", 1), 1);
  ::close(fd);
  EXPECT_EQ(Slurp(m / "f"), std::string("hel\0\0\0!", 7));
  // rename over a file, over an empty directory, onto a non-empty one.
  Spit(m / "g", "g");
  ASSERT_EQ(::rename((m / "g").c_str(), (m / "f").c_str()), 0);
  EXPECT_EQ(Slurp(m / "f"), "g");
  EXPECT_FALSE(fs::exists(m / "g"));
  ASSERT_EQ(::mkdir((m / "d1").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((m / "d2").c_str(), 0755), 0);
  Spit(m / "d1/inner", "inner");
  ASSERT_EQ(::rename((m / "d1").c_str(), (m / "d2").c_str()), 0);
  EXPECT_EQ(Slurp(m / "d2/inner"), "inner");
  ASSERT_EQ(::mkdir((m / "d3").c_str(), 0755), 0);
  Spit(m / "d3/x", "x");
  ASSERT_EQ(::mkdir((m / "d4").c_str(), 0755), 0);
  EXPECT_EQ(Errno(::rename((m / "d4").c_str(), (m / "d3").c_str())), ENOTEMPTY);
  EXPECT_EQ(Errno(::rename((m / "f").c_str(), (m / "d4").c_str())), EISDIR);
  EXPECT_EQ(Errno(::rename((m / "d4").c_str(), (m / "f").c_str())), ENOTDIR);
  EXPECT_EQ(Errno(::rename((m / "d3").c_str(), (m / "d3/x/sub").c_str())), ENOTDIR);
  EXPECT_EQ(Errno(::rename((m / "missing").c_str(), (m / "y").c_str())), ENOENT);
  // mkdir/rmdir.
  EXPECT_EQ(Errno(::mkdir((m / "d3").c_str(), 0755)), EEXIST);
  EXPECT_EQ(Errno(::rmdir((m / "d3").c_str())), ENOTEMPTY);
  EXPECT_EQ(Errno(::rmdir((m / "f").c_str())), ENOTDIR);
  EXPECT_EQ(Errno(::unlink((m / "d3").c_str())), EISDIR);
  EXPECT_EQ(Errno(::rmdir((m / "d4").c_str())), 0);
  EXPECT_EQ(Errno(::mkdir((m / "nope/deeper").c_str(), 0755)), ENOENT);
  // unlink an open file: still readable and writable through the fd.
  Spit(m / "doomed", "still here");
  fd = ::open((m / "doomed").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::unlink((m / "doomed").c_str()), 0);
  EXPECT_FALSE(fs::exists(m / "doomed"));
  ASSERT_EQ(::pread(fd, buf, sizeof buf, 0), 10);
  EXPECT_EQ(std::string(buf, 10), "still here");
  EXPECT_EQ(::pwrite(fd, "S", 1, 0), 1);
  ::close(fd);
  // symlink/readlink.
  ASSERT_EQ(::symlink("d2/inner", (m / "ln").c_str()), 0);
  char target[64] = {};
  ASSERT_EQ(::readlink((m / "ln").c_str(), target, sizeof target), 8);
  EXPECT_EQ(std::string(target), "d2/inner");
  EXPECT_EQ(Slurp(m / "ln"), "inner");
  // chmod, utimens.
  ASSERT_EQ(::chmod((m / "f").c_str(), 0600), 0);
  struct timespec times[2] = {{1000, 0}, {1234567890, 123456789}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (m / "f").c_str(), times, 0), 0);
  ASSERT_EQ(::stat((m / "f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_mtim.tv_sec, 1234567890);
  // readdir.
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(m)) names.insert(e.path().filename().string());
  EXPECT_EQ(names, (std::set<std::string>{"big", "d2", "d3", "f", "ln"}));
  // Errors on lookups.
  EXPECT_EQ(Errno(::open((m / "missing").c_str(), O_RDONLY)), ENOENT);
  EXPECT_EQ(Errno(::open((m / "f/child").c_str(), O_RDONLY)), ENOTDIR);
  // Everything survives commit + a fresh mount.
  r = Control("commit", *a);
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  ASSERT_EQ(a->Unmount(), 0) << a->Log();
  MOUNT_OR_RETURN(b, vol);
  const fs::path n = b->path();
  EXPECT_EQ(Slurp(n / "f"), "g");
  EXPECT_EQ(Slurp(n / "d2/inner"), "inner");
  EXPECT_EQ(Slurp(n / "big"), big);
  EXPECT_FALSE(fs::exists(n / "doomed"));
  ASSERT_EQ(::readlink((n / "ln").c_str(), target, sizeof target), 8);
  ASSERT_EQ(::stat((n / "f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_mtim.tv_sec, 1234567890);
  EXPECT_FALSE(fs::exists(n / "d4"));
  // Copy-on-write of a base file: a small write in the second chunk, read
  // back through the mount and, after a commit, from the head.
  fd = ::open((n / "big").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, "cow", 3, (8 << 20) + 100), 3);
  ::close(fd);
  big.replace((8 << 20) + 100, 3, "cow");
  EXPECT_EQ(Slurp(n / "big"), big);
  ASSERT_EQ(Control("commit", *b).exit_code, 0);
  EXPECT_EQ(HeadFile(vol, "big"), big);
}

// Two processes open(O_CREAT) the same new name at once: both must get the
// file (only O_EXCL may fail with EEXIST).
TEST_F(MountTest, ConcurrentCreateOfOneNameBothSucceed) {
  std::string vol = NewVolume();
  MOUNT_OR_RETURN(a, vol);
  std::atomic<int> eexist{0}, other{0};
  for (int i = 0; i < 200; ++i) {
    std::string path = (*a / absl::StrCat("race-", i)).string();
    std::atomic<int> ready{0};
    auto opener = [&] {
      ready.fetch_add(1);
      while (ready.load() < 2) {
      }
      int fd = ::open(path.c_str(), O_CREAT | O_WRONLY, 0644);
      if (fd >= 0) {
        ::close(fd);
      } else if (errno == EEXIST) {
        eexist.fetch_add(1);
      } else {
        other.fetch_add(1);
      }
    };
    std::thread t1(opener), t2(opener);
    t1.join();
    t2.join();
  }
  EXPECT_EQ(eexist.load(), 0);
  EXPECT_EQ(other.load(), 0);
  // O_EXCL still fails on an existing name, O_TRUNC of an existing name
  // through create truncates.
  EXPECT_EQ(Errno(::open((*a / "race-0").c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644)), EEXIST);
  ASSERT_EQ(::mkdir((*a / "dir").c_str(), 0755), 0);
  EXPECT_EQ(Errno(::open((*a / "dir").c_str(), O_CREAT | O_WRONLY, 0644)), EISDIR);
}

// readdirplus must not hand the kernel attributes older than what it
// already knows: a listing taken before a file grew must not shrink it back.
TEST_F(MountTest, ReaddirDoesNotRollBackAttributes) {
  std::string vol = NewVolume();
  MOUNT_OR_RETURN(a, vol);
  for (int i = 0; i < 300; ++i) Spit(*a / absl::StrCat("f", 1000 + i), "x");
  DIR* d = ::opendir(a->path().c_str());
  ASSERT_NE(d, nullptr);
  ASSERT_NE(::readdir(d), nullptr);  // the first batch only
  // Grow the last file (which comes in a later batch) and look at it.
  {
    std::ofstream out(*a / "f1299", std::ios::app);
    out << std::string(100, 'y');
  }
  struct stat st;
  ASSERT_EQ(::stat((*a / "f1299").c_str(), &st), 0);
  ASSERT_EQ(st.st_size, 101);
  // A lookup in the directory makes the kernel use readdirplus (with
  // attributes) for the following batches too.
  EXPECT_EQ(Errno(::stat((*a / "no-such-name").c_str(), &st)), ENOENT);
  int n = 1;
  while (::readdir(d) != nullptr) ++n;
  ::closedir(d);
  EXPECT_EQ(n, 302);
  ASSERT_EQ(::stat((*a / "f1299").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 101);
  EXPECT_EQ(Slurp(*a / "f1299"), "x" + std::string(100, 'y'));
}

// seekdir/telldir over a large directory stay stable while files are
// created concurrently: every original name is seen exactly once.
TEST_F(MountTest, ReaddirOffsetsStableDuringCreates) {
  std::string vol = NewVolume();
  MOUNT_OR_RETURN(a, vol);
  for (int i = 0; i < 500; ++i) Spit(*a / absl::StrCat("e", i), "");
  ASSERT_EQ(Control("commit", *a).exit_code, 0);
  std::atomic<bool> stop{false};
  std::thread creator([&] {
    for (int i = 0; !stop.load() && i < 2000; ++i) Spit(*a / absl::StrCat("new", i), "");
  });
  DIR* d = ::opendir(a->path().c_str());
  ASSERT_NE(d, nullptr);
  std::multiset<std::string> seen;
  long mid = -1;
  std::vector<std::string> after_mid;
  int count = 0;
  while (dirent* e = ::readdir(d)) {
    if (++count == 250) mid = ::telldir(d);
    if (mid >= 0 && count > 250) after_mid.push_back(e->d_name);
    seen.insert(e->d_name);
  }
  ASSERT_GE(mid, 0);
  ::seekdir(d, mid);
  std::vector<std::string> again;
  while (dirent* e = ::readdir(d)) again.push_back(e->d_name);
  ::closedir(d);
  stop.store(true);
  creator.join();
  for (int i = 0; i < 500; ++i) EXPECT_EQ(seen.count(absl::StrCat("e", i)), 1u) << i;
  for (const auto& name : seen) EXPECT_EQ(seen.count(name), 1u) << name;
  EXPECT_EQ(again, after_mid);
}

// rewinddir shows what was created or removed since opendir (POSIX:
// only entries changed after the most recent opendir/rewinddir may be
// missed).
TEST_F(MountTest, RewinddirSeesNewEntries) {
  std::string vol = NewVolume();
  MOUNT_OR_RETURN(a, vol);
  Spit(*a / "old", "");
  Spit(*a / "doomed", "");
  DIR* d = ::opendir(a->path().c_str());
  ASSERT_NE(d, nullptr);
  auto names = [&] {
    std::set<std::string> out;
    while (dirent* e = ::readdir(d)) out.insert(e->d_name);
    return out;
  };
  EXPECT_EQ(names(), (std::set<std::string>{".", "..", "old", "doomed"}));
  Spit(*a / "new", "");
  ASSERT_EQ(::unlink((*a / "doomed").c_str()), 0);
  ::rewinddir(d);
  EXPECT_EQ(names(), (std::set<std::string>{".", "..", "old", "new"}));
  ::closedir(d);
}

// Truncate and writes past EOF on a committed (chunked, base) file: the
// gaps read as zeros, and base bytes cut off by a truncate never come back.
TEST_F(MountTest, TruncateAndHolesOnBaseFile) {
  std::string vol = NewVolume();
  MOUNT_OR_RETURN(a, vol);
  std::string content(5 << 20, '\0');
  for (size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>('A' + i % 23);
  Spit(*a / "b", content);
  ASSERT_EQ(Control("commit", *a).exit_code, 0);
  ASSERT_EQ(a->Unmount(), 0);
  MOUNT_OR_RETURN(m, vol);
  ASSERT_EQ(::truncate((*m / "b").c_str(), 3 << 20), 0);
  ASSERT_EQ(::truncate((*m / "b").c_str(), 6 << 20), 0);
  int fd = ::open((*m / "b").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, "end", 3, 9 << 20), 3);
  ::close(fd);
  std::string want = content.substr(0, 3 << 20);
  want.resize(9 << 20, '\0');
  want += "end";
  EXPECT_EQ(Slurp(*m / "b"), want);
  // Large sparse offset: size and zeros, without materialising anything.
  fd = ::open((*m / "sparse").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, "z", 1, int64_t{1} << 36), 1);
  struct stat st;
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, (int64_t{1} << 36) + 1);
  char buf[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  ASSERT_EQ(::pread(fd, buf, 8, int64_t{1} << 35), 8);
  EXPECT_EQ(std::string(buf, 8), std::string(8, '\0'));
  ASSERT_EQ(::ftruncate(fd, 1), 0);
  ::close(fd);
  // O_APPEND to a base file.
  Spit(*m / "log", "one\n");
  ASSERT_EQ(Control("commit", *m).exit_code, 0);
  fd = ::open((*m / "log").c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, "two\n", 4, 0), 4);  // O_APPEND ignores the offset
  ::close(fd);
  EXPECT_EQ(Slurp(*m / "log"), "one\ntwo\n");
  ASSERT_EQ(Control("commit", *m).exit_code, 0);
  EXPECT_EQ(HeadFile(vol, "b"), want);
  EXPECT_EQ(HeadFile(vol, "log"), "one\ntwo\n");
  EXPECT_EQ(HeadFile(vol, "sparse"), std::string(1, '\0'));
}

// Unlinked open files are never resurrected by a commit; renamed open files
// land at their new path with what was written after the rename.
TEST_F(MountTest, OpenFilesAcrossUnlinkRenameAndCommit) {
  std::string vol = NewVolume();
  MOUNT_OR_RETURN(a, vol);
  Spit(*a / "committed", "old");
  ASSERT_EQ(Control("commit", *a).exit_code, 0);
  int fd1 = ::open((*a / "committed").c_str(), O_RDWR);
  ASSERT_GE(fd1, 0);
  int fd2 = ::open((*a / "fresh").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd2, 0);
  ASSERT_EQ(::write(fd2, "fresh", 5), 5);
  ASSERT_EQ(::unlink((*a / "committed").c_str()), 0);
  ASSERT_EQ(::unlink((*a / "fresh").c_str()), 0);
  ASSERT_EQ(::pwrite(fd1, "new", 3, 0), 3);
  ASSERT_EQ(::pwrite(fd2, "again", 5, 5), 5);
  struct stat st;
  ASSERT_EQ(::fstat(fd1, &st), 0);
  EXPECT_EQ(st.st_nlink, 0u);
  ASSERT_EQ(Control("commit", *a).exit_code, 0);
  ASSERT_EQ(::pwrite(fd1, "more", 4, 3), 4);
  char buf[16] = {};
  ASSERT_EQ(::pread(fd2, buf, sizeof buf, 0), 10);
  EXPECT_EQ(std::string(buf, 10), "freshagain");
  ::close(fd1);
  ::close(fd2);
  ASSERT_EQ(Control("commit", *a).exit_code, 0);
  EXPECT_FALSE(HeadFile(vol, "committed").has_value());
  EXPECT_FALSE(HeadFile(vol, "fresh").has_value());
  EXPECT_FALSE(fs::exists(*a / "committed"));

  Spit(*a / "r1", "r1");
  ASSERT_EQ(Control("commit", *a).exit_code, 0);
  int fd = ::open((*a / "r1").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::rename((*a / "r1").c_str(), (*a / "r2").c_str()), 0);
  ASSERT_EQ(::pwrite(fd, "R2", 2, 0), 2);
  ::close(fd);
  fd = ::open((*a / "p1").c_str(), O_CREAT | O_RDWR, 0644);  // never committed
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::rename((*a / "p1").c_str(), (*a / "p2").c_str()), 0);
  ASSERT_EQ(::write(fd, "p2", 2), 2);
  ::close(fd);
  ASSERT_EQ(Control("commit", *a).exit_code, 0);
  EXPECT_FALSE(HeadFile(vol, "r1").has_value());
  EXPECT_EQ(HeadFile(vol, "r2"), "R2");
  EXPECT_FALSE(HeadFile(vol, "p1").has_value());
  EXPECT_EQ(HeadFile(vol, "p2"), "p2");
}

// A renamed directory with pending changes inside commits them under the
// new name; a reload keeps the pending rename on top.
TEST_F(MountTest, RenameOfDirectoryWithPendingChanges) {
  std::string vol = NewVolume();
  MOUNT_OR_RETURN(a, vol);
  ASSERT_EQ(::mkdir((*a / "d").c_str(), 0750), 0);
  Spit(*a / "d/f", "f1");
  ASSERT_EQ(::mkdir((*a / "d/sub").c_str(), 0755), 0);
  Spit(*a / "d/sub/s", "s1");
  ASSERT_EQ(Control("commit", *a).exit_code, 0);
  Spit(*a / "d/f", "f2");
  Spit(*a / "d/g", "g");
  Spit(*a / "d/sub/s", "s2");
  ASSERT_EQ(::mkdir((*a / "x").c_str(), 0755), 0);
  ASSERT_EQ(::rename((*a / "d").c_str(), (*a / "x/e").c_str()), 0);
  Spit(*a / "x/e/h", "h");
  ASSERT_EQ(Control("reload", *a).exit_code, 0);
  EXPECT_FALSE(fs::exists(*a / "d"));
  EXPECT_EQ(Slurp(*a / "x/e/f"), "f2");
  EXPECT_EQ(Slurp(*a / "x/e/sub/s"), "s2");
  ASSERT_EQ(Control("commit", *a).exit_code, 0);
  EXPECT_FALSE(HeadFile(vol, "d/f").has_value());
  EXPECT_EQ(HeadFile(vol, "x/e/f"), "f2");
  EXPECT_EQ(HeadFile(vol, "x/e/g"), "g");
  EXPECT_EQ(HeadFile(vol, "x/e/h"), "h");
  EXPECT_EQ(HeadFile(vol, "x/e/sub/s"), "s2");
  ASSERT_EQ(a->Unmount(), 0);
  MOUNT_OR_RETURN(b, vol);
  struct stat st;
  ASSERT_EQ(::stat((*b / "x/e").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  EXPECT_EQ(Slurp(*b / "x/e/sub/s"), "s2");
}

// Namespace errnos not covered by PosixSuite, and metadata of directories
// surviving commit + remount.
TEST_F(MountTest, MoreErrnosAndDirectoryMetadata) {
  std::string vol = NewVolume();
  MOUNT_OR_RETURN(a, vol);
  Spit(*a / "file", "f");
  ASSERT_EQ(::mkdir((*a / "dir").c_str(), 0755), 0);
  Spit(*a / "dir/x", "x");
  EXPECT_EQ(Errno(::mkdir((*a / "file").c_str(), 0755)), EEXIST);
  EXPECT_EQ(Errno(::symlink("t", (*a / "file").c_str())), EEXIST);
  EXPECT_EQ(Errno(::symlink("t", (*a / "dir").c_str())), EEXIST);
  EXPECT_EQ(Errno(::link((*a / "file").c_str(), (*a / "dir").c_str())), EEXIST);
  EXPECT_EQ(Errno(::link((*a / "dir").c_str(), (*a / "dir2").c_str())), EPERM);
  EXPECT_EQ(Errno(::rmdir((*a / "dir/x/y").c_str())), ENOTDIR);
  EXPECT_EQ(Errno(::unlink((*a / "missing").c_str())), ENOENT);
  EXPECT_EQ(Errno(::rmdir((*a / "missing").c_str())), ENOENT);
  EXPECT_EQ(Errno(::rename((*a / "dir").c_str(), (*a / "dir/inside").c_str())), EINVAL);
  EXPECT_EQ(Errno(::renameat2(AT_FDCWD, (*a / "file").c_str(), AT_FDCWD,
                              (*a / "dir/x").c_str(), RENAME_NOREPLACE)),
            EEXIST);
  // Truncate of a file through O_TRUNC.
  int fd = ::open((*a / "file").c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(fd, 0);
  ::close(fd);
  EXPECT_EQ(Slurp(*a / "file"), "");
  Spit(*a / "file", "long content");
  Spit(*a / "file", "short");  // O_TRUNC again, over pending content
  EXPECT_EQ(Slurp(*a / "file"), "short");
  // (dir/x in its own commit: see DirectoryMtimeSetInSameCommitAsItsEntries)
  ASSERT_EQ(Control("commit", *a).exit_code, 0);
  Spit(*a / "file", "s");  // O_TRUNC of a committed (base) file
  EXPECT_EQ(Slurp(*a / "file"), "s");
  ASSERT_EQ(::chmod((*a / "dir").c_str(), 0700), 0);
  struct timespec times[2] = {{0, UTIME_OMIT}, {1500000000, 42}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (*a / "dir").c_str(), times, 0), 0);
  ASSERT_EQ(::symlink("dir/x", (*a / "ln").c_str()), 0);
  ASSERT_EQ(Control("commit", *a).exit_code, 0);
  ASSERT_EQ(a->Unmount(), 0);
  MOUNT_OR_RETURN(b, vol);
  struct stat st;
  ASSERT_EQ(::stat((*b / "dir").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(st.st_mtim.tv_sec, 1500000000);
  EXPECT_EQ(Slurp(*b / "ln"), "x");
  ASSERT_EQ(::lstat((*b / "ln").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(Slurp(*b / "file"), "s");
  // rmdir / rename-over of a base directory that was never listed.
  EXPECT_EQ(Errno(::rmdir((*b / "dir").c_str())), ENOTEMPTY);
  ASSERT_EQ(::mkdir((*b / "empty").c_str(), 0755), 0);
  EXPECT_EQ(Errno(::rename((*b / "empty").c_str(), (*b / "dir").c_str())), ENOTEMPTY);
}

// Hard links on v2: nlink follows unlinks; both names survive a commit.
TEST_F(MountTest, HardLinkCountsAndUnlink) {
  std::string vol = NewVolume(2);
  MOUNT_OR_RETURN(a, vol);
  Spit(*a / "f", "one");
  ASSERT_EQ(::link((*a / "f").c_str(), (*a / "g").c_str()), 0);
  ASSERT_EQ(::mkdir((*a / "d").c_str(), 0755), 0);
  ASSERT_EQ(::link((*a / "f").c_str(), (*a / "d/h").c_str()), 0);
  struct stat st;
  ASSERT_EQ(::stat((*a / "g").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 3u);
  ASSERT_EQ(::unlink((*a / "f").c_str()), 0);
  ASSERT_EQ(::stat((*a / "g").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 2u);
  Spit(*a / "d/h", "two");
  EXPECT_EQ(Slurp(*a / "g"), "two");
  ASSERT_EQ(Control("commit", *a).exit_code, 0);
  EXPECT_FALSE(HeadFile(vol, "f").has_value());
  EXPECT_EQ(HeadFile(vol, "g"), "two");
  EXPECT_EQ(HeadFile(vol, "d/h"), "two");
}

// Writing then closing many files does not keep staging descriptors once
// committed, and the staging directory is gone after unmount.
TEST_F(MountTest, NoDescriptorOrStagingLeaks) {
  std::string vol = NewVolume();
  MOUNT_OR_RETURN(a, vol);
  auto fds = [&] {
    int n = 0;
    for (const auto& e : fs::directory_iterator(absl::StrCat("/proc/", a->child().pid(), "/fd"))) {
      (void)e;
      ++n;
    }
    return n;
  };
  int before = fds();
  for (int i = 0; i < 60; ++i) Spit(*a / absl::StrCat("big", i), std::string(200 << 10, 'b'));
  EXPECT_GE(fds(), before + 50);
  ASSERT_EQ(Control("commit", *a).exit_code, 0);
  EXPECT_LE(fds(), before + 5);
  fs::path volume_staging = dir_->path() / "cache/staging" / VolumeId(*a);
  auto staging_dirs = [&] {
    int n = 0;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(volume_staging, ec)) {
      (void)e;
      ++n;
    }
    return n;
  };
  EXPECT_EQ(staging_dirs(), 1);
  ASSERT_EQ(a->Unmount(), 0);
  EXPECT_EQ(staging_dirs(), 0);
}

}  // namespace
}  // namespace cairn::e2e
