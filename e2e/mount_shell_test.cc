// `cairn shell`: mounts the volumes for one command and commits on exit.
// Real `cairn server` and `cairn mount` processes and kernel mounts over the
// shared fixture (e2e/mount_fixture.h); needs root and /dev/fuse.

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "e2e/mount_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn::e2e {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

TEST_F(MountTest, ShellMountsVolumesAndCommitsOnExit) {
  std::string vol = NewVolume();
  RunOptions options;
  options.env = {absl::StrCat("CAIRN_CACHE_DIR=", (dir_->path() / "cache").string())};
  RunResult r = RunCli(*server_,
                       {"shell", "--volume", vol, "--", "/bin/sh", "-c",
                        absl::StrCat("echo from-shell > /mnt/", vol, "/s.txt; exit 3")},
                       options);
  EXPECT_EQ(r.exit_code, 3) << Describe(r);
  EXPECT_EQ(HeadFile(vol, "s.txt"), "from-shell\n");
  EXPECT_FALSE(IsMountedAt(fs::path("/mnt") / vol));
  std::error_code ec;
  fs::remove(fs::path("/mnt") / vol, ec);
}

// A SIGINT to the foreground process group (Ctrl-C in a terminal) is the
// command's business: `cairn shell` and its mounters stay up until the
// command exits, then commit. Run in a new session so the SIGINT reaches
// only cairn's group.
TEST_F(MountTest, ShellSurvivesCtrlCHandledByTheCommand) {
  std::string vol = NewVolume();
  std::vector<std::string> argv = {"/usr/bin/setsid", "-w", CairnBinary().string(), "shell",
                                   "--volume", vol, "--", "/bin/sh", "-c",
                                   absl::StrCat("trap '' INT; kill -INT 0; sleep 0.5; "
                                                "echo after > /mnt/", vol, "/x && exit 4")};
  RunOptions options;
  options.env = server_->ClientEnv();
  options.env.push_back(absl::StrCat("CAIRN_CACHE_DIR=", (dir_->path() / "cache").string()));
  RunResult r = RunProcess(argv, options);
  EXPECT_EQ(r.exit_code, 4) << Describe(r);
  EXPECT_EQ(HeadFile(vol, "x"), "after\n");
  EXPECT_FALSE(IsMountedAt(fs::path("/mnt") / vol));
  std::error_code ec;
  fs::remove_all(fs::path("/mnt") / vol, ec);
}

}  // namespace
}  // namespace cairn::e2e
