// StagedFile: chunk-level copy-on-write over a base entry, against an
// in-memory blob store.
#include "mounter/staged_file.h"

#include <atomic>
#include <string>

#include "core/testing/mem_stores.h"
#include "core/blob_store.h"
#include "core/crypto.h"
#include "core/files.h"
#include "core/object_store.h"
#include "core/testing/temp_dir.h"
#include "gtest/gtest.h"
#include "mounter/chunk_reader.h"

namespace cairn::mounter {
namespace {

class StagedFileTest : public ::testing::Test {
 protected:
  StagedFileTest()
      : blobs_(NewMemBlobStore()),
        objects_(blobs_.get(), "vo-test", DataKey::Generate()),
        reader_(&objects_, nullptr, 64 << 20, 0) {}

  std::string Content(size_t size, char salt) {
    std::string s(size, '\0');
    for (size_t i = 0; i < size; ++i) s[i] = static_cast<char>(salt + (i * 31) % 97);
    return s;
  }

  objects::Entry Store(const std::string& content) {
    auto entry = StoreBytes(objects_, content, 0644, 1);
    EXPECT_TRUE(entry.ok()) << entry.status();
    return *entry;
  }

  std::shared_ptr<StagedFile> Stage(const objects::Entry& base) {
    auto staged = StagedFile::Create(dir_.path(), base, &reader_);
    EXPECT_TRUE(staged.ok()) << staged.status();
    return *staged;
  }

  std::string ReadAll(const objects::Entry& entry) {
    auto data = ReadFileRange(objects_, entry, 0, entry.size());
    EXPECT_TRUE(data.ok()) << data.status();
    return *data;
  }

  cairn::testing::TempDir dir_;
  std::unique_ptr<BlobStore> blobs_;
  ObjectStore objects_;
  ChunkReader reader_;
};

TEST_F(StagedFileTest, NewFileWritesAndStoresInline) {
  auto f = Stage(objects::Entry());
  ASSERT_TRUE(f->Write(3, "abc").ok());
  EXPECT_EQ(f->size(), 6u);
  EXPECT_EQ(*f->Read(0, 100), std::string("\0\0\0abc", 6));
  auto entry = f->Store(objects_, 0600, 5);
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(entry->inline_data(), std::string("\0\0\0abc", 6));
  EXPECT_EQ(entry->mode(), 0600u);
}

TEST_F(StagedFileTest, RandomWriteRewritesOnlyTheChangedChunk) {
  std::string content = Content(3 * kChunkSize + 1000, 'a');
  objects::Entry base = Store(content);
  ASSERT_EQ(base.chunks_size(), 4);
  auto f = Stage(base);
  EXPECT_EQ(*f->Read(kChunkSize - 2, 4), content.substr(kChunkSize - 2, 4));
  ASSERT_TRUE(f->Write(kChunkSize + 10, "XYZ").ok());
  content.replace(kChunkSize + 10, 3, "XYZ");
  EXPECT_EQ(*f->Read(kChunkSize, 20), content.substr(kChunkSize, 20));
  auto entry = f->Store(objects_, 0644, 2);
  ASSERT_TRUE(entry.ok()) << entry.status();
  ASSERT_EQ(entry->chunks_size(), 4);
  EXPECT_EQ(entry->chunks(0), base.chunks(0));
  EXPECT_NE(entry->chunks(1), base.chunks(1));
  EXPECT_EQ(entry->chunks(2), base.chunks(2));
  EXPECT_EQ(entry->chunks(3), base.chunks(3));
  EXPECT_EQ(ReadAll(*entry), content);
}

// A store whose batches fail to finish after `ok_batches` succeeded.
class FailingBatches final : public BlobStore {
 public:
  FailingBatches(BlobStore* inner, int ok_batches) : inner_(inner), ok_(ok_batches) {}
  std::atomic<int> batches{0};
  std::atomic<int> max_open{0};
  std::atomic<int> open{0};
  absl::Status Put(std::string_view v, const Digest& a, std::string_view s) override {
    return inner_->Put(v, a, s);
  }
  absl::StatusOr<std::string> Get(std::string_view v, const Digest& a) override {
    return inner_->Get(v, a);
  }
  absl::StatusOr<bool> Contains(std::string_view v, const Digest& a) override {
    return inner_->Contains(v, a);
  }
  absl::Status Touch(std::string_view v, const Digest& a) override { return inner_->Touch(v, a); }
  absl::Status List(std::string_view v, const std::function<void(const BlobInfo&)>& fn) override {
    return inner_->List(v, fn);
  }
  absl::Status Delete(std::string_view v, const Digest& a) override { return inner_->Delete(v, a); }
  absl::StatusOr<std::vector<std::string>> ListVolumes() override { return inner_->ListVolumes(); }
  absl::Status DeleteVolume(std::string_view v) override { return inner_->DeleteVolume(v); }
  std::unique_ptr<Batch> NewBatch(std::string_view v) override {
    class B final : public Batch {
     public:
      B(FailingBatches* o, std::unique_ptr<Batch> inner) : o_(o), inner_(std::move(inner)) {
        int now = ++o_->open;
        int seen = o_->max_open.load();
        while (now > seen && !o_->max_open.compare_exchange_weak(seen, now)) {
        }
      }
      ~B() override { --o_->open; }
      absl::Status Add(const Digest& a, std::string_view s) override { return inner_->Add(a, s); }
      absl::Status Finish() override {
        if (++o_->batches > o_->ok_) return absl::UnavailableError("upload cut");
        return inner_->Finish();
      }

     private:
      FailingBatches* const o_;
      std::unique_ptr<Batch> inner_;
    };
    return std::make_unique<B>(this, inner_->NewBatch(v));
  }

