// A control-plane outage as a pod sees it: a real `cairn server` is
// SIGKILLed under a real FUSE mount and restarted on the same port. Reads of
// uncached data and commits wait for it (up to the mount's --read-timeout)
// and resume within 2 s of its return, whatever the outage length; past the
// timeout a read fails with EAGAIN (docs/mounter.md). Needs root and /dev/fuse: fails when
// CI=true and they are missing, skips otherwise.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/testing/temp_dir.h"
#include "e2e/harness.h"
#include "gtest/gtest.h"

namespace cairn::e2e {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr uint64_t kChunk = 4 << 20;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

bool MountedAt(const fs::path& mp) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(" " + mp.string() + " ") != std::string::npos) return true;
  }
  return false;
}

// pread of `n` bytes at `offset`; the errno on failure.
struct ReadResult {
  std::string data;
  int err = 0;
};
ReadResult ReadAt(const fs::path& path, uint64_t offset, size_t n) {
  ReadResult r;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    r.err = errno;
    return r;
  }
  r.data.resize(n);
  ssize_t got = ::pread(fd, r.data.data(), n, static_cast<off_t>(offset));
  if (got < 0) r.err = errno;
  r.data.resize(got < 0 ? 0 : static_cast<size_t>(got));
  ::close(fd);
  return r;
}

class OutageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0 || ::access("/dev/fuse", R_OK | W_OK) != 0) {
      const char* ci = std::getenv("CI");
      if (ci != nullptr && std::string(ci) == "true") FAIL() << "needs root and /dev/fuse";
      GTEST_SKIP() << "needs root and /dev/fuse";
    }
    auto server = ServerProcess::Start({.data_dir = dir_.path() / "data"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_EQ(RunCli(*server_, {"volume", "create", "v"}).exit_code, 0);
    // Three chunks; the mount's fresh cache holds none of them.
    ASSERT_TRUE(WriteRandomFile(dir_.path() / "big", 3 * kChunk, 7).ok());
    RunResult put = RunCli(*server_, {"volume", "put", "v", (dir_.path() / "big").string(), "/big"});
    ASSERT_EQ(put.exit_code, 0) << put.err;
    big_ = ReadWholeFile(dir_.path() / "big");
  }

  void TearDown() override {
    if (mount_ != nullptr) {
      RunProcess({"/usr/bin/fusermount3", "-u", mountpoint_.string()});
      mount_->Wait(60s);
    }
  }

  void MountIt(std::vector<std::string> extra = {}) {
    mountpoint_ = dir_.path() / "mnt";
    fs::create_directories(mountpoint_);
    std::vector<std::string> argv = {CairnBinary().string(), "mount", "v", mountpoint_.string(),
                                     "--cache-dir", (dir_.path() / "cache").string(),
                                     "--commit-interval", "3600"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto child = Child::Spawn(argv, server_->ClientEnv(), dir_.path() / "mount.log");
    ASSERT_TRUE(child.ok()) << child.status();
    mount_ = std::move(*child);
    const auto deadline = Clock::now() + 20s;
    struct stat st;
    while (!(MountedAt(mountpoint_) && ::stat(mountpoint_.c_str(), &st) == 0)) {
      ASSERT_LT(Clock::now(), deadline) << ReadWholeFile(dir_.path() / "mount.log");
      std::this_thread::sleep_for(20ms);
    }
  }

  // Kills the server, restarts it after `outage`, and meanwhile reads an
  // uncached chunk and commits a new file. Returns how long after the
  // server's return each finished.
  void OutageOf(std::chrono::seconds outage) {
    MountIt();
    // The first chunk is read (and cached) while the server is up.
    ReadResult first = ReadAt(mountpoint_ / "big", 0, 4096);
    ASSERT_EQ(first.err, 0);
    ASSERT_EQ(first.data, big_.substr(0, 4096));

    ASSERT_EQ(server_->Stop(SIGKILL), 128 + SIGKILL);
    Clock::time_point back;
    std::thread restart([&] {
      std::this_thread::sleep_for(outage);
      absl::Status s = server_->StartAgain();
      back = Clock::now();
      EXPECT_TRUE(s.ok()) << s;
    });
    // Meanwhile: an uncached read (the last chunk) and a commit.
    Clock::time_point read_done, commit_done;
    ReadResult last;
    std::thread reader([&] {
      std::this_thread::sleep_for(1s);
      last = ReadAt(mountpoint_ / "big", 2 * kChunk + 100, 4096);
      read_done = Clock::now();
    });
    std::this_thread::sleep_for(1s);
    {
      std::ofstream(mountpoint_ / "during-outage.txt") << "written while the server was down";
    }
    RunResult commit = RunProcess({CairnBinary().string(), "volume", "commit", mountpoint_.string()},
                                  {.timeout = 300s});
    commit_done = Clock::now();
    reader.join();
    restart.join();

    EXPECT_EQ(last.err, 0) << std::strerror(last.err);
    EXPECT_EQ(last.data, big_.substr(2 * kChunk + 100, 4096));
    EXPECT_EQ(commit.exit_code, 0) << commit.err;
    const double read_after = Seconds(read_done - back);
    const double commit_after = Seconds(commit_done - back);
    std::printf("outage %llds: uncached read answered %.2fs, commit %.2fs after the server's return\n",
                static_cast<long long>(outage.count()), read_after, commit_after);
    EXPECT_LT(read_after, 2.0);
    EXPECT_LT(commit_after, 2.0);
    // The commit landed: the file is in the head.
    RunResult got = RunCli(*server_, {"volume", "get", "v", "/during-outage.txt", "-"});
    EXPECT_EQ(got.out, "written while the server was down") << got.err;
  }

  cairn::testing::TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<Child> mount_;
  fs::path mountpoint_;
  std::string big_;
};

TEST_F(OutageTest, TenSecondOutageIsInvisibleToReadsAndCommits) { OutageOf(10s); }

TEST_F(OutageTest, LongOutageRecoversAsFast) { OutageOf(40s); }

TEST_F(OutageTest, ReadsFailWithEagainAfterTheReadTimeout) {
  MountIt({"--read-timeout", "2"});
  ASSERT_EQ(server_->Stop(SIGKILL), 128 + SIGKILL);
  const auto start = Clock::now();
  ReadResult r = ReadAt(mountpoint_ / "big", kChunk, 4096);
  const double took = Seconds(Clock::now() - start);
  EXPECT_EQ(r.err, EAGAIN) << std::strerror(r.err);
  EXPECT_GE(took, 1.5) << "failed at once instead of waiting for the server";
  EXPECT_LT(took, 15.0);
  ASSERT_TRUE(server_->StartAgain().ok());
  // And the same read works once the server is back.
  ReadResult again = ReadAt(mountpoint_ / "big", kChunk, 4096);
  EXPECT_EQ(again.err, 0);
  EXPECT_EQ(again.data, big_.substr(kChunk, 4096));
}

// An unmount while the control plane is down takes about its final-commit
// budget, not the read timeout: a background commit waiting out the outage
// is released when the unmount starts.
TEST_F(OutageTest, UnmountDuringAnOutageIsBoundedByTheFinalCommitTimeout) {
  MountIt({"--commit-interval", "1", "--final-commit-timeout", "3"});
  { std::ofstream(mountpoint_ / "pending.txt") << "not committed yet"; }
  ASSERT_EQ(server_->Stop(SIGKILL), 128 + SIGKILL);
  std::this_thread::sleep_for(2s);  // a background commit is now waiting for the server
  const auto start = Clock::now();
  RunProcess({"/usr/bin/fusermount3", "-u", mountpoint_.string()});
  const int code = mount_->Wait(120s);
  const double took = Seconds(Clock::now() - start);
  mount_.reset();
  std::printf("unmount during an outage took %.2fs (final-commit-timeout 3s, read-timeout 60s)\n",
              took);
  EXPECT_NE(code, 0) << "the final commit cannot have succeeded";
  EXPECT_LT(took, 15.0) << ReadWholeFile(dir_.path() / "mount.log");
}

}  // namespace
}  // namespace cairn::e2e
