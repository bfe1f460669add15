// Committing from a mount (DESIGN.md C3, C6): explicit, background,
// on sync, unmount and SIGTERM; concurrent mounts; and commit errors that
// must not lose a write.
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

// The seed's example: B writes and commits; A sees it only after reloading.
TEST_F(MountTest, CommitThenReloadMakesChangesVisible) {
  std::string vol = NewVolume();
  MOUNT_OR_RETURN(a, vol);
  MOUNT_OR_RETURN(b, vol);
  Spit(*b / "hello.txt", "hello from B\n");
  RunResult r = Control("commit", *b);
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(HeadFile(vol, "hello.txt"), "hello from B\n");
  EXPECT_FALSE(fs::exists(*a / "hello.txt"));
  r = Control("reload", *a);
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(Slurp(*a / "hello.txt"), "hello from B\n");
  r = Control("status", *a);
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("\"dirty\":false"));
  // Without --json: for a person.
  r = Cli({"volume", "status", a->path().string()});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("Volume:      ", vol, " (vo-")));
  EXPECT_THAT(r.out, HasSubstr("Showing:     commit #1\n"));
  EXPECT_THAT(r.out, HasSubstr("Uncommitted: nothing\n"));
  EXPECT_THAT(r.out, HasSubstr("Reloads:     1;"));
  r = Cli({"volume", "status", b->path().string()});
  EXPECT_THAT(r.out, HasSubstr("Commits:     1 made, 0 failed; last #1 at "));
  EXPECT_EQ(a->Unmount(), 0) << a->Log();
  EXPECT_EQ(b->Unmount(), 0) << b->Log();
}

TEST_F(MountTest, TwoMountsDistinctFilesBothSurvive) {
  std::string vol = NewVolume();
  MOUNT_OR_RETURN(a, vol);
  MOUNT_OR_RETURN(b, vol);
  Spit(*a / "a.txt", "A");
  Spit(*b / "b.txt", "B");
  ASSERT_EQ(Control("commit", *a).exit_code, 0);
  ASSERT_EQ(Control("commit", *b).exit_code, 0);
  EXPECT_EQ(HeadFile(vol, "a.txt"), "A");
  EXPECT_EQ(HeadFile(vol, "b.txt"), "B");
  // A keeps its view until it reloads; then it has both, its own included.
  EXPECT_FALSE(fs::exists(*a / "b.txt"));
  ASSERT_EQ(Control("reload", *a).exit_code, 0);
  EXPECT_EQ(Slurp(*a / "a.txt"), "A");
  EXPECT_EQ(Slurp(*a / "b.txt"), "B");
}

TEST_F(MountTest, TwoMountsSameFileLastCommitWins) {
  std::string vol = NewVolume();
  MOUNT_OR_RETURN(a, vol);
  MOUNT_OR_RETURN(b, vol);
  Spit(*a / "f.txt", "first");
  Spit(*b / "f.txt", "second, longer");
  ASSERT_EQ(Control("commit", *a).exit_code, 0);
  ASSERT_EQ(Control("commit", *b).exit_code, 0);
  EXPECT_EQ(HeadFile(vol, "f.txt"), "second, longer");
  // A still reads its own version until it reloads.
  EXPECT_EQ(Slurp(*a / "f.txt"), "first");
  ASSERT_EQ(Control("reload", *a).exit_code, 0);
  EXPECT_EQ(Slurp(*a / "f.txt"), "second, longer");
}

TEST_F(MountTest, BackgroundCommitWithinInterval) {
  std::string vol = NewVolume();
  MOUNT_OR_RETURN(a, vol, {"--commit-interval", "1"});
  auto start = std::chrono::steady_clock::now();
  Spit(*a / "bg.txt", "background");
  std::optional<std::string> got;
  while (std::chrono::steady_clock::now() - start < 6s) {
    got = HeadFile(vol, "bg.txt");
    if (got) break;
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_EQ(got, "background");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 4s);
  // A new mount sees it too.
  MOUNT_OR_RETURN(b, vol);
  EXPECT_EQ(Slurp(*b / "bg.txt"), "background");
}