 private:
  BlobStore* const inner_;
  const int ok_;
};

TEST_F(StagedFileTest, BigFilesUploadInParallelBatches) {
  FailingBatches blobs(blobs_.get(), 1 << 30);
  ObjectStore objects(&blobs, "vo-test", objects_.key());
  const std::string content = Content(33 * kChunkSize + 5, 'b');
  auto f = Stage(objects::Entry());
  ASSERT_TRUE(f->Write(0, content).ok());
  auto entry = f->Store(objects, 0644, 1);
  ASSERT_TRUE(entry.ok()) << entry.status();
  ASSERT_EQ(entry->chunks_size(), 34);
  for (int i = 0; i < entry->chunks_size(); ++i) {
    EXPECT_EQ(entry->chunks(i),
              objects.key().Address(content.substr(i * kChunkSize, kChunkSize)).RawString())
        << i;
  }
  EXPECT_EQ(ReadAll(*entry), content);
  EXPECT_EQ(blobs.batches.load(), 5);  // 34 chunks in runs of 8
  EXPECT_LE(blobs.max_open.load(), 4);  // bounded: at most 4 runs in memory
}

TEST_F(StagedFileTest, AFailedBatchFailsTheStore) {
  FailingBatches blobs(blobs_.get(), 2);
  ObjectStore objects(&blobs, "vo-test", objects_.key());
  auto f = Stage(objects::Entry());
  ASSERT_TRUE(f->Write(0, Content(24 * kChunkSize, 'c')).ok());
  auto entry = f->Store(objects, 0644, 1);
  EXPECT_EQ(entry.status().code(), absl::StatusCode::kUnavailable) << entry.status();
}

TEST_F(StagedFileTest, TruncateAndExtend) {
  std::string content = Content(2 * kChunkSize + 5, 'k');
  objects::Entry base = Store(content);
  auto f = Stage(base);
  ASSERT_TRUE(f->Truncate(kChunkSize + 7).ok());
  ASSERT_TRUE(f->Truncate(kChunkSize + 20).ok());
  std::string expect = content.substr(0, kChunkSize + 7) + std::string(13, '\0');
  EXPECT_EQ(*f->Read(0, 1 << 30), expect);
  // Writing far past the end leaves zeros between.
  ASSERT_TRUE(f->Write(3 * kChunkSize, "end").ok());
  expect.resize(3 * kChunkSize, '\0');
  expect += "end";
  auto entry = f->Store(objects_, 0644, 2);
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ(entry->chunks(0), base.chunks(0));
  EXPECT_EQ(ReadAll(*entry), expect);
}

TEST_F(StagedFileTest, WholeChunkOverwriteNeedsNoFetch) {
  std::string content = Content(2 * kChunkSize, 'q');
  objects::Entry base = Store(content);
  auto f = Stage(base);
  std::string fresh = Content(kChunkSize, 'z');
  ASSERT_TRUE(f->Write(0, fresh).ok());
  content.replace(0, kChunkSize, fresh);
  auto entry = f->Store(objects_, 0644, 2);
  ASSERT_TRUE(entry.ok());
  EXPECT_EQ(entry->chunks(1), base.chunks(1));
  EXPECT_EQ(ReadAll(*entry), content);
}

TEST_F(StagedFileTest, SmallFileGrowsFromMemoryToDisk) {
  auto f = Stage(objects::Entry());
  ASSERT_TRUE(f->Write(0, "head").ok());
  std::string tail = Content(100 << 10, 't');
  ASSERT_TRUE(f->Write(200 << 10, tail).ok());
  std::string expect = "head" + std::string((200 << 10) - 4, '\0') + tail;
  EXPECT_EQ(*f->Read(0, 1 << 30), expect);
  ASSERT_TRUE(f->Truncate(10).ok());
  EXPECT_EQ(*f->Read(0, 100), std::string("head") + std::string(6, '\0'));
}

TEST_F(StagedFileTest, InlineBaseIsCopied) {
  objects::Entry base = Store("small");
  auto f = Stage(base);
  ASSERT_TRUE(f->Write(5, "er").ok());
  EXPECT_EQ(*f->Read(0, 100), "smaller");
}

// Sparse files (D28): holes stay holes through writing, committing,
// staging the committed entry again and punching.
TEST_F(StagedFileTest, HolesSurviveStoreRestageAndPunch) {
  auto f = Stage(objects::Entry());
  const uint64_t at = 2 * kChunkSize + kChunkSize / 2;
  ASSERT_TRUE(f->Write(at, "x").ok());
  std::vector<Extent> holes = f->Holes();
  if (holes.empty()) GTEST_SKIP() << "the staging directory's file system reports no holes";
  EXPECT_EQ(holes, (std::vector<Extent>{{0, at}}));
  EXPECT_EQ(*f->Seek(0, /*data=*/true), at);
  EXPECT_EQ(*f->Seek(at, /*data=*/false), at + 1);
  EXPECT_EQ(f->AllocatedBytes(), kHoleBlock);
  auto entry = f->Store(objects_, 0644, 1);
  ASSERT_TRUE(entry.ok()) << entry.status();
  ASSERT_TRUE(CheckFileLayout(*entry, "f").ok()) << CheckFileLayout(*entry, "f");
  EXPECT_EQ(Holes(*entry), holes);
  EXPECT_TRUE(entry->chunks(0).empty());  // nothing stored for whole-hole chunks
  EXPECT_TRUE(entry->chunks(1).empty());
  EXPECT_EQ(entry->chunks(2).size(), 32u);
  std::string want(at + 1, '\0');
  want[at] = 'x';
  EXPECT_EQ(ReadAll(*entry), want);

  // Staged again from the committed entry: the holes are the base's; a
  // write into the data chunk copies only its data; a punch makes another.
  auto g = Stage(*entry);
  EXPECT_EQ(g->Holes(), holes);
  ASSERT_TRUE(g->Write(at + 4096, "y").ok());
  EXPECT_EQ(g->Holes(), holes);  // blocks `at` and `at` + 4 KiB are data now
  EXPECT_EQ(*g->Seek(at + 1, /*data=*/false), at + 4097);  // the end
  ASSERT_TRUE(g->Write(kHoleBlock, std::string(3 * kHoleBlock, 'p')).ok());
  ASSERT_TRUE(g->PunchHole(2 * kHoleBlock, kHoleBlock).ok());
  EXPECT_EQ(*g->Seek(0, /*data=*/true), kHoleBlock);
  EXPECT_EQ(*g->Seek(kHoleBlock, /*data=*/false), 2 * kHoleBlock);
  EXPECT_EQ(*g->Seek(2 * kHoleBlock, /*data=*/true), 3 * kHoleBlock);
  EXPECT_EQ(*g->Read(2 * kHoleBlock, 2), std::string(2, '\0'));
  auto again = g->Store(objects_, 0644, 2);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_TRUE(CheckFileLayout(*again, "f").ok()) << CheckFileLayout(*again, "f");
  want.resize(at + 4097, '\0');
  want[at + 4096] = 'y';
  want.replace(kHoleBlock, kHoleBlock, std::string(kHoleBlock, 'p'));
  want.replace(3 * kHoleBlock, kHoleBlock, std::string(kHoleBlock, 'p'));
  EXPECT_EQ(ReadAll(*again), want);
  EXPECT_EQ(Holes(*again), (std::vector<Extent>{{0, kHoleBlock},
                                                 {2 * kHoleBlock, kHoleBlock},
                                                 {4 * kHoleBlock, at - 4 * kHoleBlock}}));
}

TEST_F(StagedFileTest, ContentInMemoryKnowsItsHoles) {
  auto f = Stage(objects::Entry());
  ASSERT_TRUE(f->Write(40000, "s").ok());
  EXPECT_EQ(f->Holes(), (std::vector<Extent>{{0, 36864}}));
  EXPECT_EQ(f->AllocatedBytes(), kHoleBlock);
  ASSERT_TRUE(f->Truncate(1 << 20).ok());  // to the backing file: holes kept
  std::vector<Extent> holes = f->Holes();
  if (holes.size() < 2) GTEST_SKIP() << "the staging directory's file system reports no holes";
  EXPECT_EQ(holes, (std::vector<Extent>{{0, 36864}, {40960, (1 << 20) - 40960}}));
  auto entry = f->Store(objects_, 0644, 1);
  ASSERT_TRUE(entry.ok());
  EXPECT_EQ(Holes(*entry), holes);
  EXPECT_EQ(ReadAll(*entry).find('s'), 40000u);
}

}  // namespace
}  // namespace cairn::mounter
