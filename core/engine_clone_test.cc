// Engine::CloneVolume: a clone starts at a snapshot of its source without
// re-sealing anything, diverges independently, and survives the source's
// deletion and garbage collection (C8, docs/decisions.md D12). Runs over the
// memory store (copying Link) and the local store (hard links).
#include <sys/stat.h>

#include <map>
#include <string>

#include "core/testing/mem_stores.h"
#include "core/engine.h"
#include "core/files.h"
#include "core/testing/temp_dir.h"
#include "core/tree.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

using objects::Change;
using objects::ChangeSet;

class CloneTest : public ::testing::TestWithParam<bool> {
 protected:
  CloneTest() : meta_(NewMemMetaStore()) {
    if (GetParam()) {
      blobs_ = OpenLocalBlobStore(dir_.path() / "blobs").value();
    } else {
      blobs_ = NewMemBlobStore();
    }
    engine_ = std::make_unique<Engine>(meta_.get(), blobs_.get(),
                                       MasterKey::FromBytes(std::string(32, 'k')).value());
  }

  absl::StatusOr<SnapshotRecord> Put(const VolumeRecord& v, const std::string& path,
                                     const std::string& content) {
    auto objects = engine_->OpenObjects(v);
    if (!objects.ok()) return objects.status();
    ChangeSet set;
    Change* c = set.add_changes();
    c->set_kind(Change::PUT);
    c->set_path(path);
    auto entry = StoreBytes(**objects, content, 0644, 1);
    if (!entry.ok()) return entry.status();
    *c->mutable_entry() = *entry;
    return engine_->Commit(v.id, set);
  }

  std::map<std::string, std::string> Files(const VolumeRecord& v) {
    std::map<std::string, std::string> out;
    auto objects = engine_->OpenObjects(v).value();
    SnapshotRecord head = engine_->Head(v.id).value();
    EXPECT_TRUE(WalkTree(*objects, head.root, "", [&](const std::string& p, const objects::Entry& e) {
                  if (e.type() != objects::DIRECTORY) {
                    auto content = ReadFileRange(*objects, e, 0, e.size());
                    EXPECT_TRUE(content.ok()) << p << ": " << content.status();
                    out[p] = content.value_or("?");
                  }
                  return true;
                }).ok());
    return out;
  }

  testing::TempDir dir_;
  std::unique_ptr<MetaStore> meta_;
  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<Engine> engine_;
};

TEST_P(CloneTest, StartsAtTheSnapshotDivergesAndOutlivesItsSource) {
  VolumeRecord source = engine_->CreateVolume("ns", "source", 2).value();
  // Big enough for chunks outside the directory object.
  std::string big(5 << 20, 'x');
  ASSERT_TRUE(Put(source, "a.txt", "one").ok());
  auto s2 = Put(source, "dir/big.bin", big);
  ASSERT_TRUE(s2.ok()) << s2.status();
  ASSERT_TRUE(Put(source, "later.txt", "after the snapshot").ok());

  auto clone = engine_->CloneVolume(source.id, s2->seq, "other", "clone");
  ASSERT_TRUE(clone.ok()) << clone.status();
  EXPECT_NE(clone->id, source.id);
  EXPECT_EQ(clone->version, source.version);
  SnapshotRecord head = engine_->Head(clone->id).value();
  EXPECT_EQ(head.seq, 0u);
  EXPECT_EQ(head.root, s2->root);  // no directory was rewritten
  EXPECT_EQ(head.inodes, s2->inodes);
  EXPECT_EQ(head.bytes, s2->bytes);
  auto files = Files(*clone);
  EXPECT_EQ(files.size(), 2u);
  EXPECT_EQ(files["a.txt"], "one");
  EXPECT_EQ(files["dir/big.bin"], big);

  // Writes to the clone leave the source alone, and the other way round.
  ASSERT_TRUE(Put(*clone, "a.txt", "changed in the clone").ok());
  EXPECT_EQ(Files(source)["a.txt"], "one");
  ASSERT_TRUE(Put(source, "b.txt", "source only").ok());
  EXPECT_FALSE(Files(*clone).contains("b.txt"));

  // Delete the source and collect everything collectable: the clone reads on.
  ASSERT_TRUE(engine_->DeleteVolumeById(source.id).ok());
  auto gc = engine_->CollectGarbage(std::chrono::seconds(0));
  ASSERT_TRUE(gc.ok()) << gc.status();
  EXPECT_EQ(gc->volumes_purged, 1u);
  files = Files(*clone);
  EXPECT_EQ(files["a.txt"], "changed in the clone");
  EXPECT_EQ(files["dir/big.bin"], big);
}

TEST_P(CloneTest, HeadByDefaultAndClearErrors) {
  VolumeRecord source = engine_->CreateVolume("ns", "src", 1).value();
  ASSERT_TRUE(Put(source, "f", "head").ok());
  auto clone = engine_->CloneVolume(source.id, std::nullopt, "ns", "copy");
  ASSERT_TRUE(clone.ok()) << clone.status();
  EXPECT_EQ(clone->version, 1);
  EXPECT_EQ(Files(*clone)["f"], "head");

  EXPECT_EQ(engine_->CloneVolume(source.id, {}, "ns", "copy").status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(engine_->CloneVolume("vo-missing", {}, "ns", "x").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(engine_->CloneVolume(source.id, 99, "ns", "x").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(engine_->CloneVolume(source.id, {}, "ns", "../x").status().code(),
            absl::StatusCode::kInvalidArgument);
  // Nothing half-made: the failed clones left no volume behind.
  EXPECT_EQ(engine_->ListVolumes("ns").value().size(), 2u);
}

INSTANTIATE_TEST_SUITE_P(Stores, CloneTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Local" : "Memory"; });

}  // namespace
}  // namespace cairn
