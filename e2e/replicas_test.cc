// Two real `cairn server` replicas serving the same volumes at once over one
// PostgreSQL database (--meta) and one S3 bucket (--blobs, versitygw), each
// with its own data directory (its LOCK) and a copy of one master key,
// driven by the real `cairn` CLI from concurrent writer threads that
// alternate between the replicas:
//  - 1,000 files from 20 writers all land, read back the same through either
//    replica, the snapshot history is one line with one snapshot per put,
//    and fsck of the shared stores is clean;
//  - one replica SIGKILLed under the writers: every acknowledged put is
//    there through the survivor, puts sent to the dead one fail saying the
//    server cannot be reached (clients do not fail over), and fsck finds
//    nothing missing or corrupt;
//  - GC every second with no grace period on one replica while the other
//    commits: nothing a snapshot references is deleted.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/meta_store.h"
#include "core/testing/postgres_server.h"
#include "core/testing/s3_server.h"
#include "core/testing/temp_dir.h"
#include "e2e/harness.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn::e2e {
namespace {

namespace fs = std::filesystem;
using ::cairn::testing::S3TestServer;
using ::testing::HasSubstr;

// An unlabelled counter from the server's /metrics (-1: no answer).
int Counter(const ServerProcess& server, absl::string_view name) {
  auto [code, body] = server.HttpGet("/metrics");
  if (code != 200) return -1;
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    if (!absl::ConsumePrefix(&line, name)) continue;
    if (!line.empty() && line[0] != ' ' && line[0] != '{') continue;
    absl::ConsumePrefix(&line, "{}");
    double n = 0;
    if (absl::SimpleAtod(absl::StripAsciiWhitespace(line), &n)) return static_cast<int>(n);
  }
  return 0;
}
// Finished GC passes.
int GcRuns(const ServerProcess& server) { return Counter(server, "cairn_gc_runs_total"); }

// Two replicas over one database and one bucket prefix.
struct Replicas {
  cairn::testing::TempDir dir;
  std::string meta_url;
  std::string blobs_url;
  std::vector<std::string> s3_env;
  std::unique_ptr<ServerProcess> a, b;

  fs::path data_a() const { return dir.path() / "data-a"; }
  fs::path data_b() const { return dir.path() / "data-b"; }

  // Starts A (which mints the master key), copies the key to B's data
  // directory (replicas share one Secret), starts B.
  absl::Status Start(const std::vector<std::string>& args_a,
                     const std::vector<std::string>& args_b) {
    auto start = [&](const fs::path& data, const std::vector<std::string>& extra)
        -> absl::StatusOr<std::unique_ptr<ServerProcess>> {
      std::vector<std::string> args = {"--meta", meta_url, "--blobs", blobs_url};
      args.insert(args.end(), extra.begin(), extra.end());
      return ServerProcess::Start({.data_dir = data, .extra_args = args, .env = s3_env});
    };
    auto started_a = start(data_a(), args_a);
    if (!started_a.ok()) return started_a.status();
    a = std::move(*started_a);
    fs::create_directories(data_b());
    std::error_code ec;
    fs::copy_file(data_a() / "master.key", data_b() / "master.key", ec);
    if (ec) return absl::InternalError(absl::StrCat("copy master key: ", ec.message()));
    auto started_b = start(data_b(), args_b);
    if (!started_b.ok()) return started_b.status();
    b = std::move(*started_b);
    return absl::OkStatus();
  }

