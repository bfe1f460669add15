#include "core/testing/mem_stores.h"
#include "core/meta_store.h"

#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/crypto.h"
#include "core/data_dir.h"
#include "core/files.h"
#include "core/fsck.h"
#include "core/testing/postgres_server.h"
#include "core/testing/temp_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

using ::cairn::testing::TempDir;

VolumeRecord Volume(std::string id, std::string ns, std::string name, int64_t created = 1) {
  VolumeRecord v;
  v.id = std::move(id);
  v.ns = std::move(ns);
  v.name = std::move(name);
  v.version = 2;
  v.created_at_ns = created;
  v.wrapped_key = std::string("wrapped\0key", 11);
  v.limits = DefaultLimits(2);
  return v;
}

SnapshotRecord Snap(const std::string& vol, uint64_t seq) {
  SnapshotRecord s;
  s.volume_id = vol;
  s.seq = seq;
  s.root = Sha256("root" + std::to_string(seq));
  s.parent_seq = seq == 0 ? 0 : seq - 1;
  s.created_at_ns = 1000 + static_cast<int64_t>(seq);
  s.inodes = seq * 10;
  s.bytes = seq * 1000 + (uint64_t{1} << 40);
  return s;
}

bool SameSnap(const SnapshotRecord& a, const SnapshotRecord& b) {
  return a.volume_id == b.volume_id && a.seq == b.seq && a.root == b.root &&
         a.parent_seq == b.parent_seq && a.created_at_ns == b.created_at_ns &&
         a.inodes == b.inodes && a.bytes == b.bytes;
}

bool SameVolume(const VolumeRecord& a, const VolumeRecord& b) {
  return a.id == b.id && a.ns == b.ns && a.name == b.name && a.version == b.version &&
         a.created_at_ns == b.created_at_ns && a.wrapped_key == b.wrapped_key &&
         a.limits == b.limits && a.lease_expires_ns == b.lease_expires_ns;
}

TEST(DefaultLimitsTest, Versions) {
  Limits v1 = DefaultLimits(1);
  EXPECT_EQ(v1.max_inodes, 500000u);
  EXPECT_EQ(v1.max_dir_entries, 0u);
  EXPECT_EQ(v1.max_file_size, 0u);
  EXPECT_FALSE(v1.hard_links);
  Limits v2 = DefaultLimits(2);
  EXPECT_EQ(v2.max_inodes, 0u);
  EXPECT_EQ(v2.max_dir_entries, 32768u);
  EXPECT_EQ(v2.max_file_size, uint64_t{1} << 40);
  EXPECT_TRUE(v2.hard_links);
}

// The MetaStore contract, run against every implementation: SQLite (the
// embedded default), PostgreSQL (a real server, core/testing/postgres_server.h)
// and the in-memory fake the unit tests use.
enum class Backend { kSqlite, kPostgres, kMem };

class MetaStoreTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    switch (GetParam()) {
      case Backend::kSqlite: {
        auto s = OpenSqliteMetaStore(DbPath());
        ASSERT_TRUE(s.ok()) << s.status();
        store_ = *std::move(s);
        break;
      }
      case Backend::kPostgres: {
        CAIRN_REQUIRE_POSTGRES(pg);
        absl::StatusOr<std::string> url = pg->NewDatabase();
        ASSERT_TRUE(url.ok()) << url.status();
        auto s = OpenPostgresMetaStore(*url);
        ASSERT_TRUE(s.ok()) << s.status();
        store_ = *std::move(s);
        break;
      }
      case Backend::kMem:
        store_ = NewMemMetaStore();
        break;
    }
  }
  std::filesystem::path DbPath() const { return dir_.path() / "meta.db"; }

  TempDir dir_;
  std::unique_ptr<MetaStore> store_;
};

TEST_P(MetaStoreTest, CreateAndGet) {
  VolumeRecord v = Volume("vo-a", "ns1", "alpha");
  v.limits = Limits{.max_inodes = 7, .max_dir_entries = 3, .max_file_size = 99,
                    .hard_links = true};
  ASSERT_TRUE(store_->CreateVolume(v, Snap("vo-a", 0)).ok());
  auto by_name = store_->GetVolumeByName("ns1", "alpha");
  ASSERT_TRUE(by_name.ok()) << by_name.status();
  EXPECT_TRUE(SameVolume(*by_name, v));
  auto by_id = store_->GetVolumeById("vo-a");
  ASSERT_TRUE(by_id.ok());
  EXPECT_TRUE(SameVolume(*by_id, v));
  auto head = store_->GetHead("vo-a");
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_TRUE(SameSnap(*head, Snap("vo-a", 0)));
}

