// /readyz of a real `cairn server` follows its metadata store: with the
// database file gone from the data directory (the server would write into
// a deleted file) it answers 503 naming the "store" check, and 200 again
// once the file is back.
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "core/testing/temp_dir.h"
#include "e2e/harness.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn::e2e {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

TEST(ReadyzTest, FailsWhileTheMetadataStoreIsBrokenAndRecovers) {
  cairn::testing::TempDir dir;
  auto server = ServerProcess::Start({.data_dir = dir.path() / "data"});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ((*server)->HttpGet("/readyz").first, 200);
  RunResult made = RunCli(**server, {"volume", "create", "before"});
  ASSERT_EQ(made.exit_code, 0) << made.err;

  const fs::path db = dir.path() / "data" / "meta.db";
  ASSERT_TRUE(fs::exists(db));
  fs::rename(db, dir.path() / "aside.db");
  auto [code, body] = (*server)->HttpGet("/readyz");
  EXPECT_EQ(code, 503);
  EXPECT_THAT(body, HasSubstr("store: "));
  EXPECT_THAT(body, HasSubstr("meta.db is gone"));
  EXPECT_EQ((*server)->HttpGet("/healthz").first, 200);  // alive, not ready

  fs::rename(dir.path() / "aside.db", db);
  EXPECT_EQ((*server)->HttpGet("/readyz").first, 200);
  RunResult listed = RunCli(**server, {"volume", "list"});
  EXPECT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_THAT(listed.out, HasSubstr("before"));
}

}  // namespace
}  // namespace cairn::e2e
