// Crash tests.
//
// KilledCommitterLosesNothingAcknowledged: a child process commits in a
// loop on a real data directory and is killed with SIGKILL at random
// moments. After every kill the data directory must open (the lock dies
// with its owner), fsck must find nothing missing or damaged, and every
// commit the child acknowledged (reported only after Commit returned) must
// be there with its content. SIGKILL cannot catch a missing fsync (the page
// cache survives the process), hence the second test.
//
// PowerCutLosesNothingAcknowledged: the same promise under a simulated power
// cut that drops everything not fsynced, blob files and directory entries
// (testing/fault_env.h) and SQLite pages (testing/fault_vfs.h), at random
// points of concurrent uploads and commits.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <cstdint>
#include <iostream>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "core/testing/mem_stores.h"
#include "core/crypto.h"
#include "core/data_dir.h"
#include "core/files.h"
#include "core/fsck.h"
#include "core/testing/fault_env.h"
#include "core/testing/fault_vfs.h"
#include "core/testing/temp_dir.h"
#include "core/tree.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

// Every third commit is big enough to be chunked, so kills also land in
// the middle of chunk uploads.
std::string Content(uint64_t n) {
  std::string s = "commit " + std::to_string(n) + "\n";
  if (n % 3 == 0) s += std::string(kInlineMax + 1000 + n % 777, static_cast<char>('a' + n % 26));
  return s;
}

// Spread over small directories: fsck re-reads every snapshot after each
// kill, and one ever-growing directory would make that quadratic.
std::string PathOf(uint64_t n) { return "c/" + std::to_string(n / 50) + "/" + std::to_string(n); }

// The child: never returns. Exit codes other than death by signal mean it
// failed on its own, which the parent reports.
[[noreturn]] void CommitForever(const std::filesystem::path& dir, uint64_t start, int ack_fd) {
  absl::StatusOr<std::unique_ptr<DataDir>> data = DataDir::Open(dir);
  if (!data.ok()) _exit(10);
  Engine& engine = (*data)->engine();
  absl::StatusOr<VolumeRecord> volume = engine.GetOrCreateVolume("", "crash", 2);
  if (!volume.ok()) _exit(11);
  absl::StatusOr<std::unique_ptr<ObjectStore>> objects = engine.OpenObjects(*volume);
  if (!objects.ok()) _exit(12);
  for (uint64_t n = start;; ++n) {
    absl::StatusOr<objects::Entry> entry = StoreBytes(**objects, Content(n), 0644, 1);
    if (!entry.ok()) _exit(13);
    objects::ChangeSet set;
    objects::Change* c = set.add_changes();
    c->set_kind(objects::Change::PUT);
    c->set_path(PathOf(n));
    *c->mutable_entry() = *entry;
    if (!engine.Commit(volume->id, set).ok()) _exit(14);
    // Acknowledge only now: this is the promise the parent checks.
    if (write(ack_fd, &n, sizeof(n)) != static_cast<ssize_t>(sizeof(n))) _exit(15);
  }
}

