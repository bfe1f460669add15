// What is particular to the PostgreSQL metadata store, on a real server
// (core/testing/postgres_server.h): URLs, migrations racing, the server
// going away and coming back under load, and GC excluding commits across
// replicas. The MetaStore contract itself is meta_store_test.cc's
// parameterised suite; the engine model test runs on it in model_test.cc.
#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "core/blob_store.h"
#include "core/crypto.h"
#include "core/engine.h"
#include "core/files.h"
#include "core/fsck.h"
#include "core/meta_store.h"
#include "core/testing/counting_blob_store.h"
#include "core/testing/postgres_server.h"
#include "core/testing/temp_dir.h"
#include "core/tree.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

using ::cairn::testing::PostgresServer;
using ::cairn::testing::TempDir;

MasterKey TestMasterKey() { return MasterKey::FromBytes(std::string(32, 'M')).value(); }

// A change set putting one file with `content`, stored through `objects`.
objects::ChangeSet PutFile(ObjectStore& objects, const std::string& path,
                           const std::string& content) {
  objects::ChangeSet set;
  objects::Change* c = set.add_changes();
  c->set_kind(objects::Change::PUT);
  c->set_path(path);
  *c->mutable_entry() = StoreBytes(objects, content, 0644, 1).value();
  return set;
}

// fsck finds every referenced object present and intact. Orphans are
// allowed: a commit refused or cut off after uploading leaves some (GC's).
void ExpectNothingMissing(MetaStore& meta, BlobStore& blobs) {
  absl::StatusOr<FsckReport> report = Fsck(meta, blobs, TestMasterKey());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->intact()) << report->Summary();
}

TEST(PostgresMetaStoreTest, RejectsMalformedUrls) {
  auto wrong_scheme = OpenPostgresMetaStore("mysql://db/x");
  EXPECT_EQ(wrong_scheme.status().code(), absl::StatusCode::kInvalidArgument);
  auto bad_option = OpenPostgresMetaStore("postgresql://localhost/db?no_such_option=1");
  EXPECT_EQ(bad_option.status().code(), absl::StatusCode::kInvalidArgument)
      << bad_option.status();
  // The password never shows in the message.
  auto bad = OpenPostgresMetaStore("postgres://me:s3cret@localhost/db?no_such_option=1");
  EXPECT_THAT(std::string(bad.status().message()), ::testing::Not(::testing::HasSubstr("s3cret")));
  EXPECT_TRUE(IsPostgresUrl("postgres://h/db"));
  EXPECT_TRUE(IsPostgresUrl("postgresql://h/db"));
  EXPECT_FALSE(IsPostgresUrl("/var/lib/cairn"));
}

TEST(PostgresMetaStoreTest, UnreachableServerIsUnavailable) {
  TempDir dir;
  PostgresOptions options;
  options.connect_timeout_s = 2;
  auto s = OpenPostgresMetaStore(
      "postgresql:///db?host=" + dir.path().string() + "&user=cairn", options);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable) << s.status();
  EXPECT_THAT(std::string(s.status().message()), ::testing::HasSubstr("cannot connect"));
}

// Replicas starting together over a fresh database: every one opens, the
// schema is made once.
TEST(PostgresMetaStoreTest, ConcurrentOpensOfAFreshDatabaseMigrateOnce) {
  CAIRN_REQUIRE_POSTGRES(pg);
  const std::string url = pg->NewDatabase().value();
  constexpr int kOpeners = 6;
  std::vector<absl::StatusOr<std::unique_ptr<MetaStore>>> stores;
  for (int i = 0; i < kOpeners; ++i) stores.emplace_back(absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kOpeners; ++i) {
    threads.emplace_back([&, i] { stores[i] = OpenPostgresMetaStore(url); });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kOpeners; ++i) {
    ASSERT_TRUE(stores[i].ok()) << stores[i].status();
    VolumeRecord v;
    v.id = "vo-" + std::to_string(i);
    v.ns = "ns";
    v.name = v.id;
    v.wrapped_key = "k";
    SnapshotRecord s;
    s.volume_id = v.id;
    s.root = Sha256("root");
    ASSERT_TRUE((*stores[i])->CreateVolume(v, s).ok());
  }
  EXPECT_EQ((*stores[0])->ListVolumes("ns").value().size(), static_cast<size_t>(kOpeners));
}

