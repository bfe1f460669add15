#include "mounter/inode_log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace cairn::mounter {
namespace {

namespace fs = std::filesystem;

// path → ino of what a log resolves to.
std::map<std::string, uint64_t> Paths(const fs::path& file) {
  auto records = InodeLog::Read(file);
  EXPECT_TRUE(records.ok()) << records.status();
  std::map<std::string, uint64_t> out;
  if (!records.ok()) return out;
  for (const auto& r : InodeLog::Resolve(*records)) out[r.path] = r.ino;
  return out;
}

TEST(InodeLogTest, NamesResolveToPathsAndRenamesMoveSubtrees) {
  cairn::testing::TempDir dir;
  fs::path file = dir.path() / "inodes";
  auto log = InodeLog::Create(file);
  ASSERT_TRUE(log.ok()) << log.status();
  (*log)->Named(2, 1, "d", S_IFDIR);
  (*log)->Named(3, 2, "f", S_IFREG);
  (*log)->Named(4, 1, "top", S_IFREG);
  auto size = fs::file_size(file);
  (*log)->Named(3, 2, "f", S_IFREG);  // known already: nothing written
  EXPECT_EQ(fs::file_size(file), size);
  EXPECT_EQ(Paths(file), (std::map<std::string, uint64_t>{{"d", 2}, {"d/f", 3}, {"top", 4}}));

  // One record moves the directory and everything below it.
  (*log)->Renamed(1, "d", 1, "e");
  EXPECT_EQ(Paths(file), (std::map<std::string, uint64_t>{{"e", 2}, {"e/f", 3}, {"top", 4}}));
  // A rename over a name: the newer claim on the path wins.
  (*log)->Renamed(1, "top", 2, "f");
  EXPECT_EQ(Paths(file), (std::map<std::string, uint64_t>{{"e", 2}, {"e/f", 4}}));
  // Renaming what the kernel never learnt is nothing to record.
  size = fs::file_size(file);
  (*log)->Renamed(1, "never-looked-up", 1, "x");
  EXPECT_EQ(fs::file_size(file), size);
  EXPECT_TRUE((*log)->status().ok());
}

TEST(InodeLogTest, InheritedRecordsCarryOnAndTypesAreKept) {
  cairn::testing::TempDir dir;
  {
    auto log = InodeLog::Create(dir.path() / "a");
    ASSERT_TRUE(log.ok());
    (*log)->Named(2, 1, "d", S_IFDIR);
    (*log)->Named(5, 2, "link", S_IFLNK);
  }
  auto old = InodeLog::Read(dir.path() / "a");
  ASSERT_TRUE(old.ok());
  auto next = InodeLog::Create(dir.path() / "b", *old);
  ASSERT_TRUE(next.ok());
  // The inherited place is known: renaming it is recorded in the new log.
  (*next)->Renamed(2, "link", 1, "moved");
  auto records = InodeLog::Read(dir.path() / "b");
  ASSERT_TRUE(records.ok());
  auto resolved = InodeLog::Resolve(*records);
  ASSERT_EQ(resolved.size(), 2u);
  auto moved = std::find_if(resolved.begin(), resolved.end(),
                            [](const auto& r) { return r.path == "moved"; });
  ASSERT_NE(moved, resolved.end());
  EXPECT_EQ(moved->ino, 5u);
  EXPECT_EQ(moved->type, static_cast<uint32_t>(S_IFLNK));
}

TEST(InodeLogTest, TornTailBrokenChainsAndCyclesAreLeftOut) {
  cairn::testing::TempDir dir;
  fs::path file = dir.path() / "inodes";
  {
    auto log = InodeLog::Create(file);
    ASSERT_TRUE(log.ok());
    (*log)->Named(2, 1, "a", S_IFREG);
    (*log)->Named(7, 99, "orphan", S_IFREG);  // parent never named
    (*log)->Named(8, 9, "x", S_IFDIR);       // 8 and 9 name each other
    (*log)->Named(9, 8, "y", S_IFDIR);
    (*log)->Named(3, 1, "b", S_IFREG);
  }
  // A record cut off in the middle of its write.
  auto full = fs::file_size(file);
  fs::resize_file(file, full - 3);
  EXPECT_EQ(Paths(file), (std::map<std::string, uint64_t>{{"a", 2}}));
  auto missing = InodeLog::Read(dir.path() / "none");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace cairn::mounter