TEST(CrashTest, KilledCommitterLosesNothingAcknowledged) {
  testing::TempDir tmp;
  const std::filesystem::path dir = tmp.path() / "data";
  std::mt19937 rng(20261126);
  std::set<uint64_t> acked;
  uint64_t next = 0;
  constexpr int kIterations = 60;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(75);

  int iterations = 0;
  for (; iterations < kIterations && std::chrono::steady_clock::now() < deadline; ++iterations) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      CommitForever(dir, next, fds[1]);
    }
    close(fds[1]);
    // The first run also creates the directory, key and volume.
    int delay_ms = 5 + static_cast<int>(rng() % 350) + (iterations == 0 ? 200 : 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int wstatus = 0;
    ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL)
        << "child exited on its own with code " << (WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1);
    uint64_t n;
    while (read(fds[0], &n, sizeof(n)) == static_cast<ssize_t>(sizeof(n))) {
      acked.insert(n);
      next = std::max(next, n + 1);
    }
    close(fds[0]);

    absl::StatusOr<std::unique_ptr<DataDir>> data = DataDir::Open(dir);
    ASSERT_TRUE(data.ok()) << "iteration " << iterations << ": " << data.status();
    absl::StatusOr<FsckReport> report =
        Fsck((*data)->meta(), (*data)->blobs(), (*data)->master());
    ASSERT_TRUE(report.ok()) << report.status();
    ASSERT_TRUE(report->intact()) << "iteration " << iterations << ": " << report->Summary()
                                  << (report->dangling.empty() ? "" : "\n" + report->dangling[0])
                                  << (report->corrupt.empty() ? "" : "\n" + report->corrupt[0]);
    if (acked.empty()) continue;
    Engine& engine = (*data)->engine();
    absl::StatusOr<VolumeRecord> volume = engine.GetVolume("", "crash");
    ASSERT_TRUE(volume.ok()) << volume.status();
    std::unique_ptr<ObjectStore> objects = engine.OpenObjects(*volume).value();
    SnapshotRecord head = engine.Head(volume->id).value();
    EXPECT_GE(head.seq, acked.size());
    for (uint64_t a : acked) {
      absl::StatusOr<objects::Entry> e = LookupPath(*objects, head.root, PathOf(a));
      ASSERT_TRUE(e.ok()) << "acknowledged commit " << a << " lost: " << e.status();
      absl::StatusOr<std::string> content = ReadFileRange(*objects, *e, 0, e->size());
      ASSERT_TRUE(content.ok()) << content.status();
      ASSERT_EQ(*content, Content(a)) << "acknowledged commit " << a;
    }
  }
  EXPECT_GE(iterations, 20);
  EXPECT_GE(acked.size(), 20u) << "the child hardly committed; the test proves little";
  std::cerr << iterations << " kills, " << acked.size() << " acknowledged commits\n";
}

// Uploads large blobs forever, never committing: most of its time goes to
// writing blob temporaries, so a kill leaves one behind more often than not.
[[noreturn]] void UploadForever(const std::filesystem::path& dir) {
  absl::StatusOr<std::unique_ptr<DataDir>> data = DataDir::Open(dir);
  if (!data.ok()) _exit(10);
  Engine& engine = (*data)->engine();
  absl::StatusOr<VolumeRecord> volume = engine.GetOrCreateVolume("", "debris", 2);
  if (!volume.ok()) _exit(11);
  std::string blob = RandomBytes(8 << 20);
  for (uint64_t n = 0;; ++n) {
    std::memcpy(blob.data(), &n, sizeof(n));
    if (!(*data)->blobs().Put(volume->id, Sha256(blob), blob).ok()) _exit(13);
  }
}

// SIGKILL in the middle of uploads leaves blob temporaries. fsck reports
// them (exit code 3, not damage), GC keeps them while they may still belong
// to a write in progress and removes them once older than its grace period.
TEST(CrashTest, KilledUploadsLeaveDebrisThatFsckReportsAndGcRemoves) {
  testing::TempDir tmp;
  const std::filesystem::path dir = tmp.path() / "data";
  std::mt19937 rng(20261201);
  size_t most = 0;
  for (int kill_no = 0; kill_no < 8; ++kill_no) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) UploadForever(dir);
    std::this_thread::sleep_for(std::chrono::milliseconds(150 + rng() % 200));
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int wstatus = 0;
    ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(wstatus)) << "child exited on its own with code "
                                      << (WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1);
    auto data = DataDir::Open(dir);
    ASSERT_TRUE(data.ok()) << data.status();
    FsckReport report = Fsck((*data)->meta(), (*data)->blobs(), (*data)->master()).value();
    EXPECT_TRUE(report.intact()) << report.Summary();
    most = std::max(most, report.temporaries.size());
    if (!report.temporaries.empty()) {
      EXPECT_EQ(report.ExitCode(), 3);
      EXPECT_NE(report.temporaries[0].find("/.tmp."), std::string::npos) << report.temporaries[0];
    }
  }
  ASSERT_GT(most, 0u) << "no kill left a temporary; the test proves nothing";
  auto data = DataDir::Open(dir);
  ASSERT_TRUE(data.ok()) << data.status();
  Engine& engine = (*data)->engine();
  GcStats young = engine.CollectGarbage(std::chrono::hours(1)).value();
  EXPECT_EQ(young.temporaries_deleted, 0u);
  FsckReport before = Fsck((*data)->meta(), (*data)->blobs(), (*data)->master()).value();
  ASSERT_GT(before.temporaries.size(), 0u);
  GcStats old = engine.CollectGarbage(std::chrono::seconds(0)).value();
  EXPECT_EQ(old.temporaries_deleted, before.temporaries.size());
  FsckReport after = Fsck((*data)->meta(), (*data)->blobs(), (*data)->master()).value();
  EXPECT_EQ(after.ExitCode(), 0) << after.Summary();
}

