// DiskCache: read-through and write-through over a remote BlobStore, shared
// layout on disk, LRU eviction under the size bound.
#include "mounter/disk_cache.h"

#include <chrono>
#include <filesystem>
#include <thread>

#include "core/testing/mem_stores.h"
#include "core/crypto.h"
#include "core/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace cairn::mounter {
namespace {

namespace fs = std::filesystem;

// The cache evicts in the background while this walks, so a file may vanish
// between listing and sizing it: it counts as gone.
uint64_t CachedBytes(const fs::path& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir / "blobs", ec), end; !ec && it != end;
       it.increment(ec)) {
    std::error_code size_ec;
    const uintmax_t size = it->is_regular_file(size_ec) ? it->file_size(size_ec) : 0;
    if (!size_ec) total += size;
  }
  return total;
}

TEST(DiskCacheTest, ReadsThroughAndWritesThrough) {
  cairn::testing::TempDir dir;
  auto remote = NewMemBlobStore();
  Digest a = Sha256("a"), b = Sha256("b");
  ASSERT_TRUE(remote->Put("vo-x", a, "sealed a").ok());
  auto cache = DiskCache::Open(remote.get(), dir.path(), 0);
  ASSERT_TRUE(cache.ok()) << cache.status();
  EXPECT_EQ(*(*cache)->Get("vo-x", a), "sealed a");
  EXPECT_EQ((*cache)->misses(), 1u);
  // Served locally now, even if the remote loses it.
  ASSERT_TRUE(remote->Delete("vo-x", a).ok());
  EXPECT_EQ(*(*cache)->Get("vo-x", a), "sealed a");
  EXPECT_EQ((*cache)->hits(), 1u);
  // Put goes to both; Contains asks the remote.
  ASSERT_TRUE((*cache)->Put("vo-x", b, "sealed b").ok());
  EXPECT_TRUE(*remote->Contains("vo-x", b));
  EXPECT_FALSE(*(*cache)->Contains("vo-x", a));
  (*cache)->Evict("vo-x", b);
  EXPECT_EQ(*(*cache)->Get("vo-x", b), "sealed b");  // refetched
  EXPECT_TRUE(absl::IsNotFound((*cache)->Get("vo-x", Sha256("c")).status()));
}

