// A real FUSE mount over a control plane whose blobs are in S3 (a real
// versitygw): the mounter reads file data straight from the bucket with
// signed URLs, so the control plane sends (almost) none of it; with
// --no-direct-reads the same read goes through the control plane.
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "core/testing/s3_server.h"
#include "e2e/mount_fixture.h"

namespace cairn::e2e {
namespace {

using ::cairn::testing::S3TestServer;

// cairn_bytes_out_total on the server's /metrics: blob and file bytes the
// control plane sent.
double BytesOut(const ServerProcess& server) {
  auto [code, body] = server.HttpGet("/metrics");
  EXPECT_EQ(code, 200);
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    if (!absl::StartsWith(line, "cairn_bytes_out_total")) continue;
    double v = 0;
    std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
    if (parts.size() >= 2 && absl::SimpleAtod(parts.back(), &v)) return v;
  }
  return 0;
}

class S3MountTest : public MountTest {};

TEST_F(S3MountTest, MountsReadBlobsFromTheBucketUnlessToldNot) {
  CAIRN_REQUIRE_S3(s3);
  const std::filesystem::path data = dir_->path() / ("s3-data-" + std::to_string(counter_++));
  auto server = ServerProcess::Start(
      {.data_dir = data,
       .extra_args = {"--blobs", s3->Url(S3TestServer::UniquePrefix())},
       .env = s3->Env()});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string volume = "s3-direct";
  ASSERT_EQ(RunCli(**server, {"volume", "create", volume}).exit_code, 0);
  const std::filesystem::path local = dir_->path() / "s3-big.bin";
  constexpr uint64_t kSize = (24 << 20) + 4321;  // 7 chunks
  ASSERT_TRUE(WriteRandomFile(local, kSize, 11).ok());
  const std::string want = Slurp(local);
  for (const char* name : {"a.bin", "b.bin", "c.bin"}) {
    RunResult put = RunCli(**server, {"volume", "put", volume, local.string(), name});
    ASSERT_EQ(put.exit_code, 0) << Describe(put);
  }

  // Direct: the file's bytes come from the bucket, not the control plane.
  // Each mount gets its own node cache, so nothing is read from a cache.
  const double before = BytesOut(**server);
  {
    MOUNT_OR_RETURN(m, volume, {"--cache-dir", (dir_->path() / "cache-a").string()}, {},
                    server->get());
    EXPECT_TRUE(Slurp(*m / "a.bin") == want);
    EXPECT_EQ(m->Unmount(), 0) << m->Log();
  }
  const double direct = BytesOut(**server) - before;
  EXPECT_LT(direct, kSize / 10) << "the control plane sent " << direct << " bytes";

  // --no-direct-reads: the same read through the control plane.
  {
    MOUNT_OR_RETURN(m, volume,
                    {"--no-direct-reads", "--cache-dir", (dir_->path() / "cache-b").string()}, {},
                    server->get());
    EXPECT_TRUE(Slurp(*m / "b.bin") == want);
    EXPECT_EQ(m->Unmount(), 0) << m->Log();
  }
  const double through = BytesOut(**server) - before - direct;
  EXPECT_GE(through, static_cast<double>(kSize)) << "the control plane sent " << through;

  // Reads that the object store does not answer fall back to the control
  // plane: core/direct_fetch_blob_store_test.cc (a URL nobody answers, an
  // expired one); every other mount test runs over local blobs, where the
  // control plane answers GetObjectUrls with UNIMPLEMENTED and the mounter
  // reads through it.
}

}  // namespace
}  // namespace cairn::e2e
