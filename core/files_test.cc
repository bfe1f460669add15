// Sparse files (D28): the hole list's stored form, lseek answers, the
// layout check, reads of holes, and a local file's holes.
#include "core/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "core/crypto.h"
#include "core/status.h"
#include "core/testing/counting_blob_store.h"
#include "core/testing/mem_stores.h"
#include "core/testing/temp_dir.h"
#include "core/tree.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t K = kHoleBlock;

TEST(HolesTest, NormalizeShrinksToBlocksMergesAndRoundsTheEnd) {
  const uint64_t size = 10 * K + 1;
  EXPECT_EQ(NormalizeHoles({{100, 3 * K}, {3 * K, K}, {6 * K, 100 * K}}, size),
            (std::vector<Extent>{{K, 3 * K}, {6 * K, 5 * K}}));  // end: size rounded up
  EXPECT_EQ(NormalizeHoles({{10, 100}}, size), std::vector<Extent>());  // no whole block
  EXPECT_EQ(NormalizeHoles({{0, 2 * K}}, kInlineMax), std::vector<Extent>());  // inline: none
}

TEST(HolesTest, SeekDataAndHoleAnswerAsLseek) {
  const uint64_t size = 8 * K + 1;
  const std::vector<Extent> holes = {{0, 2 * K}, {4 * K, 4 * K}};
  EXPECT_EQ(*SeekData(holes, size, 0), 2 * K);
  EXPECT_EQ(*SeekHole(holes, size, 0), 0u);
  EXPECT_EQ(*SeekHole(holes, size, 2 * K + 5), 4 * K);
  EXPECT_EQ(*SeekData(holes, size, 5 * K), 8 * K);  // the end of the hole
  EXPECT_EQ(*SeekHole(holes, size, 8 * K), size);  // the end is a hole
  absl::StatusOr<uint64_t> past = SeekData(holes, size, size);
  EXPECT_EQ(StatusToErrno(past.status()), ENXIO);
  EXPECT_EQ(StatusToErrno(SeekHole(holes, size, size).status()), ENXIO);
  // No data after the offset: ENXIO.
  EXPECT_EQ(StatusToErrno(SeekData({{0, 3 * K}}, 2 * K + 1, 10).status()), ENXIO);
  EXPECT_EQ(AllocatedBytes(holes, size), 2 * K + K);  // blocks 2, 3 and 8
  EXPECT_EQ(DataRuns(holes, 0, size), (std::vector<Extent>{{2 * K, 2 * K}, {8 * K, 1}}));
  EXPECT_EQ(DataRuns(holes, 3 * K, 5 * K), (std::vector<Extent>{{3 * K, K}}));
  EXPECT_EQ(DataRuns(holes, 5 * K, 6 * K), std::vector<Extent>());
  EXPECT_EQ(AllocatedBytes({}, 1), K);
  EXPECT_EQ(AllocatedBytes({}, 0), 0u);
}

objects::Entry SparseEntry() {
  // 2 chunks and a byte: chunk 0 all hole, chunk 1 half, chunk 2 data.
  objects::Entry e;
  e.set_type(objects::FILE);
  e.set_size(2 * kChunkSize + 1);
  e.add_chunks("");
  e.add_chunks(std::string(32, 'a'));
  e.add_chunks(std::string(32, 'b'));
  SetHoles(e, {{0, kChunkSize + kChunkSize / 2}});
  return e;
}

TEST(HolesTest, LayoutCheckTiesEmptyAddressesToHoles) {
  objects::Entry e = SparseEntry();
  EXPECT_TRUE(CheckFileLayout(e, "f").ok());
  objects::Entry missing = e;
  missing.set_chunks(0, std::string(32, 'c'));  // a hole chunk with an address
  EXPECT_THAT(CheckFileLayout(missing, "f").message(), HasSubstr("chunk 0"));
  objects::Entry empty = e;
  empty.set_chunks(1, "");  // data without an address
  EXPECT_THAT(CheckFileLayout(empty, "f").message(), HasSubstr("chunk 1"));
  objects::Entry unaligned = e;
  unaligned.set_holes(1, 100);
  EXPECT_EQ(CheckFileLayout(unaligned, "f").code(), absl::StatusCode::kInvalidArgument);
  objects::Entry past = e;
  past.set_holes(1, 3 * kChunkSize);
  EXPECT_EQ(CheckFileLayout(past, "f").code(), absl::StatusCode::kInvalidArgument);
  objects::Entry odd = e;
  odd.add_holes(4096);
  EXPECT_THAT(CheckFileLayout(odd, "f").message(), HasSubstr("odd"));
  objects::Entry inline_file;
  inline_file.set_type(objects::FILE);
  inline_file.set_size(2);
  inline_file.set_inline_data("ab");
  inline_file.add_holes(0);
  inline_file.add_holes(4096);
  EXPECT_THAT(CheckFileLayout(inline_file, "f").message(), HasSubstr("inline"));
}

TEST(HolesTest, ReadingAHoleFetchesNothing) {
  std::unique_ptr<BlobStore> mem = NewMemBlobStore();
  testing::CountingBlobStore blobs(mem.get());
  const std::string volume = "vo-test";
  ObjectStore objects(&blobs, volume, DataKey::Generate());
  // Chunk 1 holds zeros in its first half (the hole) and 'd' after.
  std::string chunk1(kChunkSize, 'd');
  std::fill(chunk1.begin(), chunk1.begin() + kChunkSize / 2, '\0');
  objects::Entry e = SparseEntry();
  e.set_chunks(1, objects.PutChunk(chunk1)->RawString());
  e.set_chunks(2, objects.PutChunk("z")->RawString());
  ASSERT_TRUE(CheckFileLayout(e, "f").ok());
  blobs.gets = 0;
  EXPECT_EQ(*ReadFileRange(objects, e, 100, 10), std::string(10, '\0'));
  EXPECT_EQ(*ReadFileRange(objects, e, kChunkSize + 5, 10), std::string(10, '\0'));
  EXPECT_EQ(blobs.gets.load() + blobs.range_gets.load(), 0u);
  EXPECT_EQ(*ReadFileRange(objects, e, kChunkSize + kChunkSize / 2 - 1, 2), std::string("\0d", 2));
  EXPECT_EQ(*ReadFileRange(objects, e, 2 * kChunkSize, 5), "z");
  // A directory holding it is format 3; without holes it stays as before.
  objects::Directory dir;
  *dir.add_entries() = e;
  dir.mutable_entries(0)->set_name("s");
  EXPECT_EQ((*objects.GetDirectory(*objects.PutDirectory(dir)))->format(), 3u);
  dir.mutable_entries(0)->clear_holes();
  EXPECT_EQ((*objects.GetDirectory(*objects.PutDirectory(dir)))->format(), 0u);
}

TEST(HolesTest, FileHolesReadsALocalSparseFile) {
  cairn::testing::TempDir dir;
  std::string path = (dir.path() / "f").string();
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, "x", 1, 1 << 20), 1);
  ASSERT_EQ(::pwrite(fd, "y", 1, 10), 1);
  absl::StatusOr<std::vector<Extent>> holes = FileHoles(fd, 0, (1 << 20) + 1);
  ::close(fd);
  ASSERT_TRUE(holes.ok()) << holes.status();
  if (holes->empty()) GTEST_SKIP() << "this file system does not report holes";
  EXPECT_EQ(NormalizeHoles(*holes, (1 << 20) + 1), (std::vector<Extent>{{K, (1 << 20) - K}}));
}

}  // namespace
}  // namespace cairn