// Commits running while files are written: nothing written is lost, and the
// final state is what was written last.
TEST_F(MountTest, CommitsDoNotLoseConcurrentWrites) {
  std::string vol = NewVolume();
  MOUNT_OR_RETURN(a, vol, {"--commit-interval", "0.2"});
  std::atomic<bool> stop{false};
  std::thread committer([&] {
    while (!stop.load()) {
      ::setxattr(a->path().c_str(), "user.cairn.commit", "1", 1, 0);
      std::this_thread::sleep_for(5ms);
    }
  });
  std::string log;
  for (int i = 0; i < 300; ++i) {
    Spit(*a / absl::StrCat("f", i), absl::StrCat("content ", i));
    log += absl::StrCat(i, "\n");
    std::ofstream out(*a / "log", std::ios::app);
    out << i << "\n";
  }
  stop.store(true);
  committer.join();
  ASSERT_EQ(a->Unmount(), 0) << a->Log();
  MOUNT_OR_RETURN(b, vol);
  for (int i = 0; i < 300; ++i) {
    ASSERT_EQ(Slurp(*b / absl::StrCat("f", i)), absl::StrCat("content ", i)) << i;
  }
  EXPECT_EQ(Slurp(*b / "log"), log);
}

TEST_F(MountTest, SyncOfMountPointCommits) {
  std::string vol = NewVolume();
  MOUNT_OR_RETURN(a, vol);
  Spit(*a / "synced.txt", "via sync");
  RunResult r = RunProcess({"/usr/bin/sync", a->path().string()});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(HeadFile(vol, "synced.txt"), "via sync");
}

TEST_F(MountTest, FinalCommitOnUnmount) {
  std::string vol = NewVolume();
  MOUNT_OR_RETURN(a, vol);
  Spit(*a / "final.txt", "on unmount");
  EXPECT_FALSE(HeadFile(vol, "final.txt").has_value());
  EXPECT_EQ(a->Unmount(), 0) << a->Log();
  EXPECT_EQ(HeadFile(vol, "final.txt"), "on unmount");
}

TEST_F(MountTest, FinalCommitOnSigterm) {
  std::string vol = NewVolume();
  MOUNT_OR_RETURN(a, vol);
  Spit(*a / "term.txt", "on sigterm");
  a->child().Signal(SIGTERM);
  EXPECT_EQ(a->child().Wait(60s), 0) << a->Log();
  EXPECT_FALSE(IsMountedAt(a->path()));
  EXPECT_EQ(HeadFile(vol, "term.txt"), "on sigterm");
}

// SIGTERM while a process holds a file open (and idle): the mounter still
// makes its final commit and exits promptly.
TEST_F(MountTest, SigtermWithOpenFileCommitsAndExits) {
  std::string vol = NewVolume();
  MOUNT_OR_RETURN(a, vol);
  int fd = ::open((*a / "held").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "held open", 9), 9);
  auto start = std::chrono::steady_clock::now();
  a->child().Signal(SIGTERM);
  int rc = a->child().Wait(20s);
  auto took = std::chrono::steady_clock::now() - start;
  ::close(fd);
  EXPECT_EQ(rc, 0) << a->Log();
  EXPECT_LT(took, 15s);
  EXPECT_EQ(HeadFile(vol, "held"), "held open");
  EXPECT_FALSE(IsMountedAt(a->path()));
}

// A directory whose names change in a commit gets the commit time as mtime,
// unless the same commit sets its mtime explicitly afterwards (MKDIR merge),
// as `tar x`, `cp -a` and `rsync -a` do within one commit interval.
TEST_F(MountTest, DirectoryMtimeSetInSameCommitAsItsEntries) {
  std::string vol = NewVolume();
  MOUNT_OR_RETURN(a, vol);
  ASSERT_EQ(::mkdir((*a / "dir").c_str(), 0755), 0);
  Spit(*a / "dir/x", "x");
  struct timespec times[2] = {{0, UTIME_OMIT}, {1500000000, 42}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (*a / "dir").c_str(), times, 0), 0);
  ASSERT_EQ(Control("commit", *a).exit_code, 0);
  ASSERT_EQ(a->Unmount(), 0);
  MOUNT_OR_RETURN(b, vol);
  struct stat st;
  ASSERT_EQ(::stat((*b / "dir").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, 1500000000);
}

