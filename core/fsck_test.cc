// Unit tests for fsck: a clean store, orphans, dangling and corrupt objects,
// and leftovers of deleted volumes.
#include "core/testing/mem_stores.h"
#include "core/fsck.h"

#include <string>

#include "core/engine.h"
#include "core/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

using objects::Change;
using objects::ChangeSet;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class FsckTest : public ::testing::Test {
 protected:
  FsckTest()
      : meta_(NewMemMetaStore()),
        blobs_(NewMemBlobStore()),
        master_(MasterKey::FromBytes(std::string(32, 'm')).value()),
        engine_(meta_.get(), blobs_.get(), master_) {
    volume_ = engine_.CreateVolume("", "v", 2).value();
    objects_ = engine_.OpenObjects(volume_).value();
  }

  // Commits `path` with `content` and returns the FILE entry.
  objects::Entry Put(const std::string& path, const std::string& content) {
    Change c;
    c.set_kind(Change::PUT);
    c.set_path(path);
    *c.mutable_entry() = StoreBytes(*objects_, content, 0644, 1).value();
    ChangeSet set;
    *set.add_changes() = c;
    EXPECT_TRUE(engine_.Commit(volume_.id, set).ok());
    return c.entry();
  }

  FsckReport Run() {
    absl::StatusOr<FsckReport> report = Fsck(*meta_, *blobs_, master_);
    EXPECT_TRUE(report.ok()) << report.status();
    return report.value_or(FsckReport());
  }

  std::unique_ptr<MetaStore> meta_;
  std::unique_ptr<BlobStore> blobs_;
  MasterKey master_;
  Engine engine_;
  VolumeRecord volume_;
  std::unique_ptr<ObjectStore> objects_;
};

TEST_F(FsckTest, CleanStoreReportsNothing) {
  Put("a/b", std::string(10000, 'b'));
  Put("a/c", "inline");
  Put("a/b", std::string(10000, 'B'));  // history keeps the old chunk referenced
  FsckReport r = Run();
  EXPECT_TRUE(r.intact());
  EXPECT_EQ(r.ExitCode(), 0);
  EXPECT_EQ(r.volumes, 1u);
  EXPECT_EQ(r.snapshots, 4u);
  // Directory objects of 4 snapshots (root 0; root+a for 1..3) plus 2 chunks.
  EXPECT_EQ(r.objects_checked, 1u + 3u * 2u + 2u);
  EXPECT_TRUE(r.orphans.empty());
  EXPECT_THAT(r.Summary(), HasSubstr("0 dangling"));
}

TEST_F(FsckTest, OrphansOnlyGiveExitCodeThree) {
  Put("f", "x");
  Digest orphan = objects_->PutChunk("never committed").value();
  FsckReport r = Run();
  EXPECT_TRUE(r.intact());
  EXPECT_EQ(r.ExitCode(), 3);
  EXPECT_THAT(r.orphans, ElementsAre(HasSubstr(orphan.ToHex())));
}

TEST_F(FsckTest, MissingChunkIsDangling) {
  objects::Entry e = Put("dir/file", std::string(10000, 'd'));
  Digest chunk = Digest::FromRaw(e.chunks(0)).value();
  ASSERT_TRUE(blobs_->Delete(volume_.id, chunk).ok());
  FsckReport r = Run();
  EXPECT_FALSE(r.intact());
  EXPECT_EQ(r.ExitCode(), 4);
  ASSERT_EQ(r.dangling.size(), 1u);
  EXPECT_THAT(r.dangling[0], HasSubstr(volume_.id + "/" + chunk.ToHex()));
  EXPECT_THAT(r.dangling[0], HasSubstr("snapshot 1 at /dir/file, missing"));
}

TEST_F(FsckTest, DamagedBlobsAreCorrupt) {
  objects::Entry e = Put("f", std::string(10000, 'c'));
  Digest chunk = Digest::FromRaw(e.chunks(0)).value();
  ASSERT_TRUE(blobs_->Delete(volume_.id, chunk).ok());
  ASSERT_TRUE(blobs_->Put(volume_.id, chunk, std::string(200, 'z')).ok());
  FsckReport r = Run();
  EXPECT_EQ(r.ExitCode(), 4);
  ASSERT_EQ(r.corrupt.size(), 1u);
  EXPECT_THAT(r.corrupt[0], HasSubstr(chunk.ToHex()));

  // A damaged directory object too.
  SnapshotRecord head = engine_.Head(volume_.id).value();
  ASSERT_TRUE(blobs_->Delete(volume_.id, head.root).ok());
  ASSERT_TRUE(blobs_->Put(volume_.id, head.root, std::string(50, 'q')).ok());
  r = Run();
  EXPECT_EQ(r.ExitCode(), 4);
  EXPECT_THAT(r.corrupt, ::testing::Contains(HasSubstr(head.root.ToHex())));
}

