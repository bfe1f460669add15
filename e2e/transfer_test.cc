// Bulk transfers through the real processes: a ≥1 GiB file and a
// 10,000-file tree round-tripped with checksums, and a server SIGKILLed in
// the middle of an upload (nothing partial visible, fsck intact).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/testing/temp_dir.h"
#include "e2e/harness.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn::e2e {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

TEST(TransferTest, OneGibFileRoundTripsWithChecksum) {
  cairn::testing::TempDir dir;
  auto server = ServerProcess::Start({.data_dir = dir.path() / "data"});
  ASSERT_TRUE(server.ok()) << server.status();
  constexpr uint64_t kSize = (1ull << 30) + 12345;  // not a multiple of the chunk size
  const fs::path src = dir.path() / "big.bin";
  ASSERT_TRUE(WriteRandomFile(src, kSize, 42).ok());
  absl::StatusOr<std::string> want = Sha256File(src);
  ASSERT_TRUE(want.ok());

  ASSERT_EQ(RunCli(**server, {"volume", "create", "big"}).exit_code, 0);
  auto start = std::chrono::steady_clock::now();
  RunResult put = RunCli(**server, {"volume", "put", "big", src.string(), "/models/"});
  ASSERT_EQ(put.exit_code, 0) << Describe(put);
  std::printf("put 1 GiB: %.1fs\n", Seconds(start));
  RunResult ls = RunCli(**server, {"volume", "ls", "big", "models", "--json"});
  EXPECT_THAT(ls.out, HasSubstr(absl::StrCat("\"size\":", kSize)));

  const fs::path back = dir.path() / "back.bin";
  start = std::chrono::steady_clock::now();
  RunResult get = RunCli(**server, {"volume", "get", "big", "models/big.bin", back.string()});
  ASSERT_EQ(get.exit_code, 0) << Describe(get);
  std::printf("get 1 GiB: %.1fs\n", Seconds(start));
  EXPECT_EQ(fs::file_size(back), kSize);
  EXPECT_EQ(Sha256File(back).value_or("?"), *want);
  fs::remove(back);

  // Streamed to stdout (in order, several chunks in flight).
  const fs::path streamed = dir.path() / "streamed.bin";
  RunResult cat = RunCli(**server, {"volume", "get", "big", "models/big.bin", "-"},
                         {.stdout_file = streamed});
  ASSERT_EQ(cat.exit_code, 0) << Describe(cat);
  EXPECT_EQ(Sha256File(streamed).value_or("?"), *want);
}

TEST(TransferTest, TenThousandFileTreeRoundTrips) {
  cairn::testing::TempDir dir;
  auto server = ServerProcess::Start({.data_dir = dir.path() / "data"});
  ASSERT_TRUE(server.ok()) << server.status();
  const fs::path src = dir.path() / "tree";
  std::map<std::string, std::string> files;
  for (int i = 0; i < 10000; ++i) {
    std::string rel = absl::StrCat("d", i % 100, "/sub", i % 7, "/f", i, ".txt");
    // Mostly inline-sized, some larger than the inline limit (chunked).
    std::string content = absl::StrCat("file ", i, "\n");
    if (i % 500 == 0) content += std::string(5000 + i, static_cast<char>('a' + i % 26));
    fs::create_directories((src / rel).parent_path());
    WriteWholeFile(src / rel, content);
    files[rel] = content;
  }
  ASSERT_EQ(RunCli(**server, {"volume", "create", "many"}).exit_code, 0);
  auto start = std::chrono::steady_clock::now();
  RunResult put = RunCli(**server, {"volume", "put", "many", src.string(), "/"});
  ASSERT_EQ(put.exit_code, 0) << Describe(put);
  std::printf("put 10,000 files: %.1fs\n", Seconds(start));

  RunResult ls = RunCli(**server, {"volume", "ls", "many", "tree/d42/sub0"});
  ASSERT_EQ(ls.exit_code, 0) << Describe(ls);
  std::vector<std::string> lines = absl::StrSplit(ls.out, '\n', absl::SkipEmpty());
  size_t expected = 0;
  for (int i = 42; i < 10000; i += 100) expected += (i % 7 == 0);
  EXPECT_EQ(lines.size(), expected);

  const fs::path back = dir.path() / "back";
  fs::create_directories(back);
  start = std::chrono::steady_clock::now();
  RunResult get = RunCli(**server, {"volume", "get", "many", "tree", back.string()});
  ASSERT_EQ(get.exit_code, 0) << Describe(get);
  std::printf("get 10,000 files: %.1fs\n", Seconds(start));
  size_t seen = 0;
  for (const auto& e : fs::recursive_directory_iterator(back / "tree")) {
    if (!e.is_regular_file()) continue;
    ++seen;
    std::string rel = e.path().lexically_relative(back / "tree").generic_string();
    auto it = files.find(rel);
    ASSERT_NE(it, files.end()) << rel;
    ASSERT_EQ(ReadWholeFile(e.path()), it->second) << rel;
  }
  EXPECT_EQ(seen, files.size());
}