TEST(PostgresMetaStoreTest, RefusesANewerSchema) {
  CAIRN_REQUIRE_POSTGRES(pg);
  const std::string url = pg->NewDatabase().value();
  ASSERT_TRUE(OpenPostgresMetaStore(url).ok());
  const std::string db = url.substr(url.find(":///") + 4, url.find('?') - url.find(":///") - 4);
  ASSERT_TRUE(pg->Exec(db, "UPDATE cairn_schema SET version = 99").ok());
  auto s = OpenPostgresMetaStore(url);
  ASSERT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition) << s.status();
  EXPECT_THAT(std::string(s.status().message()), ::testing::HasSubstr("schema version 99"));
}

// A BlobStore over another that, once armed, stops GC right after it has
// listed a volume's blobs (its garbage decided, nothing deleted yet) until
// `proceed` is notified or a few seconds pass: the window in which a commit
// on another replica may reference a blob GC is about to delete.
class PausingBlobStore final : public testing::CountingBlobStore {
 public:
  explicit PausingBlobStore(BlobStore* inner) : CountingBlobStore(inner) {}
  std::atomic<bool> armed{false};
  absl::Notification listed;
  absl::Notification proceed;

  absl::Status List(std::string_view v, const std::function<void(const BlobInfo&)>& fn) override {
    absl::Status st = CountingBlobStore::List(v, fn);
    if (armed.exchange(false)) {
      listed.Notify();
      proceed.WaitForNotificationWithTimeout(absl::Seconds(3));
    }
    return st;
  }
};

// Two control-plane replicas (two engines, each with its own store
// connections) over one PostgreSQL and one blob store. GC on A decides a
// freshly uploaded chunk is garbage; B then commits a file referencing it.
// Without a lock across replicas B's commit lands and A deletes the chunk
// under it (fsck: a referenced blob missing). With it, B's commit waits for
// A's pass and then finds its chunk gone: refused, nothing broken.
TEST(PostgresReplicasTest, GcOnOneReplicaNeverDeletesWhatACommitOnAnotherReferences) {
  CAIRN_REQUIRE_POSTGRES(pg);
  const std::string url = pg->NewDatabase().value();
  TempDir dir;
  std::unique_ptr<BlobStore> blobs = OpenLocalBlobStore(dir.path() / "blobs").value();
  PausingBlobStore pausing(blobs.get());
  std::unique_ptr<MetaStore> meta_a = OpenPostgresMetaStore(url).value();
  std::unique_ptr<MetaStore> meta_b = OpenPostgresMetaStore(url).value();
  Engine a(meta_a.get(), &pausing, TestMasterKey());
  Engine b(meta_b.get(), blobs.get(), TestMasterKey());

  VolumeRecord volume = a.CreateVolume("", "shared", 2).value();
  std::unique_ptr<ObjectStore> objects_b = b.OpenObjects(b.GetVolumeById(volume.id).value()).value();
  ASSERT_TRUE(b.Commit(volume.id, PutFile(*objects_b, "old", std::string(300000, 'o'))).ok());

  // B uploads a chunk for its next commit (what a mounter does before
  // committing); nothing references it yet.
  std::string content(300000, 'n');
  for (size_t i = 0; i < content.size(); i += 97) content[i] = static_cast<char>(i);
  objects::ChangeSet next = PutFile(*objects_b, "new", content);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // older than GC's cutoff

  pausing.armed = true;
  absl::StatusOr<GcStats> gc = absl::UnknownError("not run");
  std::thread gc_thread([&] { gc = a.CollectGarbage(std::chrono::seconds(0)); });
  ASSERT_TRUE(pausing.listed.WaitForNotificationWithTimeout(absl::Seconds(60)));
  absl::StatusOr<SnapshotRecord> committed = b.Commit(volume.id, next);
  pausing.proceed.Notify();
  gc_thread.join();
  ASSERT_TRUE(gc.ok()) << gc.status();
  if (!committed.ok()) {
    // B's chunk was collected before its commit could reference it.
    EXPECT_EQ(committed.status().code(), absl::StatusCode::kFailedPrecondition)
        << committed.status();
  }
  ExpectNothingMissing(*meta_a, *blobs);
  // Either way the volume keeps working: uploading again and committing lands.
  objects::ChangeSet again = PutFile(*objects_b, "new", content);
  ASSERT_TRUE(b.Commit(volume.id, again).ok());
  ExpectNothingMissing(*meta_a, *blobs);
}

