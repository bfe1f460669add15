// rm and cp rules against a real head (in-memory stores).
#include "core/testing/mem_stores.h"
#include "core/file_ops.h"

#include <cerrno>

#include "core/engine.h"
#include "core/files.h"
#include "core/status.h"
#include "core/tree.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

using ::testing::HasSubstr;

class FileOpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    volume_ = engine_.CreateVolume("", "v", 2).value();
    objects_ = engine_.OpenObjects(volume_).value();
    objects::ChangeSet set;
    for (const char* path : {"a.txt", "dir/b.txt", "dir/sub/c.txt"}) {
      objects::Change* c = set.add_changes();
      c->set_kind(objects::Change::PUT);
      c->set_path(path);
      *c->mutable_entry() = StoreBytes(*objects_, path, 0644, 1).value();
    }
    head_ = engine_.Commit(volume_.id, set).value();
  }
  absl::Status Apply(const absl::StatusOr<objects::ChangeSet>& changes) {
    if (!changes.ok()) return changes.status();
    absl::StatusOr<SnapshotRecord> s = engine_.Commit(volume_.id, *changes);
    if (s.ok()) head_ = *s;
    return s.status();
  }
  bool Exists(const std::string& path) { return LookupPath(*objects_, head_.root, path).ok(); }

  std::unique_ptr<MetaStore> meta_ = NewMemMetaStore();
  std::unique_ptr<BlobStore> blobs_ = NewMemBlobStore();
  Engine engine_{meta_.get(), blobs_.get(), MasterKey::FromBytes(std::string(32, 'k')).value()};
  VolumeRecord volume_;
  std::unique_ptr<ObjectStore> objects_;
  SnapshotRecord head_;
};

TEST_F(FileOpsTest, RemoveRules) {
  auto root = RemoveChanges(*objects_, head_, "v", "/", true);
  EXPECT_TRUE(absl::IsInvalidArgument(root.status())) << root.status();
  auto missing = RemoveChanges(*objects_, head_, "v", "nope", false);
  EXPECT_TRUE(absl::IsNotFound(missing.status()));
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("'/nope' in volume v"));
  auto dir = RemoveChanges(*objects_, head_, "v", "dir", false);
  EXPECT_TRUE(absl::IsFailedPrecondition(dir.status()));
  EXPECT_EQ(StatusToErrno(dir.status()), EISDIR);
  EXPECT_TRUE(absl::IsInvalidArgument(RemoveChanges(*objects_, head_, "v", "../x", true).status()));
  ASSERT_TRUE(Apply(RemoveChanges(*objects_, head_, "v", "dir", true)).ok());
  EXPECT_FALSE(Exists("dir/b.txt"));
  EXPECT_TRUE(Exists("a.txt"));
}

TEST_F(FileOpsTest, CopyRules) {
  ASSERT_TRUE(Apply(CopyChanges(*objects_, head_, "v", {"a.txt"}, "copy.txt", false)).ok());
  EXPECT_TRUE(Exists("copy.txt"));
  ASSERT_TRUE(Apply(CopyChanges(*objects_, head_, "v", {"a.txt"}, "new/", false)).ok());
  EXPECT_TRUE(Exists("new/a.txt"));
  ASSERT_TRUE(Apply(CopyChanges(*objects_, head_, "v", {"a.txt", "dir"}, "new", true)).ok());
  EXPECT_TRUE(Exists("new/dir/sub/c.txt"));

  auto no_r = CopyChanges(*objects_, head_, "v", {"dir"}, "x", false);
  EXPECT_EQ(StatusToErrno(no_r.status()), EISDIR);
  auto into_self = CopyChanges(*objects_, head_, "v", {"dir"}, "dir/sub", true);
  EXPECT_TRUE(absl::IsInvalidArgument(into_self.status()));
  EXPECT_THAT(std::string(into_self.status().message()), HasSubstr("into itself"));
  auto onto_file = CopyChanges(*objects_, head_, "v", {"dir/b.txt"}, "a.txt/", false);
  EXPECT_EQ(StatusToErrno(onto_file.status()), ENOTDIR);
  auto several = CopyChanges(*objects_, head_, "v", {"a.txt", "dir/b.txt"}, "a.txt", false);
  EXPECT_TRUE(absl::IsFailedPrecondition(several.status()));
  auto same = CopyChanges(*objects_, head_, "v", {"a.txt"}, "a.txt", false);
  EXPECT_TRUE(absl::IsInvalidArgument(same.status()));
  EXPECT_TRUE(absl::IsInvalidArgument(CopyChanges(*objects_, head_, "v", {}, "x", false).status()));
  // One bad source fails the whole copy: nothing partial.
  const uint64_t seq = head_.seq;
  auto partial = CopyChanges(*objects_, head_, "v", {"a.txt", "nope"}, "new", false);
  EXPECT_TRUE(absl::IsNotFound(partial.status()));
  EXPECT_THAT(std::string(partial.status().message()), HasSubstr("'/nope' in volume v"));
  EXPECT_EQ(engine_.Head(volume_.id).value().seq, seq);
}

}  // namespace
}  // namespace cairn
