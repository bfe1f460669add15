#include "core/testing/mem_stores.h"
#include "core/blob_store.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/crypto.h"
#include "core/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

using ::cairn::testing::TempDir;
using namespace std::chrono_literals;

constexpr char kVol[] = "vo-test1";
constexpr char kVol2[] = "vo-test2";

Digest AddressOf(std::string_view content) { return Sha256(content); }

std::string Content(int i, size_t size) {
  std::string s(size, '\0');
  for (size_t j = 0; j < size; ++j) s[j] = static_cast<char>((i * 7919 + j * 31) & 0xff);
  return s;
}

// Runs every contract test against both implementations.
class BlobStoreTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (GetParam()) {
      auto s = OpenLocalBlobStore(dir_.path() / "blobs");
      ASSERT_TRUE(s.ok()) << s.status();
      store_ = *std::move(s);
    } else {
      store_ = NewMemBlobStore();
    }
  }

  std::map<Digest, BlobStore::BlobInfo> ListAll(std::string_view vol) {
    std::map<Digest, BlobStore::BlobInfo> out;
    absl::Status st = store_->List(vol, [&](const BlobStore::BlobInfo& info) {
      EXPECT_TRUE(out.emplace(info.address, info).second) << "listed twice";
    });
    EXPECT_TRUE(st.ok()) << st;
    return out;
  }

  TempDir dir_;
  std::unique_ptr<BlobStore> store_;
};

TEST_P(BlobStoreTest, PutGetRoundTrip) {
  for (size_t size : {size_t{0}, size_t{1}, size_t{1000}, size_t{1} << 20}) {
    std::string data = Content(static_cast<int>(size), size);
    Digest a = AddressOf(data);
    ASSERT_TRUE(store_->Put(kVol, a, data).ok());
    auto got = store_->Get(kVol, a);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, data);
    EXPECT_TRUE(store_->Contains(kVol, a).value());
  }
}

TEST_P(BlobStoreTest, BatchStoresEveryBlobLikePut) {
  // Sizes around O_DIRECT's block and the 64 KiB cut-over, a 4 MiB chunk,
  // a duplicate, and one already present (touched, kept).
  std::vector<std::string> blobs;
  for (size_t size : {size_t{0}, size_t{100}, (size_t{64} << 10) - 1, size_t{64} << 10,
                      (size_t{64} << 10) + 1, (size_t{1} << 20) + 4095,
                      (size_t{4} << 20) + 28}) {
    blobs.push_back(Content(static_cast<int>(size % 251), size));
  }
  ASSERT_TRUE(store_->Put(kVol, AddressOf(blobs[1]), blobs[1]).ok());
  auto before = ListAll(kVol).at(AddressOf(blobs[1])).mtime;
  std::this_thread::sleep_for(20ms);
  std::unique_ptr<BlobStore::Batch> batch = store_->NewBatch(kVol);
  for (const std::string& b : blobs) ASSERT_TRUE(batch->Add(AddressOf(b), b).ok());
  ASSERT_TRUE(batch->Add(AddressOf(blobs[3]), blobs[3]).ok());
  ASSERT_TRUE(batch->Finish().ok());
  for (const std::string& b : blobs) {
    auto got = store_->Get(kVol, AddressOf(b));
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, b);
  }
  auto listed = ListAll(kVol);
  EXPECT_EQ(listed.size(), blobs.size());
  EXPECT_GT(listed.at(AddressOf(blobs[1])).mtime, before);
  EXPECT_EQ(listed.at(AddressOf(blobs.back())).size, blobs.back().size());
  EXPECT_FALSE(store_->NewBatch("../escape")->Add(AddressOf("x"), "x").ok());
}

TEST_P(BlobStoreTest, MissingIsNotFound) {
  Digest a = AddressOf("nothing");
  auto got = store_->Get(kVol, a);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound) << got.status();
  EXPECT_FALSE(store_->Contains(kVol, a).value());
  EXPECT_EQ(store_->Touch(kVol, a).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store_->Delete(kVol, a).ok());
  EXPECT_TRUE(ListAll(kVol).empty());
  EXPECT_TRUE(store_->DeleteVolume(kVol).ok());
}