TEST(DiskCacheTest, GetRangeReadsTheLocalCopyElseTheRemote) {
  cairn::testing::TempDir dir;
  auto remote = NewMemBlobStore();
  std::string blob(200000, '\0');
  for (size_t i = 0; i < blob.size(); ++i) blob[i] = static_cast<char>(i % 241);
  Digest a = Sha256("a");
  ASSERT_TRUE(remote->Put("vo-x", a, blob).ok());
  auto cache = DiskCache::Open(remote.get(), dir.path(), 0);
  ASSERT_TRUE(cache.ok()) << cache.status();
  // Not cached: a range of the remote, and nothing stored locally.
  auto part = (*cache)->GetRange("vo-x", a, 70000, 1000);
  ASSERT_TRUE(part.ok()) << part.status();
  EXPECT_EQ(part->data, blob.substr(70000, 1000));
  EXPECT_EQ(part->total_size, blob.size());
  EXPECT_EQ((*cache)->misses(), 1u);
  (*cache)->Flush();
  EXPECT_EQ(CachedBytes(dir.path()), 0u);
  // Cached (a whole Get stored it): read locally, even if the remote loses it.
  ASSERT_TRUE((*cache)->Get("vo-x", a).ok());
  (*cache)->Flush();
  ASSERT_TRUE(remote->Delete("vo-x", a).ok());
  const uint64_t hits = (*cache)->hits();
  part = (*cache)->GetRange("vo-x", a, 199990, 100);
  ASSERT_TRUE(part.ok()) << part.status();
  EXPECT_EQ(part->data, blob.substr(199990));
  EXPECT_EQ(part->total_size, blob.size());
  EXPECT_EQ((*cache)->hits(), hits + 1);
  EXPECT_EQ((*cache)->GetRange("vo-x", a, blob.size() + 1, 1).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ((*cache)->GetRange("vo-x", Sha256("b"), 0, 1).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(DiskCacheTest, EvictsLeastRecentlyUsedUnderTheBound) {
  cairn::testing::TempDir dir;
  auto remote = NewMemBlobStore();
  auto cache = DiskCache::Open(remote.get(), dir.path(), 40 << 10);
  ASSERT_TRUE(cache.ok()) << cache.status();
  std::string blob(8 << 10, 'x');
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE((*cache)->Put("vo-x", Sha256(std::to_string(i)), blob).ok());
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (CachedBytes(dir.path()) > (40 << 10) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_LE(CachedBytes(dir.path()), 40u << 10);
  // Everything is still readable (from the remote where evicted).
  for (int i = 0; i < 20; ++i) {
    EXPECT_TRUE((*cache)->Get("vo-x", Sha256(std::to_string(i))).ok());
  }
}

TEST(DiskCacheTest, FetchedBlobsAreWrittenInTheBackgroundAndReadLocally) {
  cairn::testing::TempDir dir;
  auto remote = NewMemBlobStore();
  // Sizes around the 4 KiB blocks of the O_DIRECT paths, and a chunk-sized one.
  std::vector<std::string> blobs = {"x", std::string(4096, 'a'), std::string(4097, 'b'),
                                    std::string(8191, 'c'), std::string((4 << 20) + 28, 'd')};
  for (size_t i = 0; i < blobs.size(); ++i) {
    blobs[i][0] = static_cast<char>('0' + i);
    ASSERT_TRUE(remote->Put("vo-x", Sha256(std::to_string(i)), blobs[i]).ok());
  }
  auto cache = DiskCache::Open(remote.get(), dir.path(), 0);
  ASSERT_TRUE(cache.ok()) << cache.status();
  DiskCache::ReadBuffer buf;
  for (size_t i = 0; i < blobs.size(); ++i) {
    Digest a = Sha256(std::to_string(i));
    EXPECT_TRUE(absl::IsNotFound((*cache)->ReadLocal("vo-x", a, &buf)));
    EXPECT_EQ(*(*cache)->Get("vo-x", a), blobs[i]);
    // Served while queued or from the file, same bytes either way.
    ASSERT_TRUE((*cache)->ReadLocal("vo-x", a, &buf).ok());
    EXPECT_EQ(buf.view(), blobs[i]);
  }
  (*cache)->Flush();
  EXPECT_EQ(CachedBytes(dir.path()), [&] {
    uint64_t n = 0;
    for (const auto& b : blobs) n += b.size();
    return n;
  }());
  for (size_t i = 0; i < blobs.size(); ++i) {
    Digest a = Sha256(std::to_string(i));
    ASSERT_TRUE(remote->Delete("vo-x", a).ok());
    ASSERT_TRUE((*cache)->ReadLocal("vo-x", a, &buf).ok());
    EXPECT_EQ(buf.view(), blobs[i]);
    EXPECT_EQ(*(*cache)->Get("vo-x", a), blobs[i]);
  }
}

TEST(DiskCacheTest, EvictWinsOverAQueuedWrite) {
  cairn::testing::TempDir dir;
  auto remote = NewMemBlobStore();
  Digest a = Sha256("a");
  ASSERT_TRUE(remote->Put("vo-x", a, "sealed a").ok());
  auto cache = DiskCache::Open(remote.get(), dir.path(), 0);
  ASSERT_TRUE(cache.ok()) << cache.status();
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE((*cache)->Get("vo-x", a).ok());
    (*cache)->Evict("vo-x", a);
    (*cache)->Flush();
    DiskCache::ReadBuffer buf;
    EXPECT_TRUE(absl::IsNotFound((*cache)->ReadLocal("vo-x", a, &buf))) << i;
  }
}

}  // namespace
}  // namespace cairn::mounter
