// Crash test: a child process commits in a loop on a real data directory
// and is killed with SIGKILL at random moments. After every kill the data
// directory must open (the lock dies with its owner), fsck must find
// nothing missing or damaged, and every commit the child acknowledged
// (reported only after Commit returned) must be there with its content.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <iostream>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "core/data_dir.h"
#include "core/files.h"
#include "core/fsck.h"
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

}  // namespace
}  // namespace cairn