// Ephemeral volumes: the lease is created with the volume, renewed only
// forward, listed once lapsed, never revived, and goes with the volume.
TEST_P(MetaStoreTest, LeasesRenewForwardLapseAndGoWithTheVolume) {
  VolumeRecord e = Volume("vo-e", "ns", "ephemeral-e");
  e.lease_expires_ns = 1000;
  ASSERT_TRUE(store_->CreateVolume(e, Snap("vo-e", 0)).ok());
  ASSERT_TRUE(store_->CreateVolume(Volume("vo-o", "ns", "ordinary"), Snap("vo-o", 0)).ok());
  EXPECT_EQ(store_->GetVolumeById("vo-e").value().lease_expires_ns, 1000);
  EXPECT_EQ(store_->GetVolumeByName("ns", "ordinary").value().lease_expires_ns, 0);
  EXPECT_EQ(store_->ListVolumes("ns").value().size(), 2u);

  auto renewed = store_->RenewLease("vo-e", 500, 2000);
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_EQ(renewed->lease_expires_ns, 2000);
  // A shorter lease from another holder does not cut the longer one.
  EXPECT_EQ(store_->RenewLease("vo-e", 600, 1500).value().lease_expires_ns, 2000);
  EXPECT_EQ(store_->GetVolumeById("vo-e").value().lease_expires_ns, 2000);

  EXPECT_EQ(store_->RenewLease("vo-o", 600, 1500).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->RenewLease("vo-x", 600, 1500).status().code(), absl::StatusCode::kNotFound);

  EXPECT_TRUE(store_->ListExpiredLeases(1999).value().empty());
  EXPECT_EQ(store_->ListExpiredLeases(2000).value(), std::vector<std::string>{"vo-e"});
  // Lapsed: never revived, whatever the new expiry.
  auto late = store_->RenewLease("vo-e", 2000, 9000);
  EXPECT_EQ(late.status().code(), absl::StatusCode::kNotFound) << late.status();
  EXPECT_THAT(std::string(late.status().message()), ::testing::HasSubstr("lease lapsed"));

  ASSERT_TRUE(store_->DeleteVolume("vo-e").ok());
  EXPECT_TRUE(store_->ListExpiredLeases(1 << 30).value().empty());
  EXPECT_EQ(store_->RenewLease("vo-e", 0, 9000).status().code(), absl::StatusCode::kNotFound);
}

