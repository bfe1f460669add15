#include "core/testing/mem_stores.h"
#include "core/blob_store.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/blob_store_s3.h"
#include "core/crypto.h"
#include "core/testing/fault_env.h"
#include "core/testing/s3_server.h"
#include "core/testing/temp_dir.h"
#include "gmock/gmock.h"
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

// Runs every contract test against every implementation: the local
// directory, the in-memory fake, and S3 (a real versitygw, each test under
// its own key prefix).
enum class Impl { kLocal, kMem, kS3 };

class BlobStoreTest : public ::testing::TestWithParam<Impl> {
 protected:
  void SetUp() override {
    switch (GetParam()) {
      case Impl::kLocal: {
        auto s = OpenLocalBlobStore(dir_.path() / "blobs");
        ASSERT_TRUE(s.ok()) << s.status();
        store_ = *std::move(s);
        break;
      }
      case Impl::kMem:
        store_ = NewMemBlobStore();
        break;
      case Impl::kS3: {
        CAIRN_REQUIRE_S3(server);
        auto s = OpenS3BlobStore(server->Config(testing::S3TestServer::UniquePrefix()));
        ASSERT_TRUE(s.ok()) << s.status();
        store_ = *std::move(s);
        break;
      }
    }
  }

  // Long enough for a blob's mtime to move: S3's Last-Modified counts
  // whole seconds.
  std::chrono::milliseconds MtimeTick() const {
    return GetParam() == Impl::kS3 ? 1100ms : 20ms;
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
  std::this_thread::sleep_for(MtimeTick());
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

TEST_P(BlobStoreTest, GetRangeReadsPartsAndTellsTheSize) {
  std::string data = Content(7, 300000);
  Digest a = AddressOf(data);
  ASSERT_TRUE(store_->Put(kVol, a, data).ok());
  struct Case {
    uint64_t offset, length;
  };
  for (Case c : {Case{0, 32}, Case{65536 + 32, 65552}, Case{299990, 100}, Case{300000, 5},
                 Case{0, ~uint64_t{0}}, Case{123, 0}}) {
    auto got = store_->GetRange(kVol, a, c.offset, c.length);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->total_size, data.size());
    EXPECT_EQ(got->data, data.substr(c.offset, c.length)) << c.offset << "+" << c.length;
  }
  auto past = store_->GetRange(kVol, a, data.size() + 1, 1);
  EXPECT_EQ(past.status().code(), absl::StatusCode::kOutOfRange) << past.status();
  EXPECT_THAT(std::string(past.status().message()), ::testing::HasSubstr(a.ToHex()));
  EXPECT_EQ(store_->GetRange(kVol, AddressOf("absent"), 0, 1).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_FALSE(store_->GetRange("../escape", a, 0, 1).ok());
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
  std::this_thread::sleep_for(MtimeTick());
  ASSERT_TRUE(store_->Put(kVol, a, data).ok());
  auto after = ListAll(kVol).at(a).mtime;
  EXPECT_GT(after, before);
  EXPECT_EQ(store_->Get(kVol, a).value(), data);
  std::this_thread::sleep_for(MtimeTick());
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

INSTANTIATE_TEST_SUITE_P(Impls, BlobStoreTest,
                         ::testing::Values(Impl::kLocal, Impl::kMem, Impl::kS3),
                         [](const auto& info) {
                           switch (info.param) {
                             case Impl::kLocal: return "Local";
                             case Impl::kMem: return "Mem";
                             case Impl::kS3: return "S3";
                           }
                           return "?";
                         });

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

// What a write killed between creating and renaming its temporary leaves.
TEST_F(LocalBlobStoreTest, TemporariesAreListedAndDeletedApartFromBlobs) {
  Digest a = AddressOf("kept");
  ASSERT_TRUE(store_->Put(kVol, a, "kept").ok());
  const std::string hex = a.ToHex();
  const std::string name = hex.substr(0, 2) + "/" + hex.substr(2, 2) + "/.tmp." +
                           hex.substr(0, 16) + ".1.00";
  std::ofstream(root_ / kVol / name) << "half a blob";
  std::vector<BlobStore::TempInfo> temps;
  ASSERT_TRUE(store_->ListTemporaries(kVol, [&](const auto& t) { temps.push_back(t); }).ok());
  ASSERT_EQ(temps.size(), 1u);
  EXPECT_EQ(temps[0].name, name);
  EXPECT_EQ(temps[0].size, 11u);
  for (const char* bad : {"../x", "aa/bb/blob", "00/00/.tmp.x/../../y", ".tmp.x", ""}) {
    EXPECT_EQ(store_->DeleteTemporary(kVol, bad).code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
  ASSERT_TRUE(store_->DeleteTemporary(kVol, name).ok());
  ASSERT_TRUE(store_->DeleteTemporary(kVol, name).ok());  // missing is OK
  temps.clear();
  ASSERT_TRUE(store_->ListTemporaries(kVol, [&](const auto& t) { temps.push_back(t); }).ok());
  EXPECT_TRUE(temps.empty());
  EXPECT_EQ(store_->Get(kVol, a).value(), "kept");
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

namespace cairn {
namespace {

// Durability under a simulated power cut that keeps only what was synced
// (testing/fault_env.h), one path of the store at a time.
class PowerCutBlobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { store_ = OpenLocalBlobStore("/blobs", &env_).value(); }
  bool SurvivesCut(const Digest& address) {
    env_.DropUnsynced();
    return store_->Contains(kVol, address).value();
  }
  testing::FaultInjectionEnv env_{nullptr};
  std::unique_ptr<BlobStore> store_;
};

// A root left by a run that died before syncing its entry: opening the
// store must make it durable, not take its existence for durability.
TEST(PowerCutBlobRootTest, OpeningAnExistingRootMakesItsEntryDurable) {
  testing::FaultInjectionEnv env(nullptr);
  ASSERT_TRUE(env.CreateDir("/data").ok());
  ASSERT_TRUE(env.SyncDir("/").ok());
  ASSERT_TRUE(env.CreateDir("/data/blobs").ok());  // its entry never synced
  auto store = OpenLocalBlobStore("/data/blobs", &env);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Put(kVol, AddressOf("x"), "x").ok());
  env.DropUnsynced();
  EXPECT_TRUE(env.Stat("/data/blobs").ok());
  EXPECT_TRUE((*store)->Contains(kVol, AddressOf("x")).value());
}

TEST_F(PowerCutBlobStoreTest, PutIsDurableAtOnce) {
  ASSERT_TRUE(store_->Put(kVol, AddressOf("x"), "x").ok());
  EXPECT_TRUE(SurvivesCut(AddressOf("x")));
}

TEST_F(PowerCutBlobStoreTest, BatchIsDurableAtFinishOnly) {
  auto batch = store_->NewBatch(kVol);
  ASSERT_TRUE(batch->Add(AddressOf("x"), "x").ok());
  // Not yet acknowledged: a cut may lose it (the point of batching).
  EXPECT_GT(env_.CountPending().unsynced_dirs, 0);
  ASSERT_TRUE(batch->Finish().ok());
  EXPECT_EQ(env_.CountPending().unsynced_dirs, 0);
  EXPECT_TRUE(SurvivesCut(AddressOf("x")));
}

// A blob another writer's unfinished batch put in a fresh shard: whoever
// finds it present and lets a commit reference it must make the whole
// chain of directory entries durable, not only the leaf shard's.
TEST_F(PowerCutBlobStoreTest, TouchOfABlobInAnUnfinishedBatchIsDurable) {
  auto batch = store_->NewBatch(kVol);
  ASSERT_TRUE(batch->Add(AddressOf("x"), "x").ok());
  ASSERT_TRUE(store_->Touch(kVol, AddressOf("x")).ok());
  EXPECT_TRUE(SurvivesCut(AddressOf("x")));
}

TEST_F(PowerCutBlobStoreTest, PutOfABlobInAnUnfinishedBatchIsDurable) {
  auto batch = store_->NewBatch(kVol);
  ASSERT_TRUE(batch->Add(AddressOf("x"), "x").ok());
  ASSERT_TRUE(store_->Put(kVol, AddressOf("x"), "x").ok());
  EXPECT_TRUE(SurvivesCut(AddressOf("x")));
}

TEST_F(PowerCutBlobStoreTest, SecondBatchMeetingAnUnfinishedOnesBlobIsDurableAtFinish) {
  auto first = store_->NewBatch(kVol);
  ASSERT_TRUE(first->Add(AddressOf("x"), "x").ok());
  auto second = store_->NewBatch(kVol);
  ASSERT_TRUE(second->Add(AddressOf("x"), "x").ok());
  ASSERT_TRUE(second->Finish().ok());
  EXPECT_TRUE(SurvivesCut(AddressOf("x")));
}

}  // namespace
}  // namespace cairn

namespace cairn {
namespace {

// FaultInjectionEnv with a hook run before each rename of a temporary, at
// the moment a write is between its sync and its rename.
class RenameHookEnv final : public Env {
 public:
  std::function<void(const std::filesystem::path& from)> before_rename;

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::filesystem::path& p,
                                                                WriteOptions o) override {
    return base_.NewWritableFile(p, o);
  }
  absl::StatusOr<std::string> ReadFile(const std::filesystem::path& p) override {
    return base_.ReadFile(p);
  }
  absl::Status Rename(const std::filesystem::path& from, const std::filesystem::path& to) override {
    if (before_rename) {
      auto hook = std::move(before_rename);
      before_rename = nullptr;
      hook(from);
    }
    return base_.Rename(from, to);
  }
  absl::Status Link(const std::filesystem::path& from, const std::filesystem::path& to) override {
    return base_.Link(from, to);
  }
  absl::Status RemoveFile(const std::filesystem::path& p) override { return base_.RemoveFile(p); }
  absl::Status CreateDir(const std::filesystem::path& p) override { return base_.CreateDir(p); }
  absl::Status SyncDir(const std::filesystem::path& p) override { return base_.SyncDir(p); }
  absl::StatusOr<FileInfo> Stat(const std::filesystem::path& p) override { return base_.Stat(p); }
  absl::Status Touch(const std::filesystem::path& p) override { return base_.Touch(p); }
  absl::Status ListDir(const std::filesystem::path& d,
                       const std::function<void(const std::string&)>& fn) override {
    return base_.ListDir(d, fn);
  }
  absl::Status RemoveTree(const std::filesystem::path& p) override { return base_.RemoveTree(p); }

 private:
  testing::FaultInjectionEnv base_{nullptr};
};

// What GC does with no grace period, run while a Put is between writing its
// temporary and renaming it: the write in progress must not lose it.
TEST(BlobTemporaryTest, GcDuringAWriteLeavesItsTemporaryAlone) {
  RenameHookEnv env;
  auto store = OpenLocalBlobStore("/blobs", &env).value();
  ASSERT_TRUE(store->Put(kVol, AddressOf("first"), "first").ok());  // the shard chain exists
  int listed = 0;
  env.before_rename = [&](const std::filesystem::path&) {
    std::vector<std::string> names;
    ASSERT_TRUE(store
                    ->ListTemporaries(kVol, [&](const BlobStore::TempInfo& t) {
                      names.push_back(t.name);
                    })
                    .ok());
    listed = static_cast<int>(names.size());
    for (const std::string& n : names) store->DeleteTemporary(kVol, n).IgnoreError();
  };
  absl::Status put = store->Put(kVol, AddressOf("second"), "second");
  EXPECT_TRUE(put.ok()) << put;
  EXPECT_EQ(listed, 0);
  EXPECT_EQ(store->Get(kVol, AddressOf("second")).value(), "second");
}

// A temporary removed from under its writer (by hand; D5 rules out another
// process) is reported as a write to redo, naming the temporary.
TEST(BlobTemporaryTest, VanishedTemporaryIsAbortedNamingIt) {
  RenameHookEnv env;
  auto store = OpenLocalBlobStore("/blobs", &env).value();
  std::string removed;
  env.before_rename = [&](const std::filesystem::path& from) {
    removed = from.string();
    ASSERT_TRUE(env.RemoveFile(from).ok());
  };
  absl::Status put = store->Put(kVol, AddressOf("x"), "x");
  EXPECT_EQ(put.code(), absl::StatusCode::kAborted) << put;
  ASSERT_FALSE(removed.empty());
  EXPECT_NE(put.message().find(removed), std::string::npos) << put;
}

}  // namespace
}  // namespace cairn
