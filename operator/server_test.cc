#include "operator/server.h"

#include <httplib.h>

#include <atomic>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
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

}  // namespace
}  // namespace cairn::operator_