// The server restarted under load: writers on both sides of it see only
// Unavailable (or a lost CAS) while it is down, succeed once it is back
// (the pool drops its dead connections), and every acknowledged commit is
// there afterwards. A server of its own: the shared one stays up.
TEST(PostgresRestartTest, CommitsFailUnavailableWhileDownAndNothingAcknowledgedIsLost) {
  absl::StatusOr<std::unique_ptr<PostgresServer>> started = PostgresServer::Start();
  if (!started.ok()) {
    if (testing::PostgresRequired()) FAIL() << started.status();
    GTEST_SKIP() << started.status();
  }
  PostgresServer& pg = **started;
  const std::string url = pg.NewDatabase().value();
  TempDir dir;
  std::unique_ptr<BlobStore> blobs = OpenLocalBlobStore(dir.path() / "blobs").value();
  PostgresOptions options;
  options.connect_timeout_s = 2;
  std::unique_ptr<MetaStore> meta = OpenPostgresMetaStore(url, options).value();
  Engine engine(meta.get(), blobs.get(), TestMasterKey());
  VolumeRecord volume = engine.CreateVolume("", "busy", 2).value();

  constexpr int kWriters = 4;
  std::atomic<bool> stop{false};
  std::atomic<int> unexpected{0}, unavailable{0};
  std::vector<std::map<std::string, std::string>> acked(kWriters);  // path -> content
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      std::unique_ptr<ObjectStore> objects = engine.OpenObjects(volume).value();
      for (int i = 0; !stop; ++i) {
        const std::string path = "w" + std::to_string(w) + "/f" + std::to_string(i);
        const std::string content = path + std::string(100 + i, 'x');
        objects::ChangeSet set = PutFile(*objects, path, content);
        absl::StatusOr<SnapshotRecord> r = engine.Commit(volume.id, set);
        if (r.ok()) {
          acked[w][path] = content;
        } else if (absl::IsUnavailable(r.status())) {
          ++unavailable;
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        } else {
          ADD_FAILURE() << "writer " << w << ": " << r.status();
          ++unexpected;
          return;
        }
      }
    });
  }
  auto total_acked = [&] {
    size_t n = 0;
    for (const auto& m : acked) n += m.size();
    return n;
  };
  // Hard to race: the writers' maps are read only after they stop; until
  // then poll the head instead.
  auto wait_for_commits = [&](uint64_t more) {
    const uint64_t from = meta->GetHead(volume.id).value().seq;
    for (int i = 0; i < 600; ++i) {
      absl::StatusOr<SnapshotRecord> h = meta->GetHead(volume.id);
      if (h.ok() && h->seq >= from + more) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  };
  ASSERT_TRUE(wait_for_commits(10));
  ASSERT_TRUE(pg.Stop(/*immediate=*/true).ok());
  // Down: reads and the readiness check say Unavailable.
  EXPECT_EQ(meta->GetHead(volume.id).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(meta->CheckHealth().code(), absl::StatusCode::kUnavailable);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_TRUE(pg.Restart().ok());
  // Back: the first call already succeeds (dead pooled connections are
  // replaced, not handed out).
  EXPECT_TRUE(meta->CheckHealth().ok());
  EXPECT_TRUE(wait_for_commits(10));
  stop = true;
  for (std::thread& t : writers) t.join();
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_GT(unavailable.load(), 0) << "no writer saw the server down";
  EXPECT_GT(total_acked(), 20u);

  // Every acknowledged file is in the head, with its content.
  std::unique_ptr<ObjectStore> objects = engine.OpenObjects(volume).value();
  SnapshotRecord head = meta->GetHead(volume.id).value();
  std::map<std::string, std::string> found;
  ASSERT_TRUE(WalkTree(*objects, head.root, "", [&](const std::string& p, const objects::Entry& e) {
                if (e.type() == objects::FILE) {
                  found[p] = ReadFileRange(*objects, e, 0, e.size()).value_or("<unreadable>");
                }
                return true;
              }).ok());
  for (const auto& writer : acked) {
    for (const auto& [path, content] : writer) {
      auto it = found.find(path);
      ASSERT_NE(it, found.end()) << "acknowledged " << path << " lost";
      EXPECT_EQ(it->second, content) << path;
    }
  }
  ExpectNothingMissing(*meta, *blobs);
}

}  // namespace
}  // namespace cairn
