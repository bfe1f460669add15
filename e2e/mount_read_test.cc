// What a mount shows and serves: read-only mounts, sub-path mounts, and
// node-cache copies that fail to authenticate (DESIGN.md C4, C5).
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

// The node cache holds sealed blobs; a damaged copy (of a chunk or a
// directory object) fails to authenticate, is evicted and fetched again.
TEST_F(MountTest, DamagedNodeCacheIsRepairedFromTheControlPlane) {
  std::string vol = NewVolume();
  std::string big(5 << 20, 'c');  // two chunks, not inline
  {
    MOUNT_OR_RETURN(a, vol);
    ASSERT_EQ(::mkdir((*a / "dir").c_str(), 0755), 0);
    Spit(*a / "dir/big", big);
    ASSERT_EQ(Control("commit", *a).exit_code, 0);
    ASSERT_EQ(a->Unmount(), 0);
  }
  {
    MOUNT_OR_RETURN(b, vol);  // fills the cache with the committed objects
    ASSERT_EQ(Slurp(*b / "dir/big"), big);
    ASSERT_EQ(b->Unmount(), 0);
  }
  int damaged = 0;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir_->path() / "cache/blobs", ec)) {
    if (!e.is_regular_file()) continue;
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(20);
    f.put('\x7f');
    ++damaged;
  }
  ASSERT_GE(damaged, 3);  // root, dir, chunks
  MOUNT_OR_RETURN(c, vol);
  EXPECT_EQ(Slurp(*c / "dir/big"), big) << c->Log();
}

TEST_F(MountTest, ReadOnlyMountRefusesWrites) {
  std::string vol = NewVolume();
  {
    MOUNT_OR_RETURN(w, vol);
    Spit(*w / "data.txt", "read me");
    ASSERT_EQ(w->Unmount(), 0);
  }
  MOUNT_OR_RETURN(a, vol, {"--read-only"});
  EXPECT_EQ(Slurp(*a / "data.txt"), "read me");
  EXPECT_EQ(Errno(::open((*a / "data.txt").c_str(), O_WRONLY)), EROFS);
  EXPECT_EQ(Errno(::open((*a / "new").c_str(), O_CREAT | O_WRONLY, 0644)), EROFS);
  EXPECT_EQ(Errno(::mkdir((*a / "dir").c_str(), 0755)), EROFS);
  EXPECT_EQ(Errno(::unlink((*a / "data.txt").c_str())), EROFS);
  EXPECT_EQ(Errno(::chmod((*a / "data.txt").c_str(), 0600)), EROFS);
  EXPECT_EQ(Errno(::rename((*a / "data.txt").c_str(), (*a / "x").c_str())), EROFS);
  // Reload still works on a read-only mount.
  EXPECT_EQ(Control("reload", *a).exit_code, 0);
}

TEST_F(MountTest, SubPathShowsOnlyTheSubdirectory) {
  std::string vol = NewVolume();
  {
    MOUNT_OR_RETURN(w, vol);
    fs::create_directories(*w / "models/bert");
    Spit(*w / "models/bert/weights", "w");
    Spit(*w / "top.txt", "top");
    ASSERT_EQ(w->Unmount(), 0);
  }
  MOUNT_OR_RETURN(a, vol, {"--sub-path", "models/bert"});
  EXPECT_EQ(Slurp(*a / "weights"), "w");
  EXPECT_FALSE(fs::exists(*a / "top.txt"));
  Spit(*a / "config.json", "{}");
  ASSERT_EQ(Control("commit", *a).exit_code, 0);
  EXPECT_EQ(HeadFile(vol, "models/bert/config.json"), "{}");
  EXPECT_EQ(HeadFile(vol, "top.txt"), "top");
}

}  // namespace
}  // namespace cairn::e2e