// A file's entry and the sealed blobs it needs, computed the way a client
// does before asking which of them the server lacks.
struct SealedFile {
  objects::Entry entry;
  std::vector<std::pair<Digest, std::string>> blobs;
};

SealedFile Seal(const VolumeRecord& volume, const DataKey& key, const std::string& content) {
  std::unique_ptr<BlobStore> scratch = NewMemBlobStore();
  ObjectStore objects(scratch.get(), volume.id, key);
  SealedFile out;
  out.entry = StoreBytes(objects, content, 0644, 1).value();
  EXPECT_TRUE(scratch
                  ->List(volume.id,
                         [&](const BlobStore::BlobInfo& info) {
                           out.blobs.emplace_back(info.address,
                                                  scratch->Get(volume.id, info.address).value());
                         })
                  .ok());
  return out;
}

// One chunk each (above the inline limit), distinct per round and index.
std::string PowerContent(int round, uint64_t k) {
  std::string s = "round " + std::to_string(round) + " item " + std::to_string(k) + "\n";
  s.resize(kInlineMax + 500 + k % 1000, static_cast<char>('a' + k % 26));
  return s;
}

TEST(CrashTest, PowerCutLosesNothingAcknowledged) {
  testing::TempDir tmp;
  const std::filesystem::path dir = tmp.path() / "data";
  testing::PowerSwitch power;
  testing::FaultInjectionEnv env(&power);
  testing::FaultSqliteVfs vfs("cairn-power-cut", &power);
  const DataDirOptions options{.env = &env, .sqlite = {.vfs = vfs.name()}};
  const uint32_t seed = std::random_device{}();
  std::mt19937 rng(seed);
  SCOPED_TRACE("seed " + std::to_string(seed));

  struct Acked {
    std::string path;
    std::string content;
  };
  std::vector<Acked> acked;
  constexpr int kRounds = 30;
  constexpr int kCommitters = 3;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(150);
  int rounds = 0;
  for (; rounds < kRounds && std::chrono::steady_clock::now() < deadline; ++rounds) {
    absl::StatusOr<std::unique_ptr<DataDir>> data = DataDir::Open(dir, options);
    ASSERT_TRUE(data.ok()) << "round " << rounds << ": " << data.status();
    Engine& engine = (*data)->engine();
    absl::StatusOr<FsckReport> report = Fsck((*data)->meta(), (*data)->blobs(), (*data)->master());
    ASSERT_TRUE(report.ok()) << report.status();
    ASSERT_TRUE(report->intact()) << "round " << rounds << ": " << report->Summary()
                                  << (report->dangling.empty() ? "" : "\n" + report->dangling[0])
                                  << (report->corrupt.empty() ? "" : "\n" + report->corrupt[0]);
    absl::StatusOr<VolumeRecord> volume = engine.GetOrCreateVolume("", "power", 2);
    ASSERT_TRUE(volume.ok()) << volume.status();
    std::unique_ptr<ObjectStore> objects = engine.OpenObjects(*volume).value();
    const DataKey key = engine.DataKeyFor(*volume).value();
    SnapshotRecord head = engine.Head(volume->id).value();
    for (const Acked& a : acked) {
      absl::StatusOr<objects::Entry> e = LookupPath(*objects, head.root, a.path);
      ASSERT_TRUE(e.ok()) << "round " << rounds << ": acknowledged " << a.path
                          << " lost: " << e.status();
      absl::StatusOr<std::string> content = ReadFileRange(*objects, *e, 0, e->size());
      ASSERT_TRUE(content.ok()) << "round " << rounds << ": " << a.path << ": " << content.status();
      ASSERT_EQ(*content, a.content) << a.path;
    }

    // The cut lands anywhere in the next few hundred commits' operations.
    power.CutAfter(1 + static_cast<int64_t>(rng() % 6000));
    absl::Mutex mu;
    std::vector<Acked> round_acked;
    std::atomic<uint64_t> streaming{0};
    std::atomic<bool> failed{false};
    std::string failure;
    auto fail = [&](const std::string& what, const absl::Status& status) {
      if (power.cut()) return;  // an error caused by the cut is expected
      absl::MutexLock lock(&mu);
      failed = true;
      failure = what + ": " + status.ToString();
    };
    std::vector<std::thread> threads;
    // A slow client streaming uploads (PutObjects): blobs sit in an
    // unfinished batch for a while, and committers that find them present
    // reference them without uploading, as MissingObjects allows.
    threads.emplace_back([&] {
      for (uint64_t k = 0; !power.cut() && !failed; ++k) {
        absl::StatusOr<std::unique_ptr<Engine::Upload>> upload = engine.NewUpload(volume->id);
        if (!upload.ok()) return fail("new upload", upload.status());
        for (int i = 0; i < 6 && !power.cut(); ++i, ++k) {
          streaming = k;
          for (const auto& [address, sealed] : Seal(*volume, key, PowerContent(rounds, k)).blobs) {
            absl::Status added = (*upload)->Add(address, sealed);
            if (!added.ok()) return fail("upload", added);
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        absl::StatusOr<uint64_t> finished = (*upload)->Finish();
        if (!finished.ok()) return fail("finish upload", finished.status());
      }
    });
    for (int t = 0; t < kCommitters; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937 local(seed + static_cast<uint32_t>(rounds * 100 + t));
        for (uint64_t n = 0; !power.cut() && !failed; ++n) {
          // What the streamer is sending now, or an item it sent earlier.
          const uint64_t at = streaming.load();
          const uint64_t k = at - std::min<uint64_t>(at, local() % 3);
          const std::string content = PowerContent(rounds, k);
          SealedFile file = Seal(*volume, key, content);
          std::vector<Digest> addresses;
          for (const auto& [address, sealed] : file.blobs) addresses.push_back(address);
          absl::StatusOr<std::vector<Digest>> missing = engine.MissingObjects(volume->id, addresses);
          if (!missing.ok()) return fail("missing objects", missing.status());
          if (!missing->empty()) {
            absl::StatusOr<std::unique_ptr<Engine::Upload>> upload = engine.NewUpload(volume->id);
            if (!upload.ok()) return fail("new upload", upload.status());
            for (const auto& [address, sealed] : file.blobs) {
              absl::Status added = (*upload)->Add(address, sealed);
              if (!added.ok()) return fail("upload", added);
            }
            absl::StatusOr<uint64_t> finished = (*upload)->Finish();
            if (!finished.ok()) return fail("finish upload", finished.status());
          }
          const std::string path = "r" + std::to_string(rounds) + "/w" + std::to_string(t) +
                                   "/" + std::to_string(n);
          objects::ChangeSet set;
          objects::Change* c = set.add_changes();
          c->set_kind(objects::Change::PUT);
          c->set_path(path);
          *c->mutable_entry() = file.entry;
          absl::StatusOr<SnapshotRecord> committed = engine.Commit(volume->id, set);
          if (!committed.ok()) return fail("commit " + path, committed.status());
          absl::MutexLock lock(&mu);
          round_acked.push_back(Acked{path, content});
        }
      });
    }
    for (std::thread& th : threads) th.join();
    ASSERT_FALSE(failed) << "round " << rounds << ": " << failure;
    ASSERT_TRUE(power.cut());
    // The machine is off: the process's state goes, then the disk loses
    // what was not synced, then the power comes back.
    data->reset();
    env.DropUnsynced();
    power.Restore();
    acked.insert(acked.end(), round_acked.begin(), round_acked.end());
  }
  EXPECT_GE(rounds, 10);
  EXPECT_GE(acked.size(), 100u) << "few commits were acknowledged; the test proves little";
  std::cerr << rounds << " power cuts, " << acked.size() << " acknowledged commits\n";
}

}  // namespace
}  // namespace cairn