TEST_P(BlobStoreTest, VolumesAreSeparate) {
  Digest a = AddressOf("x");
  ASSERT_TRUE(store_->Put(kVol, a, "x").ok());
  EXPECT_EQ(store_->Get(kVol2, a).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(ListAll(kVol2).empty());
}

TEST_P(BlobStoreTest, PutExistingKeepsContentAndRefreshesMtime) {
  std::string data = "first";
  Digest a = AddressOf(data);
  ASSERT_TRUE(store_->Put(kVol, a, data).ok());
  auto before = ListAll(kVol).at(a).mtime;
  std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(store_->Put(kVol, a, data).ok());
  auto after = ListAll(kVol).at(a).mtime;
  EXPECT_GT(after, before);
  EXPECT_EQ(store_->Get(kVol, a).value(), data);
  std::this_thread::sleep_for(20ms);
  ASSERT_TRUE(store_->Touch(kVol, a).ok());
  EXPECT_GT(ListAll(kVol).at(a).mtime, after);
  EXPECT_EQ(ListAll(kVol).size(), 1u);
}

TEST_P(BlobStoreTest, ListReportsEveryBlobWithSize) {
  std::map<Digest, size_t> want;
  for (int i = 0; i < 50; ++i) {
    std::string data = Content(i, 10 + i);
    Digest a = AddressOf(data);
    ASSERT_TRUE(store_->Put(kVol, a, data).ok());
    want[a] = data.size();
  }
  auto got = ListAll(kVol);
  ASSERT_EQ(got.size(), want.size());
  auto now = std::chrono::system_clock::now();
  for (const auto& [a, size] : want) {
    ASSERT_TRUE(got.count(a)) << a.ToHex();
    EXPECT_EQ(got[a].size, size);
    EXPECT_LT(std::chrono::abs(now - got[a].mtime), 60s);
  }
}

TEST_P(BlobStoreTest, DeleteAndDeleteVolume) {
  Digest a = AddressOf("a"), b = AddressOf("b");
  ASSERT_TRUE(store_->Put(kVol, a, "a").ok());
  ASSERT_TRUE(store_->Put(kVol, b, "b").ok());
  ASSERT_TRUE(store_->Put(kVol2, a, "a").ok());
  ASSERT_TRUE(store_->Delete(kVol, a).ok());
  EXPECT_FALSE(store_->Contains(kVol, a).value());
  EXPECT_TRUE(store_->Contains(kVol, b).value());
  EXPECT_TRUE(store_->Delete(kVol, a).ok());  // again: missing is OK

  auto vols = store_->ListVolumes();
  ASSERT_TRUE(vols.ok());
  EXPECT_EQ(*vols, (std::vector<std::string>{kVol, kVol2}));

  ASSERT_TRUE(store_->DeleteVolume(kVol).ok());
  EXPECT_FALSE(store_->Contains(kVol, b).value());
  EXPECT_TRUE(ListAll(kVol).empty());
  EXPECT_TRUE(store_->Contains(kVol2, a).value());
  EXPECT_EQ(store_->ListVolumes().value(), (std::vector<std::string>{kVol2}));
  EXPECT_TRUE(store_->DeleteVolume(kVol).ok());  // again
}

TEST_P(BlobStoreTest, RejectsBadVolumeIds) {
  Digest a = AddressOf("a");
  for (std::string_view bad : {"", "..", "../vo-x", "vo-a/../../etc", "vo-", "vo-a/b", "x",
                               "/abs", "vo-a.b"}) {
    EXPECT_EQ(store_->Put(bad, a, "a").code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(store_->Get(bad, a).status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(store_->Contains(bad, a).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->Touch(bad, a).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->Delete(bad, a).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->DeleteVolume(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(store_->List(bad, [](const BlobStore::BlobInfo&) {}).code(),
              absl::StatusCode::kInvalidArgument);
  }
  EXPECT_TRUE(store_->ListVolumes().value().empty());
}

TEST_P(BlobStoreTest, ConcurrentThreads) {
  constexpr int kThreads = 4, kBlobs = 40;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kBlobs; ++i) {
        // Half shared between threads, half private.
        std::string data = Content(i % 2 ? i : 1000 * t + i, 2000 + i);
        EXPECT_TRUE(store_->Put(kVol, AddressOf(data), data).ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  auto all = ListAll(kVol);
  EXPECT_EQ(all.size(), static_cast<size_t>(kBlobs / 2 + kThreads * kBlobs / 2));
  for (const auto& [a, info] : all) {
    auto data = store_->Get(kVol, a);
    ASSERT_TRUE(data.ok());
    EXPECT_EQ(AddressOf(*data), a);
  }
}

INSTANTIATE_TEST_SUITE_P(Impls, BlobStoreTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "Local" : "Mem"; });

class LocalBlobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_.path() / "blobs";
    auto s = OpenLocalBlobStore(root_);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }
  TempDir dir_;
  std::filesystem::path root_;
  std::unique_ptr<BlobStore> store_;
};

TEST_F(LocalBlobStoreTest, Layout) {
  Digest a = AddressOf("layout");
  ASSERT_TRUE(store_->Put(kVol, a, "layout").ok());
  std::string hex = a.ToHex();
  auto path = root_ / kVol / hex.substr(0, 2) / hex.substr(2, 2) / hex;
  ASSERT_TRUE(std::filesystem::is_regular_file(path)) << path;
  EXPECT_EQ(std::filesystem::file_size(path), 6u);
  // Nothing else in the shard: the temporary was renamed away.
  int n = 0;
  for (auto& e : std::filesystem::directory_iterator(path.parent_path())) {
    (void)e;
    ++n;
  }
  EXPECT_EQ(n, 1);
}

TEST_F(LocalBlobStoreTest, BatchLeavesNoTemporaries) {
  std::string big = Content(7, (size_t{4} << 20) + 28);
  std::string small = "small";
  auto batch = store_->NewBatch(kVol);
  ASSERT_TRUE(batch->Add(AddressOf(big), big).ok());
  ASSERT_TRUE(batch->Add(AddressOf(small), small).ok());
  ASSERT_TRUE(batch->Finish().ok());
  size_t files = 0;
  for (auto& e : std::filesystem::recursive_directory_iterator(root_)) {
    if (!e.is_regular_file()) continue;
    ++files;
    EXPECT_NE(e.path().filename().string()[0], '.') << e.path();
  }
  EXPECT_EQ(files, 2u);
  std::string hex = AddressOf(big).ToHex();
  EXPECT_EQ(std::filesystem::file_size(root_ / kVol / hex.substr(0, 2) / hex.substr(2, 2) / hex),
            big.size());
}

TEST_F(LocalBlobStoreTest, ListSkipsTemporariesAndStrays) {
  Digest a = AddressOf("real");
  ASSERT_TRUE(store_->Put(kVol, a, "real").ok());
  std::string hex = a.ToHex();
  auto shard = root_ / kVol / hex.substr(0, 2) / hex.substr(2, 2);
  // A writer that crashed mid-Put, a file in the wrong shard, junk.
  std::ofstream(shard / (".tmp." + hex.substr(0, 16) + ".123.abcd")) << "partial";
  Digest b = AddressOf("misplaced");
  std::ofstream(shard / b.ToHex()) << "misplaced";
  std::ofstream(shard / "README") << "junk";
  std::filesystem::create_directories(root_ / kVol / "zz" / "yy");
  std::ofstream(root_ / kVol / "zz" / "yy" / hex) << "junk";
  std::vector<Digest> listed;
  ASSERT_TRUE(store_->List(kVol, [&](const BlobStore::BlobInfo& i) {
    listed.push_back(i.address);
  }).ok());
  EXPECT_EQ(listed, std::vector<Digest>{a});
}

TEST_F(LocalBlobStoreTest, ListVolumesIgnoresStrayEntries) {
  ASSERT_TRUE(store_->Put(kVol, AddressOf("a"), "a").ok());
  std::filesystem::create_directories(root_ / "lost+found");
  std::ofstream(root_ / "vo-file") << "not a dir";
  EXPECT_EQ(store_->ListVolumes().value(), std::vector<std::string>{kVol});
}

TEST_F(LocalBlobStoreTest, ReopenSeesBlobs) {
  Digest a = AddressOf("persist");
  ASSERT_TRUE(store_->Put(kVol, a, "persist").ok());
  store_.reset();
  auto s = OpenLocalBlobStore(root_);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ((*s)->Get(kVol, a).value(), "persist");
}

TEST_F(LocalBlobStoreTest, RootMustBeADirectory) {
  std::ofstream(dir_.path() / "file") << "x";
  EXPECT_FALSE(OpenLocalBlobStore(dir_.path() / "file").ok());
}

// Several processes write overlapping sets of blobs into one root at once:
// the same addresses (racing renames and shard mkdirs) and distinct ones.
// Afterwards every blob must read back intact and nothing else be listed.
TEST_F(LocalBlobStoreTest, ForkedWritersSameAndDifferentAddresses) {
  constexpr int kProcs = 6, kShared = 60, kPrivate = 30;
  auto content = [](int proc, int i) {
    // Shared blobs have the same content in every process; ~64 KiB each
    // so writes take long enough to overlap.
    return proc < 0 ? Content(i, 65536 + i) : Content(100000 * (proc + 1) + i, 3000 + i);
  };
  std::vector<pid_t> pids;
  for (int p = 0; p < kProcs; ++p) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // Own store object, as a separate process would have.
      auto s = OpenLocalBlobStore(root_);
      if (!s.ok()) ::_exit(2);
      for (int i = 0; i < kShared + kPrivate; ++i) {
        // Interleave, each process starting at a different point.
        int j = (i + p * 7) % (kShared + kPrivate);
        std::string data = j < kShared ? content(-1, j) : content(p, j);
        if (!(*s)->Put(kVol, AddressOf(data), data).ok()) ::_exit(3);
      }
      ::_exit(0);
    }
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  }
  std::set<Digest> want;
  for (int j = 0; j < kShared; ++j) want.insert(AddressOf(content(-1, j)));
  for (int p = 0; p < kProcs; ++p) {
    for (int j = kShared; j < kShared + kPrivate; ++j) want.insert(AddressOf(content(p, j)));
  }
  std::set<Digest> listed;
  ASSERT_TRUE(store_->List(kVol, [&](const BlobStore::BlobInfo& i) {
    listed.insert(i.address);
  }).ok());
  EXPECT_EQ(listed, want);
  for (const Digest& a : want) {
    auto data = store_->Get(kVol, a);
    ASSERT_TRUE(data.ok()) << data.status();
    EXPECT_EQ(AddressOf(*data), a) << "torn or mixed blob " << a.ToHex();
  }
  // No temporaries anywhere.
  for (auto& e : std::filesystem::recursive_directory_iterator(root_)) {
    EXPECT_NE(e.path().filename().string()[0], '.') << e.path();
  }
}

// Readers in other processes never see a partial blob while writers race.
TEST_F(LocalBlobStoreTest, ForkedReaderNeverSeesPartialBlob) {
  std::string data = Content(42, 1 << 20);
  Digest a = AddressOf(data);
  pid_t reader = ::fork();
  ASSERT_GE(reader, 0);
  if (reader == 0) {
    auto s = OpenLocalBlobStore(root_);
    if (!s.ok()) ::_exit(2);
    auto deadline = std::chrono::steady_clock::now() + 3s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto got = (*s)->Get(kVol, a);
      if (got.ok()) {
        if (*got != data) ::_exit(4);
        ::_exit(0);
      }
      if (!absl::IsNotFound(got.status())) ::_exit(5);
    }
    ::_exit(6);
  }
  std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(store_->Put(kVol, a, data).ok());
  int status = 0;
  ASSERT_EQ(::waitpid(reader, &status, 0), reader);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST(MemBlobStoreTest, ListCallbackMayCallBack) {
  auto store = NewMemBlobStore();
  for (int i = 0; i < 5; ++i) {
    std::string d = Content(i, 10);
    ASSERT_TRUE(store->Put(kVol, AddressOf(d), d).ok());
  }
  // GC deletes while listing; must not deadlock.
  ASSERT_TRUE(store->List(kVol, [&](const BlobStore::BlobInfo& i) {
    EXPECT_TRUE(store->Delete(kVol, i.address).ok());
  }).ok());
  int n = 0;
  ASSERT_TRUE(store->List(kVol, [&](const BlobStore::BlobInfo&) { ++n; }).ok());
  EXPECT_EQ(n, 0);
}

}  // namespace
}  // namespace cairn
