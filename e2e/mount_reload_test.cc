// Reloading a mount (DESIGN.md C3): the view switches to the head with the
// mount's own pending changes on top, and never while files are open.
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

// A reload switches everything the kernel had cached — changed content,
// removed files, a file that became a directory — and keeps the mount's own
// uncommitted changes on top.
TEST_F(MountTest, ReloadSwitchesCachedTreeAndKeepsPendingChanges) {
  std::string vol = NewVolume();
  {
    MOUNT_OR_RETURN(w, vol);
    Spit(*w / "gone.txt", "gone");
    Spit(*w / "kind", "a file");
    Spit(*w / "same.txt", "v1");
    ASSERT_EQ(w->Unmount(), 0);
  }
  MOUNT_OR_RETURN(a, vol);
  EXPECT_EQ(Slurp(*a / "gone.txt"), "gone");
  EXPECT_EQ(Slurp(*a / "kind"), "a file");
  EXPECT_EQ(Slurp(*a / "same.txt"), "v1");
  Spit(*a / "mine.txt", "pending");
  {
    MOUNT_OR_RETURN(b, vol);
    ASSERT_EQ(::unlink((*b / "gone.txt").c_str()), 0);
    ASSERT_EQ(::unlink((*b / "kind").c_str()), 0);
    ASSERT_EQ(::mkdir((*b / "kind").c_str(), 0755), 0);
    Spit(*b / "kind/inner", "inside");
    Spit(*b / "same.txt", "v2 from b");
    ASSERT_EQ(b->Unmount(), 0);
  }
  EXPECT_EQ(Slurp(*a / "same.txt"), "v1");  // C3: not before the reload
  RunResult r = Control("reload", *a);
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(Slurp(*a / "same.txt"), "v2 from b");
  EXPECT_EQ(Slurp(*a / "mine.txt"), "pending");
  // Entry invalidations are asynchronous (see docs/mounter.md): allow a moment.
  auto deadline = std::chrono::steady_clock::now() + 2s;
  struct stat st;
  while (std::chrono::steady_clock::now() < deadline &&
         (::stat((*a / "gone.txt").c_str(), &st) == 0 || errno != ENOENT ||
          ::stat((*a / "kind").c_str(), &st) != 0 || !S_ISDIR(st.st_mode))) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(Errno(::stat((*a / "gone.txt").c_str(), &st)), ENOENT);
  ASSERT_EQ(::stat((*a / "kind").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(Slurp(*a / "kind/inner"), "inside");
  r = Control("commit", *a);
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(HeadFile(vol, "mine.txt"), "pending");
  EXPECT_EQ(HeadFile(vol, "same.txt"), "v2 from b");
}

// The kernel caches a snapshot's entries, attributes and pages for long
// (entries and attributes for minutes, pages across opens): a reload must
// leave none of it stale. Content of the same size and a listing that only
// grew are the cases a size check or a timeout would not catch; no polling
// here, since inode invalidations are synchronous with the reload.
TEST_F(MountTest, ReloadLeavesNoStaleKernelCache) {
  std::string vol = NewVolume();
  const std::string v1(64 << 10, '1'), v2(64 << 10, '2');
  {
    MOUNT_OR_RETURN(w, vol);
    Spit(*w / "weights", v1);
    ASSERT_EQ(::mkdir((*w / "dir").c_str(), 0755), 0);
    Spit(*w / "dir/one", "one");
    ASSERT_EQ(w->Unmount(), 0);
  }
  MOUNT_OR_RETURN(a, vol);
  auto listing = [](const fs::path& dir) {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename());
    return names;
  };
  // Into the kernel's caches: pages (kept across opens), attributes, entries.
  ASSERT_EQ(Slurp(*a / "weights"), v1);
  ASSERT_EQ(Slurp(*a / "weights"), v1);
  struct stat before;
  ASSERT_EQ(::stat((*a / "weights").c_str(), &before), 0);
  EXPECT_EQ(listing(*a / "dir"), (std::set<std::string>{"one"}));
  {
    MOUNT_OR_RETURN(b, vol);
    Spit(*b / "weights", v2);
    struct timespec times[2] = {{0, UTIME_OMIT}, {before.st_mtim.tv_sec + 1000, 0}};
    ASSERT_EQ(::utimensat(AT_FDCWD, (*b / "weights").c_str(), times, 0), 0);
    Spit(*b / "dir/two", "two");
    ASSERT_EQ(Control("commit", *b).exit_code, 0);
    ASSERT_EQ(b->Unmount(), 0);
  }
  EXPECT_EQ(Slurp(*a / "weights"), v1);  // C3: the old snapshot until the reload
  RunResult r = Control("reload", *a);
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(Slurp(*a / "weights"), v2);
  struct stat after;
  ASSERT_EQ(::stat((*a / "weights").c_str(), &after), 0);
  EXPECT_EQ(after.st_mtim.tv_sec, before.st_mtim.tv_sec + 1000);
  EXPECT_EQ(listing(*a / "dir"), (std::set<std::string>{"one", "two"}));
  EXPECT_EQ(Slurp(*a / "dir/two"), "two");
  // The mount's own writes: another process sees them through the same
  // mount at once, before any commit.
  RunResult w = RunProcess({"/bin/sh", "-c",
                            "printf mine > \"$0\"/weights && printf new > \"$0\"/dir/three",
                            a->path().string()});
  ASSERT_EQ(w.exit_code, 0) << Describe(w);
  EXPECT_EQ(Slurp(*a / "weights"), "mine");
  ASSERT_EQ(::stat((*a / "weights").c_str(), &after), 0);
  EXPECT_EQ(after.st_size, 4);
  EXPECT_EQ(listing(*a / "dir"), (std::set<std::string>{"one", "two", "three"}));
  RunResult cat = RunProcess({"/bin/cat", (*a / "weights").string(), (*a / "dir/three").string()});
  EXPECT_EQ(cat.out, "minenew");
}

TEST_F(MountTest, ReloadWhileFileOpenIsBusy) {
  std::string vol = NewVolume();
  MOUNT_OR_RETURN(a, vol);
  Spit(*a / "open.txt", "x");
  int fd = ::open((*a / "open.txt").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  RunResult r = Control("reload", *a);
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("volume busy"));
  EXPECT_THAT(r.err, HasSubstr("/open.txt"));
  EXPECT_EQ(Errno(::setxattr(a->path().c_str(), "user.cairn.reload", "1", 1, 0)), EBUSY);
  r = Control("status", *a);
  EXPECT_THAT(r.out, HasSubstr("volume busy"));
  ::close(fd);
  r = Control("reload", *a);
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  // Pending changes survive the reload.
  EXPECT_EQ(Slurp(*a / "open.txt"), "x");
}

// Opens of committed files racing with reloads: a write through a handle
// must never land on a node the reload has already replaced (it would not
// be committed).
TEST_F(MountTest, OpenRacingReloadLosesNoWrites) {
  std::string vol = NewVolume();
  MOUNT_OR_RETURN(a, vol);
  constexpr int kFiles = 150;
  for (int i = 0; i < kFiles; ++i) Spit(*a / absl::StrCat("r", i), "before");
  ASSERT_EQ(Control("commit", *a).exit_code, 0);
  std::atomic<bool> stop{false};
  std::atomic<int> reloads{0};
  std::thread reloader([&] {
    while (!stop.load()) {
      if (::setxattr(a->path().c_str(), "user.cairn.reload", "1", 1, 0) == 0) reloads.fetch_add(1);
    }
  });
  for (int round = 0; round < 4; ++round) {
    for (int i = 0; i < kFiles; ++i) {
      int fd = ::open((*a / absl::StrCat("r", i)).c_str(), O_WRONLY);
      ASSERT_GE(fd, 0) << i << " " << std::strerror(errno);
      std::string v = absl::StrCat("after", round);
      ASSERT_EQ(::pwrite(fd, v.data(), v.size(), 0), static_cast<ssize_t>(v.size()));
      ::close(fd);
    }
  }
  stop.store(true);
  reloader.join();
  EXPECT_GT(reloads.load(), 0);
  ASSERT_EQ(a->Unmount(), 0) << a->Log();
  MOUNT_OR_RETURN(b, vol);
  for (int i = 0; i < kFiles; ++i) EXPECT_EQ(Slurp(*b / absl::StrCat("r", i)), "after3") << i;
}

}  // namespace
}  // namespace cairn::e2e
