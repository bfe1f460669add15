// What a mount shows and serves: read-only mounts, sub-path mounts, and
// node-cache copies that fail to authenticate (DESIGN.md C4, C5).
// Real `cairn server` and `cairn mount` processes and kernel mounts over the
// shared fixture (e2e/mount_fixture.h); needs root and /dev/fuse.

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
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
#include "core/crypto.h"
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
// The mounter lets the kernel read ahead a whole chunk. It finds the
// mount's device in /proc/self/mountinfo, not by a stat of its own
// mountpoint: that stat is a FUSE request to the mounter itself, and a
// SIGTERM just after mounting once left it unanswered, with the mounter
// unable to exit and the mount hung (so the SIGTERMs below, repeated).
TEST_F(MountTest, ReadaheadIsRaisedAndSigtermJustAfterMountingEndsPromptly) {
  std::string vol = NewVolume();
  {
    MOUNT_OR_RETURN(a, vol);
    struct stat st;
    ASSERT_EQ(::stat(a->path().c_str(), &st), 0);
    const std::string knob = absl::StrCat("/sys/class/bdi/", major(st.st_dev), ":",
                                          minor(st.st_dev), "/read_ahead_kb");
    std::string value;
    for (int i = 0; i < 100 && value != "4096"; ++i) {  // the background thread sets it
      std::ifstream in(knob);
      std::getline(in, value);
      if (value != "4096") std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_EQ(value, "4096") << knob;
    EXPECT_EQ(a->Unmount(), 0) << a->Log();
  }
  for (int round = 0; round < 5; ++round) {
    MOUNT_OR_RETURN(b, vol);
    b->child().Signal(SIGTERM);
    EXPECT_EQ(b->child().Wait(std::chrono::seconds(60)), 0) << "round " << round << "\n"
                                                            << b->Log();
    EXPECT_FALSE(IsMountedAt(b->path()));
  }
}

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

// Random preads open only the blocks they touch (core/crypto.h); what
// they return is the file, and a damaged block in the node cache is
// repaired from the control plane like a damaged chunk.
TEST_F(MountTest, RandomReadsSeeTheFileAndRepairDamagedBlocks) {
  std::string vol = NewVolume();
  std::string data(9 << 20, '\0');
  uint64_t x = 88172645463325252ull;  // xorshift: no two chunks alike
  for (char& ch : data) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    ch = static_cast<char>(x);
  }
  {
    MOUNT_OR_RETURN(a, vol);
    Spit(*a / "weights", data);
    ASSERT_EQ(a->Unmount(), 0);
  }
  std::string id;
  {
    MOUNT_OR_RETURN(b, vol);  // fills the node cache
    ASSERT_EQ(Slurp(*b / "weights"), data);
    id = VolumeId(*b);
    ASSERT_EQ(b->Unmount(), 0);
  }
  // Damage block 7 of every cached object big enough to have one.
  const uint64_t at = kSealHeaderSize + 7 * (kSealBlockSize + kSealTagSize) + 1000;
  int damaged = 0;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir_->path() / "cache/blobs" / id, ec)) {
    if (!e.is_regular_file() || e.file_size() <= at) continue;
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(at);
    char c = 0;
    f.get(c);
    f.seekp(at);
    f.put(static_cast<char>(c ^ 0x55));
    ++damaged;
  }
  ASSERT_EQ(damaged, 3);  // the file's three chunks
  MOUNT_OR_RETURN(c, vol);
  int fd = ::open((*c / "weights").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  uint64_t seed = 12345;
  std::vector<uint64_t> offsets = {7 * kSealBlockSize + 10, (4 << 20) + 7 * kSealBlockSize + 1000,
                                   data.size() - 100};
  for (int i = 0; i < 300; ++i) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    offsets.push_back((seed >> 11) % data.size());
  }
  std::string buf(4096, '\0');
  for (uint64_t off : offsets) {
    ssize_t n = ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(off));
    const size_t want = std::min<size_t>(buf.size(), data.size() - off);
    ASSERT_EQ(n, static_cast<ssize_t>(want)) << off;
    ASSERT_EQ(std::string_view(buf.data(), want), std::string_view(data).substr(off, want))
        << "at " << off << "\n" << c->Log();
  }
  ::close(fd);
  // The random reads took the block path, and met the damage there.
  EXPECT_THAT(c->Log(), HasSubstr("failed to authenticate; refetching"));
  EXPECT_THAT(c->Log(), HasSubstr(" blocks "));
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
