// ChunkReader: whole chunks for sequential readers, only the touched blocks
// for random ones; chunks of older releases (single-block form) still read;
// damaged node-cache copies repaired.
#include "mounter/chunk_reader.h"

#include <fstream>

#include "core/crypto.h"
#include "core/testing/counting_blob_store.h"
#include "core/testing/mem_stores.h"
#include "core/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace cairn::mounter {
namespace {

constexpr char kVol[] = "vo-test";
constexpr uint64_t kSealedBlock = kSealBlockSize + kSealTagSize;

std::string Pattern(size_t n, int seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed) % 251);
  return s;
}

class ChunkReaderTest : public ::testing::Test {
 protected:
  ChunkReaderTest() : key_(DataKey::Generate()) {}

  // A reader over the remote (optionally through a node cache), fresh
  // memory each time.
  std::unique_ptr<ChunkReader> Reader(bool with_cache) {
    objects_.reset();
    if (with_cache && cache_ == nullptr) {
      cache_ = *DiskCache::Open(&remote_, dir_.path() / "cache", 0);
    }
    objects_ = std::make_unique<ObjectStore>(with_cache ? static_cast<BlobStore*>(cache_.get())
                                                        : &remote_,
                                             kVol, key_);
    return std::make_unique<ChunkReader>(objects_.get(), with_cache ? cache_.get() : nullptr,
                                         64 << 20, 0);
  }

  std::filesystem::path CachedFile(const Digest& a) {
    std::string hex = a.ToHex();
    return dir_.path() / "cache" / "blobs" / kVol / hex.substr(0, 2) / hex;
  }

  DataKey key_;
  cairn::testing::TempDir dir_;
  std::unique_ptr<BlobStore> mem_ = NewMemBlobStore();
  cairn::testing::CountingBlobStore remote_{mem_.get()};
  std::unique_ptr<DiskCache> cache_;
  std::unique_ptr<ObjectStore> objects_;
};

TEST_F(ChunkReaderTest, RandomReadsFetchAndOpenOnlyTheirBlocks) {
  const std::string plain = Pattern(4 << 20, 1);
  const Digest a = key_.Address(plain);
  ASSERT_TRUE(mem_->Put(kVol, a, key_.Seal(a, plain)).ok());
  auto reader = Reader(false);

  auto slice = reader->Read(a, 1000000, 4096);
  ASSERT_TRUE(slice.ok()) << slice.status();
  EXPECT_EQ(slice->view, plain.substr(1000000, 4096));
  // The header, then one block: not the 4 MiB chunk.
  EXPECT_EQ(remote_.gets.load(), 0u);
  EXPECT_EQ(remote_.bytes.load(), kSealHeaderSize + kSealedBlock);

  // Again, and elsewhere in the same block: from memory.
  const uint64_t before = remote_.bytes.load();
  slice = reader->Read(a, 1000000 + 8192, 100);
  ASSERT_TRUE(slice.ok());
  EXPECT_EQ(slice->view, plain.substr(1000000 + 8192, 100));
  EXPECT_EQ(remote_.bytes.load(), before);

  // Across a block boundary: the two blocks, one run (the layout is known).
  slice = reader->Read(a, 3 * kSealBlockSize - 10, 20);
  ASSERT_TRUE(slice.ok());
  EXPECT_EQ(slice->view, plain.substr(3 * kSealBlockSize - 10, 20));
  EXPECT_EQ(remote_.bytes.load(), before + 2 * kSealedBlock);

  // Blocks already in memory, joined; the chunk's end clips.
  slice = reader->Read(a, 2 * kSealBlockSize, 2 * kSealBlockSize);
  ASSERT_TRUE(slice.ok());
  EXPECT_EQ(slice->view, plain.substr(2 * kSealBlockSize, 2 * kSealBlockSize));
  slice = reader->Read(a, plain.size() - 5, 100);
  ASSERT_TRUE(slice.ok());
  EXPECT_EQ(slice->view, plain.substr(plain.size() - 5));
  slice = reader->Read(a, plain.size(), 100);
  ASSERT_TRUE(slice.ok());
  EXPECT_TRUE(slice->view.empty());
}

