// csi-sanity (kubernetes-csi/csi-test, pinned in scripts/go-tools.sh)
// against `cairn-csi --mode all` with a real control plane and real FUSE
// mounts. The binary is built on demand, so a fresh machine runs this too.
#include <regex>

#include "e2e/csi/csi_fixture.h"

namespace cairn::e2e {
namespace {

namespace fs = std::filesystem;

TEST(CsiSanityTest, ConformanceSuitePasses) {
  CAIRN_REQUIRE_FUSE();
  RunOptions tools;
  tools.timeout = std::chrono::seconds(1800);
  RunResult built = RunProcess({"/bin/bash", std::string(CAIRN_SOURCE_DIR) + "/scripts/go-tools.sh",
                                "csi-sanity"},
                               tools);
  if (built.exit_code != 0) {
    if (InCi()) FAIL() << "cannot build csi-sanity:\n" << built.err;
    GTEST_SKIP() << "cannot build csi-sanity:\n" << built.err;
  }
  std::string sanity = built.out.substr(0, built.out.find_last_not_of("\n") + 1);
  sanity = sanity.substr(sanity.find_last_of('\n') + 1);
  ASSERT_TRUE(fs::exists(sanity)) << "go-tools.sh printed " << built.out;

  cairn::testing::TempDir dir;
  auto server = ServerProcess::Start({.data_dir = dir.path() / "data"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto plugin = Plugin::Start(dir.path(), (*server)->address(), {"--mode", "all"});
  ASSERT_TRUE(plugin.ok()) << plugin.status();

  RunOptions run;
  run.timeout = std::chrono::seconds(900);
  RunResult r = RunProcess({sanity, "-csi.endpoint", (*plugin)->socket().string(),
                            "-csi.mountdir", (dir.path() / "mnt").string(),
                            "-csi.stagingdir", (dir.path() / "stage").string(),
                            "-ginkgo.no-color"},
                           run);
  std::smatch m;
  std::regex summary(R"((\d+) Passed \| (\d+) Failed \| (\d+) Pending \| (\d+) Skipped)");
  ASSERT_TRUE(std::regex_search(r.out, m, summary)) << r.out << r.err;
  int passed = std::stoi(m[1]);
  int failed = std::stoi(m[2]);
  std::printf("csi-sanity: %d passed, %d failed, %s pending, %s skipped\n", passed, failed,
              m[3].str().c_str(), m[4].str().c_str());
  EXPECT_EQ(r.exit_code, 0) << r.out.substr(r.out.size() > 20000 ? r.out.size() - 20000 : 0);
  EXPECT_EQ(failed, 0);
  EXPECT_GT(passed, 30);
  // Nothing the suite published is left mounted.
  std::string mountinfo = ReadWholeFile("/proc/self/mountinfo");
  EXPECT_EQ(mountinfo.find((dir.path() / "mnt").string()), std::string::npos) << mountinfo;
  (*plugin)->child().Signal(SIGTERM);
  EXPECT_EQ((*plugin)->child().Wait(), 0) << (*plugin)->Log();
}

}  // namespace
}  // namespace cairn::e2e