// Counts blob files under the data directory (uploads in progress land here).
size_t CountBlobs(const fs::path& data) {
  size_t n = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(data / "blobs", ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->is_regular_file(ec)) ++n;
  }
  return n;
}

// Eight `cairn volume put` at once into one volume, of overlapping files
// and paths, with no crash: the data directory must check clean (no
// orphans), and every put must be visible.
TEST(TransferTest, ConcurrentPutsLeaveFsckClean) {
  cairn::testing::TempDir dir;
  const fs::path data = dir.path() / "data";
  auto server = ServerProcess::Start({.data_dir = data});
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_EQ(RunCli(**server, {"volume", "create", "busy"}).exit_code, 0);
  constexpr int kPuts = 8;
  for (int i = 0; i < kPuts; ++i) {
    const fs::path tree = dir.path() / absl::StrCat("tree", i);
    fs::create_directories(tree / "sub");
    WriteWholeFile(tree / "same.txt", "identical in every put\n");
    WriteWholeFile(tree / absl::StrCat("own", i, ".txt"), absl::StrCat("put ", i, "\n"));
    ASSERT_TRUE(WriteRandomFile(tree / "sub" / "pair.bin", (5 << 20) + 17, 100 + i / 2).ok());
  }
  std::vector<std::unique_ptr<Child>> puts;
  for (int i = 0; i < kPuts; ++i) {
    // Half land in one shared directory, half in their own.
    const std::string dest = i % 2 == 0 ? "/shared/" : absl::StrCat("/p", i, "/");
    auto put = Child::Spawn({CairnBinary().string(), "--server", (*server)->address(), "volume",
                             "put", "busy", (dir.path() / absl::StrCat("tree", i)).string(), dest},
                            {}, dir.path() / absl::StrCat("put", i, ".log"));
    ASSERT_TRUE(put.ok()) << put.status();
    puts.push_back(*std::move(put));
  }
  for (int i = 0; i < kPuts; ++i) {
    EXPECT_EQ(puts[i]->Wait(std::chrono::seconds(120)), 0)
        << ReadWholeFile(dir.path() / absl::StrCat("put", i, ".log"));
  }
  RunResult ls = RunCli(**server, {"volume", "ls", "busy", "p7/tree7"});
  EXPECT_EQ(ls.exit_code, 0) << Describe(ls);
  EXPECT_THAT(ls.out, HasSubstr("own7.txt"));
  EXPECT_EQ((*server)->Stop(SIGTERM), 0);
  RunResult fsck = RunProcess({CairnBinary().string(), "fsck", "--data", data.string()});
  EXPECT_EQ(fsck.exit_code, 0) << Describe(fsck);
}