TEST_P(MetaStoreTest, NotFound) {
  EXPECT_EQ(store_->GetVolumeByName("ns", "x").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetVolumeById("vo-x").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetHead("vo-x").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetSnapshot("vo-x", 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ListSnapshots("vo-x").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->RenameVolume("vo-x", "y").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->DeleteVolume("vo-x").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->CommitSnapshot(Snap("vo-x", 1), 0).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(store_->CreateVolume(Volume("vo-a", "ns", "a"), Snap("vo-a", 0)).ok());
  EXPECT_EQ(store_->GetSnapshot("vo-a", 5).status().code(), absl::StatusCode::kNotFound);
  // Same name, other namespace.
  EXPECT_EQ(store_->GetVolumeByName("other", "a").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(MetaStoreTest, AlreadyExists) {
  ASSERT_TRUE(store_->CreateVolume(Volume("vo-a", "ns", "a"), Snap("vo-a", 0)).ok());
  absl::Status same_name = store_->CreateVolume(Volume("vo-b", "ns", "a"), Snap("vo-b", 0));
  EXPECT_EQ(same_name.code(), absl::StatusCode::kAlreadyExists) << same_name;
  absl::Status same_id = store_->CreateVolume(Volume("vo-a", "ns", "z"), Snap("vo-a", 0));
  EXPECT_EQ(same_id.code(), absl::StatusCode::kAlreadyExists) << same_id;
  // Nothing of the failed creates is left behind.
  EXPECT_EQ(store_->GetVolumeById("vo-b").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetVolumeByName("ns", "z").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ListVolumes("").value().size(), 1u);
  // Same name in another namespace is fine.
  EXPECT_TRUE(store_->CreateVolume(Volume("vo-c", "ns2", "a"), Snap("vo-c", 0)).ok());
}

TEST_P(MetaStoreTest, CreateRejectsMismatchedSnapshot) {
  EXPECT_EQ(store_->CreateVolume(Volume("vo-a", "ns", "a"), Snap("vo-b", 0)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->GetVolumeById("vo-a").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(MetaStoreTest, ListNewestFirstAndByNamespace) {
  ASSERT_TRUE(store_->CreateVolume(Volume("vo-b", "n1", "b", 100), Snap("vo-b", 0)).ok());
  ASSERT_TRUE(store_->CreateVolume(Volume("vo-c", "n2", "c", 300), Snap("vo-c", 0)).ok());
  ASSERT_TRUE(store_->CreateVolume(Volume("vo-a", "n1", "a", 200), Snap("vo-a", 0)).ok());
  ASSERT_TRUE(store_->CreateVolume(Volume("vo-0", "n1", "z", 200), Snap("vo-0", 0)).ok());
  auto ids = [](const std::vector<VolumeRecord>& vs) {
    std::vector<std::string> out;
    for (const auto& v : vs) out.push_back(v.id);
    return out;
  };
  EXPECT_EQ(ids(store_->ListVolumes("").value()),
            (std::vector<std::string>{"vo-c", "vo-0", "vo-a", "vo-b"}));
  EXPECT_EQ(ids(store_->ListVolumes("n1").value()),
            (std::vector<std::string>{"vo-0", "vo-a", "vo-b"}));
  EXPECT_TRUE(store_->ListVolumes("none").value().empty());
}

TEST_P(MetaStoreTest, Rename) {
  ASSERT_TRUE(store_->CreateVolume(Volume("vo-a", "ns", "a"), Snap("vo-a", 0)).ok());
  ASSERT_TRUE(store_->CreateVolume(Volume("vo-b", "ns", "b"), Snap("vo-b", 0)).ok());
  ASSERT_TRUE(store_->CreateVolume(Volume("vo-c", "other", "c"), Snap("vo-c", 0)).ok());
  EXPECT_EQ(store_->RenameVolume("vo-a", "b").code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(store_->RenameVolume("vo-a", "a").ok());  // to itself
  ASSERT_TRUE(store_->RenameVolume("vo-a", "c").ok());  // "c" only taken in "other"
  EXPECT_EQ(store_->GetVolumeByName("ns", "c").value().id, "vo-a");
  EXPECT_EQ(store_->GetVolumeByName("ns", "a").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetVolumeById("vo-a").value().name, "c");
  // The freed name can be used again.
  EXPECT_TRUE(store_->CreateVolume(Volume("vo-d", "ns", "a"), Snap("vo-d", 0)).ok());
}

TEST_P(MetaStoreTest, CommitChainAndSnapshots) {
  ASSERT_TRUE(store_->CreateVolume(Volume("vo-a", "ns", "a"), Snap("vo-a", 0)).ok());
  for (uint64_t seq = 1; seq <= 5; ++seq) {
    ASSERT_TRUE(store_->CommitSnapshot(Snap("vo-a", seq), seq - 1).ok()) << seq;
    EXPECT_TRUE(SameSnap(store_->GetHead("vo-a").value(), Snap("vo-a", seq)));
  }
  auto list = store_->ListSnapshots("vo-a");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 6u);
  for (uint64_t seq = 0; seq <= 5; ++seq) {
    EXPECT_TRUE(SameSnap((*list)[seq], Snap("vo-a", seq))) << seq;
    EXPECT_TRUE(SameSnap(store_->GetSnapshot("vo-a", seq).value(), Snap("vo-a", seq)));
  }
}

TEST_P(MetaStoreTest, CommitCompareAndSwap) {
  ASSERT_TRUE(store_->CreateVolume(Volume("vo-a", "ns", "a"), Snap("vo-a", 0)).ok());
  ASSERT_TRUE(store_->CommitSnapshot(Snap("vo-a", 1), 0).ok());
  absl::Status stale = store_->CommitSnapshot(Snap("vo-a", 1), 0);
  EXPECT_EQ(stale.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(stale.message(), "head moved: expected 0, found 1");
  EXPECT_EQ(store_->CommitSnapshot(Snap("vo-a", 3), 2).code(), absl::StatusCode::kAborted);
  // seq must follow the expected head.
  EXPECT_EQ(store_->CommitSnapshot(Snap("vo-a", 3), 1).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->GetHead("vo-a").value().seq, 1u);
  EXPECT_EQ(store_->ListSnapshots("vo-a").value().size(), 2u);
}

TEST_P(MetaStoreTest, CommitKeysAreRecordedWithTheSnapshot) {
  ASSERT_TRUE(store_->CreateVolume(Volume("vo-a", "ns", "a"), Snap("vo-a", 0)).ok());
  ASSERT_TRUE(store_->CreateVolume(Volume("vo-b", "ns", "b"), Snap("vo-b", 0)).ok());
  const Digest changes = Sha256("the changes");
  ASSERT_TRUE(store_->CommitSnapshot(Snap("vo-a", 1), 0, "key-1", changes).ok());
  ASSERT_TRUE(store_->CommitSnapshot(Snap("vo-a", 2), 1).ok());
  Digest recorded;
  EXPECT_TRUE(SameSnap(store_->FindCommit("vo-a", "key-1", &recorded).value(), Snap("vo-a", 1)));
  EXPECT_EQ(recorded, changes);
  // A recorded key is refused whatever the head, and nothing is stored.
  absl::Status again = store_->CommitSnapshot(Snap("vo-a", 3), 2, "key-1");
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists) << again;
  EXPECT_EQ(store_->GetHead("vo-a").value().seq, 2u);
  // Keys belong to their volume.
  EXPECT_TRUE(absl::IsNotFound(store_->FindCommit("vo-b", "key-1").status()));
  EXPECT_TRUE(store_->CommitSnapshot(Snap("vo-b", 1), 0, "key-1").ok());
  EXPECT_TRUE(absl::IsNotFound(store_->FindCommit("vo-a", "key-2").status()));
  EXPECT_TRUE(absl::IsNotFound(store_->FindCommit("vo-missing", "key-1").status()));
  // Deleting the volume takes its keys along.
  ASSERT_TRUE(store_->DeleteVolume("vo-a").ok());
  EXPECT_TRUE(absl::IsNotFound(store_->FindCommit("vo-a", "key-1").status()));
}

// Keys are kept by age: a busy volume passes a thousand commits in seconds,
// well inside a client's retry window.
TEST_P(MetaStoreTest, CommitKeysAreKeptForADayWhateverTheCommitRate) {
  ASSERT_TRUE(store_->CreateVolume(Volume("vo-a", "ns", "a"), Snap("vo-a", 0)).ok());
  constexpr int64_t kSecond = 1000000000;
  const int64_t start = int64_t{1} << 50;
  auto commit = [&](uint64_t seq, int64_t at) {
    SnapshotRecord next = Snap("vo-a", seq);
    next.created_at_ns = at;
    ASSERT_TRUE(store_->CommitSnapshot(next, seq - 1, "k" + std::to_string(seq)).ok()) << seq;
  };
  const uint64_t n = 1200;
  for (uint64_t seq = 1; seq <= n; ++seq) commit(seq, start + static_cast<int64_t>(seq) * kSecond / 50);
  for (uint64_t seq = 1; seq <= n; seq += 37) {
    EXPECT_EQ(store_->FindCommit("vo-a", "k" + std::to_string(seq)).value().seq, seq);
  }
  // A day after the first commits, their keys are forgotten; recent ones stay.
  commit(n + 1, start + int64_t{24} * 3600 * kSecond + 60 * kSecond);
  EXPECT_TRUE(absl::IsNotFound(store_->FindCommit("vo-a", "k1").status()));
  EXPECT_TRUE(absl::IsNotFound(store_->FindCommit("vo-a", "k" + std::to_string(n)).status()));
  EXPECT_EQ(store_->FindCommit("vo-a", "k" + std::to_string(n + 1)).value().seq, n + 1);
}

TEST_P(MetaStoreTest, RacingThreadsOneWinnerPerSeq) {
  ASSERT_TRUE(store_->CreateVolume(Volume("vo-a", "ns", "a"), Snap("vo-a", 0)).ok());
  constexpr int kThreads = 4, kCommitsEach = 25;
  std::atomic<int> wins{0}, aborts{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      int mine = 0;
      while (mine < kCommitsEach) {
        auto head = store_->GetHead("vo-a");
        if (!head.ok()) {
          ++other;
          return;
        }
        SnapshotRecord next = Snap("vo-a", head->seq + 1);
        next.inodes = static_cast<uint64_t>(t);  // who wrote it
        absl::Status st = store_->CommitSnapshot(next, head->seq);
        if (st.ok()) {
          ++wins;
          ++mine;
        } else if (absl::IsAborted(st)) {
          ++aborts;
        } else {
          ++other;
          return;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(wins.load(), kThreads * kCommitsEach);
  auto list = store_->ListSnapshots("vo-a").value();
  ASSERT_EQ(list.size(), static_cast<size_t>(kThreads * kCommitsEach + 1));
  std::vector<int> per_thread(kThreads);
  for (uint64_t i = 0; i < list.size(); ++i) {
    EXPECT_EQ(list[i].seq, i);
    if (i > 0) ++per_thread[list[i].inodes];
  }
  for (int n : per_thread) EXPECT_EQ(n, kCommitsEach);
  EXPECT_EQ(store_->GetHead("vo-a").value().seq, static_cast<uint64_t>(kThreads * kCommitsEach));
}

TEST_P(MetaStoreTest, DeleteVolumeRemovesEverything) {
  ASSERT_TRUE(store_->CreateVolume(Volume("vo-a", "ns", "a"), Snap("vo-a", 0)).ok());
  ASSERT_TRUE(store_->CreateVolume(Volume("vo-b", "ns", "b"), Snap("vo-b", 0)).ok());
  ASSERT_TRUE(store_->CommitSnapshot(Snap("vo-a", 1), 0).ok());
  ASSERT_TRUE(store_->DeleteVolume("vo-a").ok());
  EXPECT_EQ(store_->GetVolumeById("vo-a").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetHead("vo-a").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetSnapshot("vo-a", 1).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->CommitSnapshot(Snap("vo-a", 2), 1).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->DeleteVolume("vo-a").code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store_->GetHead("vo-b").ok());
  // C1: re-created under the same name with a new ID, history starts over.
  ASSERT_TRUE(store_->CreateVolume(Volume("vo-a2", "ns", "a"), Snap("vo-a2", 0)).ok());
  EXPECT_EQ(store_->ListSnapshots("vo-a2").value().size(), 1u);
  // Even the old ID can be reused without inheriting old snapshots.
  ASSERT_TRUE(store_->CreateVolume(Volume("vo-a", "ns", "again"), Snap("vo-a", 0)).ok());
  EXPECT_EQ(store_->ListSnapshots("vo-a").value().size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Impls, MetaStoreTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres, Backend::kMem),
                         [](const auto& info) {
                           switch (info.param) {
                             case Backend::kSqlite: return "Sqlite";
                             case Backend::kPostgres: return "Postgres";
                             case Backend::kMem: break;
                           }
                           return "Mem";
                         });

class SqliteMetaStoreTest : public ::testing::Test {
 protected:
  std::filesystem::path DbPath() const { return dir_.path() / "meta.db"; }
  TempDir dir_;
};

TEST_F(SqliteMetaStoreTest, PersistsAcrossReopen) {
  {
    auto s = OpenSqliteMetaStore(DbPath());
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_TRUE((*s)->CreateVolume(Volume("vo-a", "ns", "a"), Snap("vo-a", 0)).ok());
    ASSERT_TRUE((*s)->CommitSnapshot(Snap("vo-a", 1), 0).ok());
  }
  auto s = OpenSqliteMetaStore(DbPath());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(SameSnap((*s)->GetHead("vo-a").value(), Snap("vo-a", 1)));
  EXPECT_TRUE(SameVolume((*s)->GetVolumeById("vo-a").value(), Volume("vo-a", "ns", "a")));
}

// C8: once DeleteVolume returns, the wrapped data key must be gone from the
// files on disk, not merely unlinked from the b-tree (freed cells, the WAL).
TEST_F(SqliteMetaStoreTest, DeleteVolumeLeavesNoWrappedKeyOnDisk) {
  auto s = OpenSqliteMetaStore(DbPath());
  ASSERT_TRUE(s.ok()) << s.status();
  VolumeRecord v = Volume("vo-a", "ns", "a");
  v.wrapped_key = RandomBytes(92);
  ASSERT_TRUE((*s)->CreateVolume(v, Snap("vo-a", 0)).ok());
  ASSERT_TRUE((*s)->CreateVolume(Volume("vo-b", "ns", "b"), Snap("vo-b", 0)).ok());
  ASSERT_TRUE((*s)->DeleteVolume("vo-a").ok());
  for (const char* suffix : {"", "-wal"}) {
    std::filesystem::path file = DbPath().string() + suffix;
    std::string bytes;
    if (FILE* f = std::fopen(file.c_str(), "rb")) {
      char buf[4096];
      size_t n;
      while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) bytes.append(buf, n);
      std::fclose(f);
    }
    EXPECT_EQ(bytes.find(v.wrapped_key), std::string::npos) << "key still in " << file;
  }
  // The store keeps working.
  EXPECT_TRUE((*s)->GetHead("vo-b").ok());
  ASSERT_TRUE((*s)->CommitSnapshot(Snap("vo-b", 1), 0).ok());
}

TEST_F(SqliteMetaStoreTest, CommitSurvivesSigkill) {
  // A child acknowledges a commit, then dies without any cleanup.
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(pipefd[0]);
    auto s = OpenSqliteMetaStore(DbPath());
    if (!s.ok() || !(*s)->CreateVolume(Volume("vo-a", "ns", "a"), Snap("vo-a", 0)).ok() ||
        !(*s)->CommitSnapshot(Snap("vo-a", 1), 0).ok()) {
      ::_exit(2);
    }
    char ack = 'y';
    if (::write(pipefd[1], &ack, 1) != 1) ::_exit(3);
    ::pause();
    ::_exit(0);
  }
  ::close(pipefd[1]);
  char ack = 0;
  ASSERT_EQ(::read(pipefd[0], &ack, 1), 1);
  ::close(pipefd[0]);
  ::kill(pid, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  auto s = OpenSqliteMetaStore(DbPath());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->GetHead("vo-a").value().seq, 1u);
}

// Several processes, each with its own connection, race commits on one
// database file: the CAS must hold across processes.
TEST_F(SqliteMetaStoreTest, ForkedProcessesRaceCommits) {
  {
    auto s = OpenSqliteMetaStore(DbPath());
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_TRUE((*s)->CreateVolume(Volume("vo-a", "ns", "a"), Snap("vo-a", 0)).ok());
  }
  constexpr int kProcs = 4, kCommitsEach = 15;
  std::vector<pid_t> pids;
  for (int p = 0; p < kProcs; ++p) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto s = OpenSqliteMetaStore(DbPath());
      if (!s.ok()) ::_exit(2);
      int mine = 0;
      while (mine < kCommitsEach) {
        auto head = (*s)->GetHead("vo-a");
        if (!head.ok()) ::_exit(3);
        SnapshotRecord next = Snap("vo-a", head->seq + 1);
        next.inodes = static_cast<uint64_t>(p);
        absl::Status st = (*s)->CommitSnapshot(next, head->seq);
        if (st.ok()) {
          ++mine;
        } else if (!absl::IsAborted(st)) {
          ::_exit(4);
        }
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
  auto s = OpenSqliteMetaStore(DbPath());
  ASSERT_TRUE(s.ok());
  auto list = (*s)->ListSnapshots("vo-a").value();
  ASSERT_EQ(list.size(), static_cast<size_t>(kProcs * kCommitsEach + 1));
  std::vector<int> per_proc(kProcs);
  for (uint64_t i = 1; i < list.size(); ++i) {
    EXPECT_EQ(list[i].seq, i);
    ++per_proc[list[i].inodes];
  }
  for (int n : per_proc) EXPECT_EQ(n, kCommitsEach);
}

// Processes opening a database that does not exist yet all at once (schema
// creation and the switch to WAL race), each creating its own volume.
TEST_F(SqliteMetaStoreTest, ForkedProcessesOpenFreshDatabase) {
  constexpr int kProcs = 6;
  std::vector<pid_t> pids;
  for (int p = 0; p < kProcs; ++p) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto s = OpenSqliteMetaStore(DbPath());
      if (!s.ok()) ::_exit(2);
      std::string id = "vo-p" + std::to_string(p);
      if (!(*s)->CreateVolume(Volume(id, "ns", id), Snap(id, 0)).ok()) ::_exit(3);
      ::_exit(0);
    }
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  }
  auto s = OpenSqliteMetaStore(DbPath());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ((*s)->ListVolumes("ns").value().size(), static_cast<size_t>(kProcs));
}

TEST_F(SqliteMetaStoreTest, SecondProcessSeesCommitsOfFirst) {
  auto s = OpenSqliteMetaStore(DbPath());
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE((*s)->CreateVolume(Volume("vo-a", "ns", "a"), Snap("vo-a", 0)).ok());
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto c = OpenSqliteMetaStore(DbPath());
    if (!c.ok()) ::_exit(2);
    if (!(*c)->CommitSnapshot(Snap("vo-a", 1), 0).ok()) ::_exit(3);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  // The parent's open connection sees it, and its own stale CAS loses.
  EXPECT_EQ((*s)->GetHead("vo-a").value().seq, 1u);
  EXPECT_EQ((*s)->CommitSnapshot(Snap("vo-a", 1), 0).code(), absl::StatusCode::kAborted);
  EXPECT_TRUE((*s)->CommitSnapshot(Snap("vo-a", 2), 1).ok());
}

TEST_F(SqliteMetaStoreTest, NotADatabase) {
  std::filesystem::create_directories(dir_.path() / "dir.db");
  EXPECT_FALSE(OpenSqliteMetaStore(dir_.path() / "dir.db").ok());
  EXPECT_FALSE(OpenSqliteMetaStore(dir_.path() / "missing" / "meta.db").ok());
}

// Runs `sql` on the database file directly, outside any store.
void ExecOnFile(const std::filesystem::path& db, const std::string& sql) {
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, &err);
  std::string message = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(raw);
  ASSERT_EQ(rc, SQLITE_OK) << message;
}

TEST_F(SqliteMetaStoreTest, RefusesANewerSchema) {
  ASSERT_TRUE(OpenSqliteMetaStore(DbPath()).ok());
  ExecOnFile(DbPath(), "PRAGMA user_version=99");
  auto s = OpenSqliteMetaStore(DbPath());
  ASSERT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition) << s.status();
  EXPECT_THAT(std::string(s.status().message()), ::testing::HasSubstr("schema version 99"));
}

int UserVersion(const std::filesystem::path& db) {
  sqlite3* raw = nullptr;
  EXPECT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(raw, "PRAGMA user_version", -1, &stmt, nullptr), SQLITE_OK);
  EXPECT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  int version = sqlite3_column_int(stmt, 0);
  sqlite3_finalize(stmt);
  sqlite3_close(raw);
  return version;
}

// What schema 1 left on disk: no commit_keys or leases, user_version 1.
void MakeSchemaVersion1(const std::filesystem::path& db) {
  {
    auto s = OpenSqliteMetaStore(db);
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_TRUE((*s)->CreateVolume(Volume("vo-a", "ns", "a"), Snap("vo-a", 0)).ok());
  }
  ExecOnFile(db, "DROP TABLE commit_keys; DROP TABLE leases; PRAGMA user_version=1;");
}

TEST_F(SqliteMetaStoreTest, ConcurrentOpensOfAnOldSchemaMigrateIt) {
  MakeSchemaVersion1(DbPath());
  constexpr int kThreads = 4;
  std::vector<absl::Status> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] { results[t] = OpenSqliteMetaStore(DbPath()).status(); });
  }
  for (std::thread& th : threads) th.join();
  for (const absl::Status& st : results) EXPECT_TRUE(st.ok()) << st;
  EXPECT_EQ(UserVersion(DbPath()), 3);
  auto s = OpenSqliteMetaStore(DbPath());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE((*s)->CommitSnapshot(Snap("vo-a", 1), 0, "k").ok());
  EXPECT_EQ((*s)->FindCommit("vo-a", "k").value().seq, 1u);
}

// An opener that read the old version before a newer Cairn migrated the
// file must not write its own, lower, version over it.
TEST_F(SqliteMetaStoreTest, MigrationNeverLowersTheSchemaVersion) {
  MakeSchemaVersion1(DbPath());
  sqlite3* holder = nullptr;
  ASSERT_EQ(sqlite3_open(DbPath().c_str(), &holder), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(holder, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  absl::Status opened = absl::UnknownError("not run");
  std::thread opener([&] { opened = OpenSqliteMetaStore(DbPath()).status(); });
  // The opener waits for the write lock; meanwhile a newer schema lands.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_EQ(sqlite3_exec(holder, "PRAGMA user_version=4; COMMIT;", nullptr, nullptr, nullptr),
            SQLITE_OK);
  opener.join();
  sqlite3_close(holder);
  EXPECT_EQ(opened.code(), absl::StatusCode::kFailedPrecondition) << opened;
  EXPECT_EQ(UserVersion(DbPath()), 4);
}

// Schema 2 (no leases) migrates to 3 in place: old volumes stay ordinary,
// and ephemeral ones can be made.
TEST_F(SqliteMetaStoreTest, Schema2MigratesToLeases) {
  {
    auto s = OpenSqliteMetaStore(DbPath());
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_TRUE((*s)->CreateVolume(Volume("vo-a", "ns", "a"), Snap("vo-a", 0)).ok());
  }
  ExecOnFile(DbPath(), "DROP INDEX leases_by_expiry; DROP TABLE leases; PRAGMA user_version=2;");
  auto s = OpenSqliteMetaStore(DbPath());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(UserVersion(DbPath()), 3);
  EXPECT_EQ((*s)->GetVolumeById("vo-a").value().lease_expires_ns, 0);
  VolumeRecord e = Volume("vo-e", "ns", "ephemeral-e");
  e.lease_expires_ns = 5;
  ASSERT_TRUE((*s)->CreateVolume(e, Snap("vo-e", 0)).ok());
  EXPECT_EQ((*s)->ListExpiredLeases(5).value(), std::vector<std::string>{"vo-e"});
}

// A Cairn that predates commit keys deletes a volume with plain deletes of
// its head, snapshots and row (foreign keys on); the keys must not stop it.
TEST_F(SqliteMetaStoreTest, OldCodeCanDeleteAVolumeWithCommitKeys) {
  {
    auto s = OpenSqliteMetaStore(DbPath());
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_TRUE((*s)->CreateVolume(Volume("vo-a", "ns", "a"), Snap("vo-a", 0)).ok());
    ASSERT_TRUE((*s)->CommitSnapshot(Snap("vo-a", 1), 0, "k1").ok());
    ASSERT_TRUE((*s)->CommitSnapshot(Snap("vo-a", 2), 1, "k2").ok());
  }
  ExecOnFile(DbPath(),
             "PRAGMA foreign_keys=ON; BEGIN IMMEDIATE;"
             "DELETE FROM heads WHERE volume_id = 'vo-a';"
             "DELETE FROM snapshots WHERE volume_id = 'vo-a';"
             "DELETE FROM volumes WHERE id = 'vo-a'; COMMIT;");
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(DbPath().c_str(), &raw), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(raw, "SELECT COUNT(*) FROM commit_keys", -1, &stmt, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), 0);
  sqlite3_finalize(stmt);
  sqlite3_close(raw);
}

// DataDir lives on top of the stores; its lock is tested here.
// The readiness check: a database file removed or replaced under the open
// store (what is written would be lost) is Unavailable, naming the file;
// put back, it is healthy again.
TEST(SqliteMetaStoreHealthTest, NoticesTheFileGoneOrReplaced) {
  TempDir dir;
  const std::filesystem::path db = dir.path() / "meta.db";
  auto store = OpenSqliteMetaStore(db);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_TRUE((*store)->CheckHealth().ok());
  std::filesystem::rename(db, dir.path() / "moved.db");
  absl::Status gone = (*store)->CheckHealth();
  EXPECT_EQ(gone.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(gone.message()), ::testing::HasSubstr("meta.db is gone"));
  std::filesystem::copy_file(dir.path() / "moved.db", db);
  absl::Status replaced = (*store)->CheckHealth();
  EXPECT_EQ(replaced.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(replaced.message()), ::testing::HasSubstr("was replaced"));
  std::filesystem::remove(db);
  std::filesystem::rename(dir.path() / "moved.db", db);
  EXPECT_TRUE((*store)->CheckHealth().ok());
}

TEST(DataDirTest, CreatesLayout) {
  TempDir dir;
  auto path = dir.path() / "data";
  auto d = DataDir::Open(path);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(std::filesystem::exists(path / "LOCK"));
  EXPECT_TRUE(std::filesystem::exists(path / "master.key"));
  EXPECT_TRUE(std::filesystem::exists(path / "meta.db"));
  EXPECT_TRUE(std::filesystem::is_directory(path / "blobs"));
  EXPECT_EQ((*d)->path(), path);
  ASSERT_TRUE((*d)->meta().CreateVolume(Volume("vo-a", "ns", "a"), Snap("vo-a", 0)).ok());
  ASSERT_TRUE((*d)->blobs().Put("vo-a", Sha256("x"), "x").ok());
  std::string wrapped = (*d)->master().Wrap("vo-a", DataKey::Generate());
  d->reset();
  // Reopen: same key, same contents.
  auto again = DataDir::Open(path);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE((*again)->master().Unwrap("vo-a", wrapped).ok());
  EXPECT_TRUE((*again)->meta().GetVolumeById("vo-a").ok());
  EXPECT_EQ((*again)->blobs().Get("vo-a", Sha256("x")).value(), "x");
}

TEST(DataDirTest, MissingMasterKeyWithVolumesIsRefused) {
  TempDir dir;
  {
    auto d = DataDir::Open(dir.path());
    ASSERT_TRUE(d.ok()) << d.status();
    ASSERT_TRUE((*d)->engine().CreateVolume("", "weights", 2).ok());
  }
  std::filesystem::remove(dir.path() / "master.key");
  auto reopened = DataDir::Open(dir.path());
  ASSERT_FALSE(reopened.ok());
  EXPECT_EQ(reopened.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(reopened.status().message().find("master key"), std::string::npos)
      << reopened.status();
  // Nothing was minted in its place.
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "master.key"));
}

