// A real `cairn server --meta postgres://...` over a real PostgreSQL
// (core/testing/postgres_server.h), driven by the real `cairn` CLI:
//  - the server SIGKILLed while writers commit: every put the CLI
//    acknowledged is there after a restart, and fsck finds nothing missing;
//  - PostgreSQL restarted under load: puts fail while it is down (the
//    server answers Unavailable, /readyz 503), succeed once it is back, and
//    nothing acknowledged is lost.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/testing/postgres_server.h"
#include "core/testing/temp_dir.h"
#include "e2e/harness.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn::e2e {
namespace {

namespace fs = std::filesystem;
using ::cairn::testing::PostgresServer;

// Writers putting distinct files through the CLI until stopped; what the
// CLI acknowledged (exit 0) is recorded.
class Writers {
 public:
  Writers(const ServerProcess& server, const fs::path& dir, int n) {
    for (int w = 0; w < n; ++w) {
      threads_.emplace_back([this, &server, dir, w] {
        for (int i = 0; !stop_; ++i) {
          const std::string remote = absl::StrCat("/w", w, "/f", i);
          const std::string content = absl::StrCat("writer ", w, " file ", i, "\n",
                                                   std::string(1000 + 37 * i, 'a' + w));
          const fs::path local = dir / absl::StrCat("w", w, "-", i);
          WriteWholeFile(local, content);
          RunOptions options;
          options.env = {"CAIRN_SERVER_WAIT=1"};  // fail fast while the server is gone
          options.timeout = std::chrono::seconds(120);
          RunResult r = RunCli(server, {"volume", "put", "shared", local.string(), remote},
                               options);
          std::lock_guard<std::mutex> lock(mu_);
          if (r.exit_code == 0) {
            acked_[remote] = content;
          } else {
            ++failed_;
            last_error_ = r.err;
          }
          fs::remove(local);
        }
      });
    }
  }
  ~Writers() { Stop(); }

  void Stop() {
    stop_ = true;
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  size_t acked() {
    std::lock_guard<std::mutex> lock(mu_);
    return acked_.size();
  }
  int failed() {
    std::lock_guard<std::mutex> lock(mu_);
    return failed_;
  }
  bool WaitForAcked(size_t n) {
    for (int i = 0; i < 1200; ++i) {
      if (acked() >= n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }
  // After Stop.
  const std::map<std::string, std::string>& acknowledged() const { return acked_; }
  const std::string& last_error() const { return last_error_; }

 private:
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::map<std::string, std::string> acked_;
  int failed_ = 0;
  std::string last_error_;
  std::vector<std::thread> threads_;
};

void ExpectAllPresent(const ServerProcess& server, const std::map<std::string, std::string>& acked) {
  for (const auto& [remote, content] : acked) {
    RunResult got = RunCli(server, {"volume", "get", "shared", remote, "-"});
    ASSERT_EQ(got.exit_code, 0) << "acknowledged " << remote << " lost: " << got.err;
    EXPECT_EQ(got.out, content) << remote;
  }
}

// fsck of the data directory and database: 0 clean, 3 only orphans (a put
// cut off after uploading); never 4 (something referenced missing).
void ExpectFsckIntact(const fs::path& data, const std::string& url) {
  RunResult fsck = RunProcess({CairnBinary().string(), "fsck", "--data", data.string(), "--meta",
                               url});
  EXPECT_TRUE(fsck.exit_code == 0 || fsck.exit_code == 3) << fsck.out << fsck.err;
}

TEST(PostgresServerTest, KilledMidCommitKeepsEveryAcknowledgedPut) {
  CAIRN_REQUIRE_POSTGRES(pg);
  const std::string url = pg->NewDatabase().value();
  cairn::testing::TempDir dir;
  const fs::path data = dir.path() / "data";
  auto server = ServerProcess::Start({.data_dir = data, .extra_args = {"--meta", url}});
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_EQ(RunCli(**server, {"volume", "create", "shared"}).exit_code, 0);
  {
    Writers writers(**server, dir.path(), 4);
    ASSERT_TRUE(writers.WaitForAcked(12));
    EXPECT_EQ((*server)->Stop(SIGKILL), 128 + SIGKILL);
    writers.Stop();
    ASSERT_TRUE((*server)->StartAgain().ok()) << (*server)->Log();
    ExpectAllPresent(**server, writers.acknowledged());
  }
  (*server)->Stop();
  ExpectFsckIntact(data, url);
}

TEST(PostgresServerTest, DatabaseRestartedUnderLoadFailsUnavailableThenRecovers) {
  absl::StatusOr<std::unique_ptr<PostgresServer>> own = PostgresServer::Start();
  if (!own.ok()) {
    if (cairn::testing::PostgresRequired()) FAIL() << own.status();
    GTEST_SKIP() << own.status();
  }
  PostgresServer& pg = **own;
  const std::string url = pg.NewDatabase().value();
  cairn::testing::TempDir dir;
  const fs::path data = dir.path() / "data";
  auto server = ServerProcess::Start({.data_dir = data, .extra_args = {"--meta", url}});
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_EQ(RunCli(**server, {"volume", "create", "shared"}).exit_code, 0);
  Writers writers(**server, dir.path(), 3);
  ASSERT_TRUE(writers.WaitForAcked(6));
  ASSERT_TRUE(pg.Stop(/*immediate=*/false).ok());
  // Down: not ready, naming the store; requests fail as unavailable.
  auto [code, body] = (*server)->HttpGet("/readyz");
  EXPECT_EQ(code, 503);
  EXPECT_THAT(body, ::testing::HasSubstr("store: "));
  RunOptions fail_fast;
  fail_fast.env = {"CAIRN_SERVER_WAIT=1"};
  RunResult listed = RunCli(**server, {"volume", "list"}, fail_fast);
  EXPECT_EQ(listed.exit_code, 1);
  // The message says it is the database, not the control plane, that is gone.
  EXPECT_THAT(listed.err, ::testing::ContainsRegex("[Pp]ostgre")) << listed.err;
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const int failed_while_down = writers.failed();
  ASSERT_TRUE(pg.Restart().ok());
  EXPECT_EQ((*server)->HttpGet("/readyz").first, 200);
  const size_t before = writers.acked();
  ASSERT_TRUE(writers.WaitForAcked(before + 6)) << writers.last_error();
  writers.Stop();
  EXPECT_GT(failed_while_down, 0) << "no put ran while the database was down";
  ExpectAllPresent(**server, writers.acknowledged());
  (*server)->Stop();
  ExpectFsckIntact(data, url);
}

}  // namespace
}  // namespace cairn::e2e
