#include "operator/server.h"

#include <httplib.h>

#include <atomic>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/testing/postgres_server.h"
#include "core/testing/temp_dir.h"
#include "gmock/gmock.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "operator/flags.h"
#include "operator/periodic_runner.h"

namespace cairn::operator_ {
namespace {

using ::testing::HasSubstr;

ServerOptions Options(const testing::TempDir& dir) {
  ServerOptions o;
  o.data_dir = dir.path() / "data";
  o.listen = "127.0.0.1:0";
  o.metrics_listen = "127.0.0.1:0";
  o.gc_interval = std::chrono::seconds(0);
  return o;
}

httplib::Result Get(int port, const std::string& path, const std::string& token = "") {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(2, 0);
  httplib::Headers headers;
  if (!token.empty()) headers.emplace("Authorization", absl::StrCat("Bearer ", token));
  return client.Get(path.c_str(), headers);
}

// The metrics name every namespace and volume; off loopback they get the
// API's rule: a token, or an explicit --metrics-public. Before, any
// --metrics-listen was accepted and served to anyone.
TEST(ServerTest, MetricsOffLoopbackWithoutATokenAreRefusedLeavingNothing) {
  testing::TempDir dir;
  ServerOptions o = Options(dir);
  o.metrics_listen = "0.0.0.0:0";
  absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(o);
  ASSERT_TRUE(absl::IsFailedPrecondition(server.status())) << server.status();
  EXPECT_THAT(server.status().message(), HasSubstr("--metrics-public"));
  EXPECT_FALSE(std::filesystem::exists(o.data_dir));
}

TEST(ServerTest, MetricsPublicServesMetricsToAnyone) {
  testing::TempDir dir;
  ServerOptions o = Options(dir);
  o.metrics_listen = "0.0.0.0:0";
  o.metrics_public = true;
  auto server = Server::Start(o);
  ASSERT_TRUE(server.ok()) << server.status();
  auto res = Get((*server)->metrics_port(), "/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST(ServerTest, WithATokenMetricsNeedItAndProbesDoNot) {
  testing::TempDir dir;
  ServerOptions o = Options(dir);
  o.metrics_listen = "0.0.0.0:0";
  o.token = "s3cret";
  auto server = Server::Start(o);
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->metrics_port();
  auto anonymous = Get(port, "/metrics");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  EXPECT_EQ(Get(port, "/metrics", "wrong")->status, 401);
  EXPECT_EQ(Get(port, "/metrics", "s3cret")->status, 200);
  EXPECT_EQ(Get(port, "/healthz")->status, 200);
  EXPECT_EQ(Get(port, "/readyz")->status, 200);
}

TEST(ServerTest, ReadyzRunsEveryRegisteredCheck) {
  testing::TempDir dir;
  auto server = Server::Start(Options(dir));
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->metrics_port();
  EXPECT_EQ(Get(port, "/readyz")->status, 200);  // the store answers
  std::atomic<bool> synced{false};
  (*server)->http()->AddReadinessCheck("controller", [&]() -> absl::Status {
    if (synced) return absl::OkStatus();
    return absl::UnavailableError("informers not synced");
  });
  auto res = Get(port, "/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_THAT(res->body, HasSubstr("controller: informers not synced"));
  synced = true;
  EXPECT_EQ(Get(port, "/readyz")->status, 200);
}

TEST(PeriodicRunnerTest, RunsEachTaskEveryIntervalUntilStopped) {
  std::atomic<int> runs{0};
  std::atomic<int> failures{0};
  PeriodicRunner runner;
  runner.Add("count", absl::Milliseconds(20), [&] {
    ++runs;
    return absl::OkStatus();
  });
  runner.Add("fail", absl::Milliseconds(20), [&] {
    ++failures;
    return absl::InternalError("keeps failing");
  });
  runner.Add("never", absl::ZeroDuration(), [] { return absl::InternalError("must not run"); });
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while ((runs < 3 || failures < 3) && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_GE(runs.load(), 3);
  EXPECT_GE(failures.load(), 3);  // a failing task keeps its schedule
  runner.Stop();
  const int after = runs.load();
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(runs.load(), after);
}

TEST(ServerFlagsTest, MetricsPublicIsAFlagWithoutValue) {
  auto o = ParseServerFlags({"--data", "/tmp/x", "--metrics-public"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->metrics_public);
  EXPECT_TRUE(absl::IsInvalidArgument(
      ParseServerFlags({"--data", "/tmp/x", "--metrics-public=yes"}).status()));
}

TEST(ServerFlagsTest, RefusalsNameTheFlag) {
  auto message = [](const std::vector<std::string>& args) {
    return std::string(ParseServerFlags(args).status().message());
  };
  EXPECT_EQ(message({"--data", "/tmp/x", "--bogus"}), "unknown flag '--bogus'");
  EXPECT_EQ(message({"--data", "/tmp/x", "--gc-grace"}), "--gc-grace needs a value");
  EXPECT_EQ(message({"--data", "/tmp/x", "--gc-grace=soon"}), "--gc-grace: 'soon' is not an integer");
  EXPECT_EQ(message({"--data", "/tmp/x", "--gc-interval", "-5"}), "--gc-interval: -5 is not at least 0");
  auto o = ParseServerFlags({"--data=/tmp/x", "--gc-interval", "0", "--gc-grace=60"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->gc_interval, std::chrono::seconds(0));
  EXPECT_EQ(o->gc_grace, std::chrono::seconds(60));
}

TEST(ServerFlagsTest, BlobsTakesAnS3UrlCheckedAtOnce) {
  ::setenv("AWS_ACCESS_KEY_ID", "AK", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "SK", 1);
  auto o = ParseServerFlags(
      {"--data", "/tmp/x", "--blobs", "s3://bucket/p?endpoint=http://127.0.0.1:9000"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->blobs, "s3://bucket/p?endpoint=http://127.0.0.1:9000");
  auto bad = ParseServerFlags({"--data", "/tmp/x", "--blobs=/var/blobs"});
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status()));
  EXPECT_TRUE(absl::StartsWith(bad.status().message(), "--blobs: ")) << bad.status();
  ::unsetenv("AWS_ACCESS_KEY_ID");
  ::unsetenv("AWS_SECRET_ACCESS_KEY");
  auto no_creds = ParseServerFlags({"--data", "/tmp/x", "--blobs", "s3://bucket"});
  EXPECT_TRUE(absl::IsInvalidArgument(no_creds.status()));
  EXPECT_TRUE(absl::StrContains(no_creds.status().message(), "AWS_ACCESS_KEY_ID"));
  EXPECT_TRUE(ParseServerFlags({"--data", "/tmp/x"})->blobs.empty());
}

TEST(ServerFlagsTest, MetadataInPostgresFromAFlagAFileOrTheEnvironment) {
  auto o = ParseServerFlags({"--data", "/tmp/x", "--meta", "postgres://db.example/cairn"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->meta_url, "postgres://db.example/cairn");
  EXPECT_TRUE(ParseServerFlags({"--data", "/tmp/x"})->meta_url.empty());
  // Only PostgreSQL URLs; a path is a mistake for --data.
  auto bad = ParseServerFlags({"--data", "/tmp/x", "--meta", "/var/lib/cairn/meta.db"});
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status())) << bad.status();
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("--meta: expected a postgres://"));
  // From a file (a mounted Secret), password included and off the command line.
  testing::TempDir dir;
  const std::string file = (dir.path() / "url").string();
  {
    std::ofstream out(file);
    out << "postgresql://cairn:pw@db.example:5433/cairn?sslmode=require\n";
  }
  o = ParseServerFlags({"--data", "/tmp/x", "--meta-file", file});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->meta_url, "postgresql://cairn:pw@db.example:5433/cairn?sslmode=require");
  auto missing = ParseServerFlags({"--data", "/tmp/x", "--meta-file", file + ".missing"});
  EXPECT_TRUE(absl::IsInvalidArgument(missing.status())) << missing.status();
  // Or from the environment when no flag names one.
  ::setenv("CAIRN_META_URL", "postgres://env.example/cairn", 1);
  o = ParseServerFlags({"--data", "/tmp/x"});
  auto flag_wins = ParseServerFlags({"--data", "/tmp/x", "--meta", "postgres://flag/cairn"});
  ::unsetenv("CAIRN_META_URL");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->meta_url, "postgres://env.example/cairn");
  EXPECT_EQ(flag_wins->meta_url, "postgres://flag/cairn");
}

// Two servers, each with its own data directory (blobs, key file), over one
// PostgreSQL database: a volume created through one is seen by the other;
// a server whose master key does not open the shared volumes is refused.
TEST(ServerTest, ServersOverOnePostgresShareTheMetadata) {
  CAIRN_REQUIRE_POSTGRES(pg);
  testing::TempDir dir_a, dir_b, dir_c;
  ServerOptions a_options = Options(dir_a);
  a_options.meta_url = pg->NewDatabase().value();
  auto a = Server::Start(a_options);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE((*a)->engine().CreateVolume("", "shared", 2).ok());
  httplib::Result ready = Get((*a)->metrics_port(), "/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200) << ready->body;

  // The same master key: copied, as replicas share one Secret.
  std::filesystem::create_directories(dir_b.path() / "data");
  std::filesystem::copy_file(dir_a.path() / "data" / "master.key",
                             dir_b.path() / "data" / "master.key");
  ServerOptions b_options = Options(dir_b);
  b_options.meta_url = a_options.meta_url;
  auto b = Server::Start(b_options);
  ASSERT_TRUE(b.ok()) << b.status();
  auto seen = (*b)->engine().GetVolume("", "shared");
  EXPECT_TRUE(seen.ok()) << seen.status();

  // Without a key file it would refuse to mint one (the database has
  // volumes); with another key it is refused too, naming why.
  std::filesystem::create_directories(dir_c.path() / "data");
  {
    std::ofstream key(dir_c.path() / "data" / "master.key", std::ios::binary);
    key << std::string(32, 'z');
  }
  std::filesystem::permissions(dir_c.path() / "data" / "master.key",
                               std::filesystem::perms::owner_read |
                                   std::filesystem::perms::owner_write);
  ServerOptions c_options = Options(dir_c);
  c_options.meta_url = a_options.meta_url;
  auto c = Server::Start(c_options);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(c.status())) << c.status();
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("made under another master key"));
}

}  // namespace
}  // namespace cairn::operator_