TEST_F(FsckTest, TotalsThatDoNotAddUpAreCorrupt) {
  Put("f", "12345");
  SnapshotRecord head = engine_.Head(volume_.id).value();
  SnapshotRecord lie = head;
  lie.seq = head.seq + 1;
  lie.parent_seq = head.seq;
  lie.inodes = 99;
  ASSERT_TRUE(meta_->CommitSnapshot(lie, head.seq).ok());
  FsckReport r = Run();
  EXPECT_EQ(r.ExitCode(), 4);
  EXPECT_THAT(r.corrupt, ElementsAre(HasSubstr("claims 99 inodes")));
}

TEST_F(FsckTest, ChunkOfTheWrongLengthIsCorrupt) {
  // Clients seal their own chunks (D1): a chunk can authenticate and still
  // not hold what the entry says, and reading the file then fails.
  Digest short_chunk = objects_->PutChunk("only ten b").value();
  Change c;
  c.set_kind(Change::PUT);
  c.set_path("f");
  c.mutable_entry()->set_type(objects::FILE);
  c.mutable_entry()->set_mode(0644);
  c.mutable_entry()->set_size(kInlineMax + 100);
  c.mutable_entry()->add_chunks(short_chunk.RawString());
  ChangeSet set;
  *set.add_changes() = c;
  ASSERT_TRUE(engine_.Commit(volume_.id, set).ok());
  ASSERT_FALSE(ReadFileRange(*objects_, c.entry(), 0, c.entry().size()).ok());
  FsckReport r = Run();
  EXPECT_EQ(r.ExitCode(), 4);
  EXPECT_THAT(r.corrupt, ElementsAre(HasSubstr("/f")));
}

TEST_F(FsckTest, InvalidEntryNamesAreCorrupt) {
  for (const std::string& bad : {std::string(".."), std::string("a/b"), std::string()}) {
    objects::Directory dir;
    objects::Entry* e = dir.add_entries();
    e->set_name(bad);
    e->set_type(objects::SYMLINK);
    e->set_symlink_target("t");
    std::string plain = dir.SerializeAsString();
    Digest root = objects_->key().Address(plain);
    ASSERT_TRUE(blobs_->Put(volume_.id, root, objects_->key().Seal(root, plain)).ok());
    SnapshotRecord head = engine_.Head(volume_.id).value();
    SnapshotRecord next = head;
    next.seq = head.seq + 1;
    next.parent_seq = head.seq;
    next.root = root;
    next.inodes = 1;
    next.bytes = 0;
    ASSERT_TRUE(meta_->CommitSnapshot(next, head.seq).ok());
    FsckReport r = Run();
    EXPECT_EQ(r.ExitCode(), 4) << "name \"" << bad << "\"";
  }
}

TEST_F(FsckTest, DeletedVolumeLeftoversAreOrphans) {
  VolumeRecord gone = engine_.CreateVolume("", "gone", 2).value();
  ASSERT_TRUE(engine_.DeleteVolume("", "gone").ok());
  FsckReport r = Run();
  EXPECT_TRUE(r.intact());
  EXPECT_EQ(r.ExitCode(), 3);
  EXPECT_THAT(r.orphans, ElementsAre(HasSubstr(gone.id + "/")));
  ASSERT_TRUE(engine_.CollectGarbage(std::chrono::seconds(0)).ok());
  EXPECT_EQ(Run().ExitCode(), 0);
}

TEST_F(FsckTest, WrongMasterKeyIsReported) {
  MasterKey other = MasterKey::FromBytes(std::string(32, 'o')).value();
  absl::StatusOr<FsckReport> r = Fsck(*meta_, *blobs_, other);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->ExitCode(), 4);
  EXPECT_THAT(r->corrupt, ElementsAre(HasSubstr("data key does not unwrap")));
}

}  // namespace
}  // namespace cairn