// Nested directories whose path from the volume root would exceed what the
// control plane accepts are refused at the syscall, and a change undone
// before it was committed is not sent at all, so nothing holds the other
// changes hostage.
TEST_F(MountTest, OverlongNestedPathsDoNotBlockOtherChanges) {
  std::string vol = NewVolume();
  fs::path mp;
  {
    MOUNT_OR_RETURN(a, vol);
    mp = a->path();
    ASSERT_EQ(::mkdir((*a / "sub").c_str(), 0755), 0);
    // Short relative paths from inside, as a shell's `cd` would.
    const std::string name(255, 'n');
    std::vector<int> fds = {::open((*a / "sub").c_str(), O_RDONLY | O_DIRECTORY)};
    ASSERT_GE(fds.back(), 0);
    int refused = 0;
    for (int depth = 1; depth <= 16; ++depth) {
      if (::mkdirat(fds.back(), name.c_str(), 0755) != 0) {
        // "sub" + 16 × ("/" + 255 bytes) is 4099 bytes: over 4096.
        EXPECT_EQ(errno, ENAMETOOLONG) << depth;
        EXPECT_EQ(depth, 16);
        ++refused;
        break;
      }
      int fd = ::openat(fds.back(), name.c_str(), O_RDONLY | O_DIRECTORY);
      ASSERT_GE(fd, 0) << depth << " " << std::strerror(errno);
      fds.push_back(fd);
    }
    EXPECT_EQ(refused, 1);
    // Remove them all, deepest first.
    while (fds.size() > 1) {
      ::close(fds.back());
      fds.pop_back();
      ASSERT_EQ(::unlinkat(fds.back(), name.c_str(), AT_REMOVEDIR), 0) << std::strerror(errno);
    }
    ::close(fds.back());
    Spit(*a / "keep.txt", "kept");
    RunResult r = Control("commit", *a);
    EXPECT_EQ(r.exit_code, 0) << Describe(r) << a->Log();
    ASSERT_EQ(a->Unmount(), 0) << a->Log();
  }
  EXPECT_EQ(HeadFile(vol, "keep.txt"), "kept");
  MOUNT_OR_RETURN(b, vol);
  EXPECT_TRUE(fs::is_directory(*b / "sub"));
  EXPECT_TRUE(fs::is_empty(*b / "sub"));
  EXPECT_EQ(Slurp(*b / "keep.txt"), "kept");
}

// A rename that would put an existing path below it over the limit is
// refused too.
TEST_F(MountTest, RenameThatMakesAPathTooLongIsRefused) {
  std::string vol = NewVolume();
  MOUNT_OR_RETURN(a, vol);
  const std::string name(255, 'r');
  fs::path deep = a->path();
  for (int i = 0; i < 8; ++i) {
    deep /= name;
    ASSERT_EQ(::mkdir(deep.c_str(), 0755), 0) << i;
  }
  fs::path other = a->path() / "o";
  ASSERT_EQ(::mkdir(other.c_str(), 0755), 0);
  fs::path cur = other;
  for (int i = 0; i < 8; ++i) {
    cur /= name;
    ASSERT_EQ(::mkdir(cur.c_str(), 0755), 0) << i;
  }
  // o/<8 levels> (2049 bytes) moved below <8 levels> (2047 bytes): 4097.
  EXPECT_EQ(Errno(::rename(other.c_str(), (deep / "o").c_str())), ENAMETOOLONG);
  EXPECT_TRUE(fs::is_directory(other));
  RunResult r = Control("commit", *a);
  EXPECT_EQ(r.exit_code, 0) << Describe(r) << a->Log();
}