TEST_F(ChunkReaderTest, ChunksSealedByOlderReleasesReadWhole) {
  const std::string plain = Pattern(300000, 2);
  const Digest a = key_.Address(plain);
  ASSERT_TRUE(mem_->Put(kVol, a, key_.SealSingle(a, plain)).ok());
  auto reader = Reader(false);
  auto slice = reader->Read(a, 200000, 4096);
  ASSERT_TRUE(slice.ok()) << slice.status();
  EXPECT_EQ(slice->view, plain.substr(200000, 4096));
  EXPECT_EQ(remote_.gets.load(), 1u);
  auto whole = reader->Get(a);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(**whole, plain);
  EXPECT_EQ(remote_.gets.load(), 1u);  // from memory
}

TEST_F(ChunkReaderTest, ADamagedBlockInTheNodeCacheIsRefetched) {
  const std::string plain = Pattern(1 << 20, 3);
  const Digest a = key_.Address(plain);
  const std::string sealed = key_.Seal(a, plain);
  ASSERT_TRUE(mem_->Put(kVol, a, sealed).ok());
  {
    auto reader = Reader(true);
    ASSERT_TRUE(reader->Get(a).ok());  // now in the node cache
    cache_->Flush();
  }
  ASSERT_TRUE(std::filesystem::exists(CachedFile(a)));
  {  // flip a byte of block 5 in the cached copy
    std::fstream f(CachedFile(a), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(kSealHeaderSize + 5 * kSealedBlock + 77);
    f.put('\xff' ^ sealed[kSealHeaderSize + 5 * kSealedBlock + 77]);
  }
  auto reader = Reader(true);
  const uint64_t misses = cache_->misses();
  auto slice = reader->Read(a, 5 * kSealBlockSize + 100, 1000);
  ASSERT_TRUE(slice.ok()) << slice.status();
  EXPECT_EQ(slice->view, plain.substr(5 * kSealBlockSize + 100, 1000));
  EXPECT_GT(cache_->misses(), misses);  // read again from the remote
  EXPECT_FALSE(std::filesystem::exists(CachedFile(a)));

  // Damaged everywhere: DataLoss naming the object, never the bytes.
  std::string bad = sealed;
  bad[kSealHeaderSize + 2 * kSealedBlock] ^= 1;
  ASSERT_TRUE(mem_->Delete(kVol, a).ok());
  ASSERT_TRUE(mem_->Put(kVol, a, bad).ok());
  auto fresh = Reader(true);
  auto lost = fresh->Read(a, 2 * kSealBlockSize, 10);
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kDataLoss) << lost.status();
  EXPECT_NE(lost.status().message().find(a.ToHex()), std::string_view::npos);
  // The other blocks of that object still open.
  auto fine = fresh->Read(a, 0, 10);
  ASSERT_TRUE(fine.ok()) << fine.status();
  EXPECT_EQ(fine->view, plain.substr(0, 10));
}

TEST_F(ChunkReaderTest, AHeaderFromAnotherSealingIsNotTrusted) {
  // The same plaintext sealed twice (two writers) gives two salts; a layout
  // learnt from one must not open the other's blocks, and the reader
  // recovers by reading the header again.
  const std::string plain = Pattern(200000, 4);
  const Digest a = key_.Address(plain);
  ASSERT_TRUE(mem_->Put(kVol, a, key_.Seal(a, plain)).ok());
  auto reader = Reader(true);
  auto first = reader->Read(a, 0, 10);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(mem_->Delete(kVol, a).ok());
  ASSERT_TRUE(mem_->Put(kVol, a, key_.Seal(a, plain)).ok());
  auto other = reader->Read(a, 150000, 10);
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->view, plain.substr(150000, 10));
}

}  // namespace
}  // namespace cairn::mounter