// A data directory written before commit keys existed (schema 1: the same
// volumes, snapshots and heads tables, no commit_keys, user_version 1)
// opens, migrates in place, checks clean and takes idempotent commits.
TEST(DataDirTest, OpensAndMigratesASchemaVersion1Directory) {
  TempDir dir;
  std::string volume_id;
  {
    auto d = DataDir::Open(dir.path());
    ASSERT_TRUE(d.ok()) << d.status();
    Engine& engine = (*d)->engine();
    VolumeRecord v = engine.CreateVolume("", "old", 2).value();
    volume_id = v.id;
    auto objects = engine.OpenObjects(v).value();
    for (int i = 0; i < 3; ++i) {
      objects::ChangeSet set;
      objects::Change* c = set.add_changes();
      c->set_kind(objects::Change::PUT);
      c->set_path("f" + std::to_string(i));
      *c->mutable_entry() = StoreBytes(*objects, std::string(5000 + i, 'x'), 0644, 1).value();
      ASSERT_TRUE(engine.Commit(v.id, set).ok());
    }
  }
  // Back to exactly what schema 1 left on disk.
  ExecOnFile(dir.path() / "meta.db",
             "DROP INDEX commit_keys_by_seq; DROP TABLE commit_keys; DROP INDEX leases_by_expiry; "
             "DROP TABLE leases; PRAGMA user_version=1;");

  auto d = DataDir::Open(dir.path());
  ASSERT_TRUE(d.ok()) << d.status();
  FsckReport report = Fsck((*d)->meta(), (*d)->blobs(), (*d)->master()).value();
  EXPECT_EQ(report.ExitCode(), 0) << report.Summary();
  EXPECT_EQ(report.snapshots, 4u);
  Engine& engine = (*d)->engine();
  EXPECT_EQ(engine.Head(volume_id).value().seq, 3u);
  objects::ChangeSet set;
  objects::Change* c = set.add_changes();
  c->set_kind(objects::Change::REMOVE);
  c->set_path("f0");
  SnapshotRecord first = engine.Commit(volume_id, set, "after-migration").value();
  EXPECT_EQ(first.seq, 4u);
  EXPECT_EQ(engine.Commit(volume_id, set, "after-migration").value().seq, 4u);
  d->reset();
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open((dir.path() / "meta.db").c_str(), &raw), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(raw, "PRAGMA user_version", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), 3);
  sqlite3_finalize(stmt);
  sqlite3_close(raw);
}

TEST(DataDirTest, SecondOpenIsRefused) {
  TempDir dir;
  auto d = DataDir::Open(dir.path());
  ASSERT_TRUE(d.ok()) << d.status();
  // In this process (a separate open file description) ...
  auto same = DataDir::Open(dir.path());
  ASSERT_FALSE(same.ok());
  EXPECT_EQ(same.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(same.status().message().find("is in use by another process"), std::string::npos)
      << same.status();
  // ... and in another process.
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto other = DataDir::Open(dir.path());
    ::_exit(!other.ok() && absl::IsFailedPrecondition(other.status()) ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  // Released on close: the next owner gets in.
  d->reset();
  pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) ::_exit(DataDir::Open(dir.path()).ok() ? 0 : 1);
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace cairn