TEST(TransferTest, ServerKilledMidUploadLeavesNothingVisibleAndFsckIntact) {
  cairn::testing::TempDir dir;
  const fs::path data = dir.path() / "data";
  auto server = ServerProcess::Start({.data_dir = data});
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_EQ(RunCli(**server, {"volume", "create", "crash"}).exit_code, 0);
  // Something committed before the crash must survive it.
  WriteWholeFile(dir.path() / "before.txt", "committed before the crash\n");
  ASSERT_EQ(RunCli(**server, {"volume", "put", "crash", (dir.path() / "before.txt").string()})
                .exit_code,
            0);
  const fs::path big = dir.path() / "big.bin";
  ASSERT_TRUE(WriteRandomFile(big, 768ull << 20, 7).ok());
  fs::create_directories(dir.path() / "tree");
  for (int i = 0; i < 50; ++i) WriteWholeFile(dir.path() / "tree" / absl::StrCat("f", i), "x");
  fs::copy_file(big, dir.path() / "tree" / "big.bin");

  const size_t blobs_before = CountBlobs(data);
  auto put = Child::Spawn({CairnBinary().string(), "--server", (*server)->address(), "volume",
                           "put", "crash", (dir.path() / "tree").string(), "/upload/"},
                          {}, dir.path() / "put.log");
  ASSERT_TRUE(put.ok());
  // Wait until the upload is under way (some chunks stored), then kill.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (CountBlobs(data) < blobs_before + 8 && std::chrono::steady_clock::now() < deadline &&
         !(*put)->Exited()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_FALSE((*put)->Exited()) << "upload finished before the kill: "
                                 << ReadWholeFile(dir.path() / "put.log");
  EXPECT_EQ((*server)->Stop(SIGKILL), 128 + SIGKILL);
  const int put_exit = (*put)->Wait(std::chrono::seconds(60));
  EXPECT_EQ(put_exit, 1) << ReadWholeFile(dir.path() / "put.log");
  EXPECT_THAT(ReadWholeFile(dir.path() / "put.log"), HasSubstr("cairn: error:"));
  EXPECT_GT(CountBlobs(data), blobs_before);  // orphans were left

  // Restarted: the upload is invisible, the earlier commit intact.
  server = ServerProcess::Start({.data_dir = data});
  ASSERT_TRUE(server.ok()) << server.status();
  RunResult ls = RunCli(**server, {"volume", "ls", "crash"});
  EXPECT_EQ(ls.exit_code, 0) << Describe(ls);
  EXPECT_EQ(ls.out, "before.txt\n");
  RunResult gone = RunCli(**server, {"volume", "ls", "crash", "upload"});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_EQ(RunCli(**server, {"volume", "get", "crash", "before.txt", "-"}).out,
            "committed before the crash\n");
  EXPECT_EQ((*server)->Stop(SIGTERM), 0);

  RunResult fsck = RunProcess({CairnBinary().string(), "fsck", "--data", data.string()});
  EXPECT_NE(fsck.exit_code, 4) << Describe(fsck);
  EXPECT_TRUE(fsck.exit_code == 0 || fsck.exit_code == 3) << Describe(fsck);

  // Garbage collection reclaims the orphans: with no grace period one pass
  // removes them, and fsck is then clean.
  server = ServerProcess::Start(
      {.data_dir = data, .extra_args = {"--gc-interval", "1", "--gc-grace", "0"}});
  ASSERT_TRUE(server.ok()) << server.status();
  const auto gc_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < gc_deadline &&
         (*server)->HttpGet("/metrics").second.find("cairn_gc_runs_total 0\n") !=
             std::string::npos) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::string metrics = (*server)->HttpGet("/metrics").second;
  EXPECT_THAT(metrics, ::testing::Not(HasSubstr("cairn_gc_blobs_deleted_total 0\n")));
  EXPECT_EQ((*server)->Stop(SIGTERM), 0);
  fsck = RunProcess({CairnBinary().string(), "fsck", "--data", data.string()});
  EXPECT_EQ(fsck.exit_code, 0) << Describe(fsck);

  // Retrying the put completes (chunks already stored are not re-sent).
  server = ServerProcess::Start({.data_dir = data});
  ASSERT_TRUE(server.ok()) << server.status();
  RunResult retry = RunCli(**server, {"volume", "put", "crash", (dir.path() / "tree").string(),
                                      "/upload/"});
  EXPECT_EQ(retry.exit_code, 0) << Describe(retry);
  RunResult listed = RunCli(**server, {"volume", "ls", "crash", "upload/tree"});
  std::vector<std::string> lines = absl::StrSplit(listed.out, '\n', absl::SkipEmpty());
  EXPECT_EQ(lines.size(), 51u);
  EXPECT_EQ((*server)->Stop(SIGTERM), 0);
  fsck = RunProcess({CairnBinary().string(), "fsck", "--data", data.string()});
  EXPECT_TRUE(fsck.exit_code == 0 || fsck.exit_code == 3) << Describe(fsck);
}

}  // namespace
}  // namespace cairn::e2e
