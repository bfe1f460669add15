// `cairn server --blobs s3://…` over a real S3 server (versitygw): the CLI
// round trip stores every blob in the bucket and nothing in the data
// directory, fsck over the same bucket is clean, and bad --blobs values are
// refused at start with a message that says why.
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/s3_client.h"
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

// Keys under `prefix` in the test bucket.
int CountObjects(const S3TestServer& s3, const std::string& prefix) {
  auto client = S3Client::Create(s3.Config(""));
  EXPECT_TRUE(client.ok()) << client.status();
  int n = 0;
  absl::Status st = (*client)->ListObjects(absl::StrCat(prefix, "/"), "",
                                           [&](const S3Client::ObjectInfo&) { ++n; }, nullptr);
  EXPECT_TRUE(st.ok()) << st;
  return n;
}

TEST(S3ServerTest, CliRoundTripKeepsBlobsInTheBucketAndFsckIsClean) {
  CAIRN_REQUIRE_S3(s3);
  cairn::testing::TempDir dir;
  const std::string prefix = S3TestServer::UniquePrefix();
  const std::string url = s3->Url(prefix);
  auto server = ServerProcess::Start(
      {.data_dir = dir.path() / "data", .extra_args = {"--blobs", url}, .env = s3->Env()});
  ASSERT_TRUE(server.ok()) << server.status();

  auto ok = [&](const std::vector<std::string>& args) {
    RunResult r = RunCli(**server, args);
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    return r.out;
  };
  ok({"volume", "create", "weights"});
  const fs::path small = dir.path() / "small.txt";
  WriteWholeFile(small, "hello from s3\n");
  const fs::path big = dir.path() / "big.bin";
  ASSERT_TRUE(WriteRandomFile(big, (9 << 20) + 12345, 7).ok());  // three chunks
  ok({"volume", "put", "weights", small.string(), "/docs/"});
  ok({"volume", "put", "weights", big.string(), "/model.bin"});
  EXPECT_EQ(ok({"volume", "get", "weights", "docs/small.txt", "-"}), "hello from s3\n");
  const fs::path back = dir.path() / "back.bin";
  ok({"volume", "get", "weights", "model.bin", back.string()});
  EXPECT_TRUE(ReadWholeFile(back) == ReadWholeFile(big));
  EXPECT_THAT(ok({"volume", "ls", "weights"}), HasSubstr("model.bin"));

  // Every blob went to the bucket; the data directory holds none.
  EXPECT_GT(CountObjects(*s3, prefix), 3);
  EXPECT_FALSE(fs::exists(dir.path() / "data" / "blobs"));

  ASSERT_EQ((*server)->Stop(SIGTERM), 0) << (*server)->Log();
  RunOptions env;
  env.env = s3->Env();
  RunResult fsck = RunProcess(
      {CairnBinary().string(), "fsck", "--data", (dir.path() / "data").string(), "--blobs", url},
      env);
  EXPECT_EQ(fsck.exit_code, 0) << Describe(fsck);
  EXPECT_THAT(fsck.out, HasSubstr("0 dangling, 0 corrupt, 0 orphans"));

  // Without --blobs, fsck looks in the (empty) data directory and says the
  // blobs are missing: the flag matters.
  RunResult local =
      RunProcess({CairnBinary().string(), "fsck", "--data", (dir.path() / "data").string()});
  EXPECT_EQ(local.exit_code, 4) << Describe(local);

  // A restart over the same bucket serves the same data.
  ASSERT_TRUE((*server)->StartAgain().ok()) << (*server)->Log();
  EXPECT_EQ(ok({"volume", "get", "weights", "docs/small.txt", "-"}), "hello from s3\n");
}

TEST(S3ServerTest, BadBlobsFlagsAreRefusedAtStart) {
  CAIRN_REQUIRE_S3(s3);
  cairn::testing::TempDir dir;
  auto run = [&](const std::string& url, std::vector<std::string> env) {
    RunOptions o;
    o.env = std::move(env);
    o.unset_env = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SHARED_CREDENTIALS_FILE"};
    o.timeout = std::chrono::seconds(120);
    return RunProcess({CairnBinary().string(), "server", "--data", (dir.path() / "d").string(),
                       "--listen", "127.0.0.1:0", "--metrics-listen", "", "--blobs", url},
                      o);
  };
  RunResult r = run("file:///tmp/x", s3->Env());
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("s3://"));
  r = run(s3->Url("p"), {});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("AWS_ACCESS_KEY_ID"));
  r = run(absl::StrCat("s3://no-such-bucket/p?endpoint=", s3->endpoint()), s3->Env());
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("no-such-bucket"));
  r = run(s3->Url("p"), {"AWS_ACCESS_KEY_ID=cairntestaccess", "AWS_SECRET_ACCESS_KEY=wrong"});
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("403"));
}

}  // namespace
}  // namespace cairn::e2e