  // Runs A alone (both servers stopped) with GC every second and no grace
  // period until a pass has finished: what no snapshot references goes.
  absl::Status CollectGarbage() {
    auto collector = ServerProcess::Start(
        {.data_dir = data_a(),
         .extra_args = {"--meta", meta_url, "--blobs", blobs_url, "--gc-interval", "1",
                        "--gc-grace", "0"},
         .env = s3_env});
    if (!collector.ok()) return collector.status();
    // Every commit landed before this server started, so its first pass
    // sees them all.
    for (int i = 0; i < 1200; ++i) {
      if (GcRuns(**collector) >= 1) {
        if ((*collector)->Stop(SIGTERM) != 0) return absl::InternalError((*collector)->Log());
        return absl::OkStatus();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return absl::DeadlineExceededError(absl::StrCat("no GC pass; log:\n", (*collector)->Log()));
  }

  // fsck of the shared database and bucket (through A's data directory;
  // both servers stopped).
  RunResult Fsck() const {
    RunOptions options;
    options.env = s3_env;
    return RunProcess({CairnBinary().string(), "fsck", "--data", data_a().string(), "--meta",
                       meta_url, "--blobs", blobs_url},
                      options);
  }
};

#define CAIRN_START_REPLICAS(var, args_a, args_b)                                 \
  CAIRN_REQUIRE_POSTGRES(cairn_pg);                                               \
  CAIRN_REQUIRE_S3(cairn_s3);                                                     \
  Replicas var;                                                                   \
  {                                                                               \
    auto cairn_db = cairn_pg->NewDatabase();                                      \
    ASSERT_TRUE(cairn_db.ok()) << cairn_db.status();                              \
    var.meta_url = *cairn_db;                                                     \
    var.blobs_url = cairn_s3->Url(S3TestServer::UniquePrefix());                  \
    var.s3_env = cairn_s3->Env();                                                 \
    absl::Status cairn_started = var.Start(args_a, args_b);                       \
    ASSERT_TRUE(cairn_started.ok()) << cairn_started;                             \
  }

// Writer threads putting directories of `files_per_put` distinct small
// files through the CLI, each put to a replica from `targets(writer, put)`,
// until `puts_per_writer` puts each (0: until Stop). What the CLI
// acknowledged (exit 0) is recorded file by file; failures by replica.
class Writers {
 public:
  struct Options {
    int writers = 1;
    int files_per_put = 1;
    int puts_per_writer = 0;
    std::vector<const ServerProcess*> servers;  // put i of writer w goes to (w + i) % size
  };
  struct Failure {
    size_t server;
    RunResult result;
  };

  Writers(const fs::path& dir, Options options) : options_(std::move(options)) {
    for (int w = 0; w < options_.writers; ++w) {
      threads_.emplace_back([this, dir, w] {
        for (int i = 0; !stop_ && (options_.puts_per_writer == 0 || i < options_.puts_per_writer);
             ++i) {
          const size_t target = static_cast<size_t>(w + i) % options_.servers.size();
          const fs::path local = dir / absl::StrCat("w", w, "-p", i);
          fs::create_directories(local);
          std::map<std::string, std::string> files;
          for (int f = 0; f < options_.files_per_put; ++f) {
            const std::string name = absl::StrCat("f", f);
            const std::string content = absl::StrCat("writer ", w, " put ", i, " file ", f,
                                                     " via ", target, "\n",
                                                     std::string(100 + 13 * f + i, 'a' + w % 26));
            WriteWholeFile(local / name, content);
            files[absl::StrCat("data/w", w, "/p", i, "/", name)] = content;
          }
          RunOptions run;
          run.env = {"CAIRN_SERVER_WAIT=1"};  // no failover: a dead replica fails fast
          run.timeout = std::chrono::seconds(300);
          RunResult r = RunCli(*options_.servers[target],
                               {"volume", "put", "-q", "shared", local.string(),
                                absl::StrCat("/data/w", w, "/p", i)},
                               run);
          fs::remove_all(local);
          std::lock_guard<std::mutex> lock(mu_);
          if (r.exit_code == 0) {
            acked_.insert(files.begin(), files.end());
            ++acked_puts_;
          } else {
            failures_.push_back({target, std::move(r)});
          }
        }
      });
    }
  }
  ~Writers() { Stop(); }

  void Stop() {
    stop_ = true;
    Join();
  }
  void Join() {
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  int acked_puts() {
    std::lock_guard<std::mutex> lock(mu_);
    return acked_puts_;
  }
  bool WaitForAckedPuts(int n) {
    for (int i = 0; i < 3000; ++i) {
      if (acked_puts() >= n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }
  // After Stop/Join.
  const std::map<std::string, std::string>& acknowledged() const { return acked_; }
  const std::vector<Failure>& failures() const { return failures_; }

 private:
  const Options options_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::map<std::string, std::string> acked_;
  int acked_puts_ = 0;
  std::vector<Failure> failures_;
  std::vector<std::thread> threads_;
};

// Downloads /data through `server` and checks every acknowledged file is
// there with its content; returns how many files the download held.
size_t ExpectAcknowledgedPresent(const ServerProcess& server, const fs::path& dest,
                                 const std::map<std::string, std::string>& acked) {
  RunResult got = RunCli(server, {"volume", "get", "-q", "shared", "/data", dest.string()});
  EXPECT_EQ(got.exit_code, 0) << Describe(got);
  size_t lost = 0;
  for (const auto& [remote, content] : acked) {
    const fs::path local = dest / fs::path(remote).lexically_relative("data");
    if (!fs::exists(local) || ReadWholeFile(local) != content) ++lost;
    EXPECT_TRUE(fs::exists(local)) << "acknowledged " << remote << " missing via "
                                   << server.address();
    if (fs::exists(local)) {
      EXPECT_EQ(ReadWholeFile(local), content) << remote;
    }
    if (lost > 5) break;  // the first few say enough
  }
  size_t files = 0;
  if (fs::exists(dest)) {
    for (const auto& e : fs::recursive_directory_iterator(dest)) files += e.is_regular_file();
  }
  return files;
}

// The volume's snapshots in the shared database: seq 0..N, each the child
// of the one before (one line, no fork). Returns N.
uint64_t ExpectLinearHistory(const std::string& meta_url) {
  auto meta = OpenPostgresMetaStore(meta_url);
  EXPECT_TRUE(meta.ok()) << meta.status();
  if (!meta.ok()) return 0;
  auto volume = (*meta)->GetVolumeByName("default", "shared");
  EXPECT_TRUE(volume.ok()) << volume.status();
  if (!volume.ok()) return 0;
  auto snapshots = (*meta)->ListSnapshots(volume->id);
  EXPECT_TRUE(snapshots.ok()) << snapshots.status();
  if (!snapshots.ok() || snapshots->empty()) return 0;
  std::map<uint64_t, uint64_t> parent_of;
  for (const SnapshotRecord& s : *snapshots) parent_of[s.seq] = s.parent_seq;
  EXPECT_EQ(parent_of.size(), snapshots->size()) << "two snapshots with one seq";
  uint64_t expected = 0;
  for (const auto& [seq, parent] : parent_of) {
    EXPECT_EQ(seq, expected) << "gap in the history";
    if (seq > 0) {
      EXPECT_EQ(parent, seq - 1) << "snapshot " << seq;
    }
    expected = seq + 1;
  }
  auto head = (*meta)->GetHead(volume->id);
  EXPECT_TRUE(head.ok()) << head.status();
  if (head.ok()) {
    EXPECT_EQ(head->seq, parent_of.rbegin()->first);
  }
  return parent_of.rbegin()->first;
}

TEST(ReplicasTest, TwentyWritersThroughTwoReplicasCommitAThousandFiles) {
  CAIRN_START_REPLICAS(r, {}, {});
  RunResult created = RunCli(*r.a, {"volume", "create", "shared"});
  ASSERT_EQ(created.exit_code, 0) << Describe(created);
  // 20 writers x 10 puts x 5 files, puts alternating between A and B.
  constexpr int kWriters = 20, kPuts = 10, kFiles = 5;
  Writers writers(r.dir.path(), {.writers = kWriters,
                                 .files_per_put = kFiles,
                                 .puts_per_writer = kPuts,
                                 .servers = {r.a.get(), r.b.get()}});
  writers.Join();
  for (const Writers::Failure& f : writers.failures()) {
    ADD_FAILURE() << "put via replica " << f.server << " failed: " << Describe(f.result);
  }
  ASSERT_EQ(writers.acknowledged().size(), size_t{kWriters * kPuts * kFiles});

  // The same 1,000 files through either replica, and nothing else.
  EXPECT_EQ(ExpectAcknowledgedPresent(*r.a, r.dir.path() / "via-a", writers.acknowledged()),
            writers.acknowledged().size());
  EXPECT_EQ(ExpectAcknowledgedPresent(*r.b, r.dir.path() / "via-b", writers.acknowledged()),
            writers.acknowledged().size());
  // Listings agree too.
  for (const std::string& dir : {std::string("/data"), std::string("/data/w7")}) {
    RunResult ls_a = RunCli(*r.a, {"volume", "ls", "shared", dir});
    RunResult ls_b = RunCli(*r.b, {"volume", "ls", "shared", dir});
    ASSERT_EQ(ls_a.exit_code, 0) << Describe(ls_a);
    ASSERT_EQ(ls_b.exit_code, 0) << Describe(ls_b);
    EXPECT_EQ(ls_a.out, ls_b.out);
    EXPECT_EQ(std::count(ls_a.out.begin(), ls_a.out.end(), '\n'),
              dir == "/data" ? kWriters : kPuts)
        << ls_a.out;
  }
  // One snapshot per put after the empty one, in one line.
  EXPECT_EQ(ExpectLinearHistory(r.meta_url), uint64_t{kWriters * kPuts});

  ASSERT_EQ(r.a->Stop(SIGTERM), 0) << r.a->Log();
  ASSERT_EQ(r.b->Stop(SIGTERM), 0) << r.b->Log();
  // Orphans only: the directory objects of commit attempts that lost the
  // head race to the other replica (the attempt is rebuilt on the new head).
  RunResult fsck = r.Fsck();
  EXPECT_TRUE(fsck.exit_code == 0 || fsck.exit_code == 3) << Describe(fsck);
  EXPECT_THAT(fsck.out, HasSubstr("0 dangling, 0 corrupt")) << Describe(fsck);
  std::printf("fsck exit %d: %s\n", fsck.exit_code, fsck.out.substr(0, fsck.out.find('\n')).c_str());
  // GC takes exactly those: then fsck is clean and every file still reads.
  absl::Status collected = r.CollectGarbage();
  ASSERT_TRUE(collected.ok()) << collected;
  fsck = r.Fsck();
  EXPECT_EQ(fsck.exit_code, 0) << Describe(fsck);
  EXPECT_THAT(fsck.out, HasSubstr("0 dangling, 0 corrupt, 0 orphans")) << Describe(fsck);
  ASSERT_TRUE(r.a->StartAgain().ok()) << r.a->Log();
  EXPECT_EQ(ExpectAcknowledgedPresent(*r.a, r.dir.path() / "after-gc", writers.acknowledged()),
            writers.acknowledged().size());
}

TEST(ReplicasTest, ReplicaKilledUnderWritersKeepsEveryAcknowledgedPut) {
  CAIRN_START_REPLICAS(r, {}, {});
  RunResult created = RunCli(*r.a, {"volume", "create", "shared"});
  ASSERT_EQ(created.exit_code, 0) << Describe(created);
  const std::string b_address = r.b->address();
  std::vector<Writers::Failure> failures;
  std::map<std::string, std::string> acked;
  {
    Writers writers(r.dir.path(), {.writers = 8, .files_per_put = 3,
                                   .servers = {r.a.get(), r.b.get()}});
    ASSERT_TRUE(writers.WaitForAckedPuts(30));
    EXPECT_EQ(r.b->Stop(SIGKILL), 128 + SIGKILL);
    // Keep writing to both for a while: A's puts land, B's fail.
    const int at_kill = writers.acked_puts();
    ASSERT_TRUE(writers.WaitForAckedPuts(at_kill + 30));
    writers.Stop();
    failures = writers.failures();
    acked = writers.acknowledged();
  }
  // Every put sent to the dead replica after the kill failed, saying which
  // server it could not reach; none sent to A failed.
  int failed_on_b = 0;
  for (const Writers::Failure& f : failures) {
    ASSERT_EQ(f.server, 1u) << "a put via the surviving replica failed: " << Describe(f.result);
    ++failed_on_b;
    EXPECT_EQ(f.result.exit_code, 1) << Describe(f.result);
    EXPECT_THAT(f.result.err, HasSubstr(b_address)) << Describe(f.result);
  }
  EXPECT_GT(failed_on_b, 0) << "no put went to the killed replica";
  std::printf("%zu files acknowledged, %d puts to the killed replica failed, e.g.:\n%s",
              acked.size(), failed_on_b, failures.empty() ? "" : failures[0].result.err.c_str());

  ExpectAcknowledgedPresent(*r.a, r.dir.path() / "via-a", acked);
  ExpectLinearHistory(r.meta_url);
  ASSERT_EQ(r.a->Stop(SIGTERM), 0) << r.a->Log();
  // Clean, or orphans only: blobs B had uploaded for puts it never
  // committed. Never a missing or corrupt object.
  RunResult fsck = r.Fsck();
  EXPECT_TRUE(fsck.exit_code == 0 || fsck.exit_code == 3) << Describe(fsck);
  EXPECT_THAT(fsck.out, HasSubstr("0 dangling, 0 corrupt")) << Describe(fsck);
  std::printf("fsck exit %d: %s\n", fsck.exit_code, fsck.out.substr(0, fsck.out.find('\n')).c_str());
}

TEST(ReplicasTest, GcOnOneReplicaWhileTheOtherCommitsKeepsEveryReferencedBlob) {
  // A collects every second with no grace period; B commits and does not
  // collect. Writers commit through both, so commit attempts that lose the
  // head race to the other replica leave garbage (their directory objects)
  // for A to delete while B's commits go on: only D38's lock keeps A from
  // deleting what a commit on B is about to reference.
  CAIRN_START_REPLICAS(r, (std::vector<std::string>{"--gc-interval", "1", "--gc-grace", "0"}),
                       (std::vector<std::string>{"--gc-interval", "0"}));
  RunResult created = RunCli(*r.b, {"volume", "create", "shared"});
  ASSERT_EQ(created.exit_code, 0) << Describe(created);
  std::vector<Writers::Failure> failures;
  std::map<std::string, std::string> acked;
  int deleted = 0;
  {
    Writers writers(r.dir.path(),
                    {.writers = 6, .files_per_put = 3, .servers = {r.b.get(), r.a.get()}});
    ASSERT_TRUE(writers.WaitForAckedPuts(60));
    // Until A has deleted something under the commits (bounded).
    for (int i = 0; i < 3000 && deleted <= 0; ++i) {
      deleted = Counter(*r.a, "cairn_gc_blobs_deleted_total");
      if (deleted <= 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    writers.Stop();
    failures = writers.failures();
    acked = writers.acknowledged();
  }
  EXPECT_GT(deleted, 0) << "A's GC never found garbage to delete: " << r.a->Log();
  // With no grace period, A may delete a put's uploads before its commit
  // (the grace period is what protects uploads in flight); the commit then
  // refuses to reference them. Nothing else may fail.
  for (const Writers::Failure& f : failures) {
    EXPECT_THAT(f.result.err, HasSubstr("is not stored")) << Describe(f.result);
  }
  EXPECT_GT(GcRuns(*r.a), 0) << "A never finished a GC pass: " << r.a->Log();
  std::printf("%d puts acknowledged, %zu failed; A: %d GC passes, %d blobs deleted\n",
              static_cast<int>(acked.size() / 3), failures.size(), GcRuns(*r.a),
              Counter(*r.a, "cairn_gc_blobs_deleted_total"));
  if (!failures.empty()) std::printf("e.g.: %s", failures[0].result.err.c_str());

  ExpectAcknowledgedPresent(*r.a, r.dir.path() / "via-a", acked);
  ExpectLinearHistory(r.meta_url);
  ASSERT_EQ(r.a->Stop(SIGTERM), 0) << r.a->Log();
  ASSERT_EQ(r.b->Stop(SIGTERM), 0) << r.b->Log();
  RunResult fsck = r.Fsck();
  EXPECT_TRUE(fsck.exit_code == 0 || fsck.exit_code == 3) << Describe(fsck);
  EXPECT_THAT(fsck.out, HasSubstr("0 dangling, 0 corrupt")) << Describe(fsck);
  std::printf("fsck exit %d: %s\n", fsck.exit_code, fsck.out.substr(0, fsck.out.find('\n')).c_str());
}

}  // namespace
}  // namespace cairn::e2e