// The same for a directory this mount has not listed yet: what lies below
// it in the base counts, so the rename is refused at the syscall instead of
// being accepted and then rejected by every commit.
TEST_F(MountTest, RenameOfAnUnlistedDeepDirectoryIsRefusedWhenTooLong) {
  std::string vol = NewVolume();
  const std::string name(255, 'u');
  // `top` and 8 levels of 255-byte names below it; the deepest.
  auto chain = [&](fs::path top) {
    EXPECT_EQ(::mkdir(top.c_str(), 0755), 0);
    for (int i = 0; i < 8; ++i) {
      top /= name;
      EXPECT_EQ(::mkdir(top.c_str(), 0755), 0) << i;
    }
    return top;
  };
  {
    MOUNT_OR_RETURN(a, vol);
    chain(a->path() / "a");
    ASSERT_EQ(Control("commit", *a).exit_code, 0) << a->Log();
    ASSERT_EQ(a->Unmount(), 0) << a->Log();
  }
  MOUNT_OR_RETURN(b, vol);
  fs::path other = chain(b->path() / "o");
  // o/<8 levels>/a is 2051 bytes; a/<8 levels> below it, 2048 more: 4099.
  EXPECT_EQ(Errno(::rename((b->path() / "a").c_str(), (other / "a").c_str())), ENAMETOOLONG);
  EXPECT_TRUE(fs::is_directory(b->path() / "a"));
  // Shorter, it moves, and the commit takes it.
  fs::path shallow = b->path() / "o" / name / "a";
  ASSERT_EQ(::rename((b->path() / "a").c_str(), shallow.c_str()), 0) << std::strerror(errno);
  RunResult r = Control("commit", *b);
  EXPECT_EQ(r.exit_code, 0) << Describe(r) << b->Log();
  EXPECT_TRUE(fs::is_directory(shallow / name));
}

// A change that can never succeed (another mount used up the inode limit)
// is isolated: the others are committed, the stuck path is reported by the
// status and by the next commit request, and later changes keep flowing.
TEST_F(MountTest, ChangeThatCanNeverSucceedIsIsolated) {
  std::string vol = NewVolume(2, {"--max-inodes", "4"});
  MOUNT_OR_RETURN(a, vol);
  MOUNT_OR_RETURN(b, vol);
  Spit(*a / "a1", "a");
  Spit(*a / "a2", "a");
  ASSERT_EQ(Control("commit", *a).exit_code, 0) << a->Log();
  // b still counts from its own base (0 inodes): all three fit locally.
  Spit(*b / "b1", "b1");
  Spit(*b / "b2", "b2");
  Spit(*b / "b3", "b3");
  RunResult r = Control("commit", *b);
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("can never be committed"));
  EXPECT_THAT(r.err, HasSubstr("b3"));
  EXPECT_EQ(HeadFile(vol, "b1"), "b1");
  EXPECT_EQ(HeadFile(vol, "b2"), "b2");
  EXPECT_FALSE(HeadFile(vol, "b3").has_value());
  RunResult st = Control("status", *b);
  EXPECT_THAT(st.out, HasSubstr("\"stuck\":[{\"path\":\"b3\""));
  EXPECT_THAT(st.out, HasSubstr("\"dirty\":false"));
  // Reported once; later changes are not held back by the stuck one.
  Spit(*b / "b1", "b1 again");
  r = Control("commit", *b);
  EXPECT_EQ(r.exit_code, 0) << Describe(r) << b->Log();
  EXPECT_EQ(HeadFile(vol, "b1"), "b1 again");
  EXPECT_EQ(Slurp(*b / "b3"), "b3");  // still there locally
}

// A control plane that hangs (accepts, never answers) does not hold an
// unmount longer than the final commit's deadline: the changes stay in the
// journal, and the next mount commits them once it answers again.
TEST_F(MountTest, UnmountAgainstAHungControlPlaneEndsAtTheDeadline) {
  cairn::testing::TempDir own;
  std::string vol = "hung-control-plane";
  auto server = OwnServer(own.path() / "data", vol);
  ASSERT_NE(server, nullptr);
  auto a = MountVolume(vol, {"--final-commit-timeout", "2"}, {}, server.get());
  ASSERT_NE(a, nullptr);
  Spit(*a / "pending.txt", "pending");
  server->Signal(SIGSTOP);
  auto start = std::chrono::steady_clock::now();
  int rc = a->Unmount();
  auto took = std::chrono::steady_clock::now() - start;
  server->Signal(SIGCONT);
  EXPECT_EQ(rc, 1) << a->Log();
  EXPECT_LT(took, 10s) << a->Log();
  EXPECT_THAT(a->Log(), HasSubstr("giving up"));
  ExpectFileInNewMountAndHead(*server, vol, "pending.txt", "pending");
}

}  // namespace
}  // namespace cairn::e2e
