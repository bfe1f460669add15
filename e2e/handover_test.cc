// A mount survives its mounter (docs/decisions.md D16): real `cairn mount
// --handover` processes (a holder and the mounter it runs), a real control
// plane and kernel FUSE mounts. The mounter is SIGKILLed or upgraded under a
// process that keeps a file open and reads it in a loop; its reads must go
// on through the same descriptor. Needs root and /dev/fuse: skipped without
// them, failed when CI=true.
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/testing/temp_dir.h"
#include "e2e/handover_probe.h"
#include "e2e/harness.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn::e2e {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

bool CairnMounted(const fs::path& mountpoint) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  std::string needle = " " + mountpoint.string() + " ";
  while (std::getline(in, line)) {
    if (line.find(needle) != std::string::npos && line.find(" - fuse.cairn ") != std::string::npos) {
      return true;
    }
  }
  return false;
}

class HandoverTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0 || ::access("/dev/fuse", R_OK | W_OK) != 0) return;
    dir_ = new cairn::testing::TempDir();
    auto server = ServerProcess::Start({.data_dir = dir_->path() / "data"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (server_ != nullptr) return;
    std::string why = ::geteuid() != 0 ? "needs root" : "needs /dev/fuse and a control plane";
    const char* ci = std::getenv("CI");
    if (ci != nullptr && std::string_view(ci) == "true") FAIL() << why << " (CI=true)";
    GTEST_SKIP() << why;
  }
  void TearDown() override {
    if (holder_ && !holder_->Exited()) {
      RunProcess({"/usr/bin/fusermount3", "-u", mp_.string()});
      holder_->Wait(60s);
    }
    if (CairnMounted(mp_)) ::umount2(mp_.c_str(), MNT_DETACH);
  }

  RunResult Cli(const std::vector<std::string>& args) { return RunCli(*server_, args); }

  std::string NewVolume() {
    std::string name = absl::StrCat(
        ::testing::UnitTest::GetInstance()->current_test_info()->name(), "-", counter_++);
    RunResult r = Cli({"volume", "create", name, "--version", "2"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return name;
  }

  // `cairn mount --handover`; holder_ is the process started (the holder).
  bool Mount(const std::string& volume) {
    mp_ = dir_->path() / absl::StrCat("mnt-", counter_++);
    fs::create_directories(mp_);
    log_ = dir_->path() / absl::StrCat("mount-", counter_++, ".log");
    auto child = Child::Spawn({CairnBinary().string(), "mount", volume, mp_.string(), "--cache-dir",
                               (dir_->path() / "cache").string(), "--commit-interval", "3600",
                               "--handover"},
                              server_->ClientEnv(), log_);
    EXPECT_TRUE(child.ok()) << child.status();
    if (!child.ok()) return false;
    holder_ = std::move(*child);
    auto deadline = std::chrono::steady_clock::now() + 20s;
    struct stat st;
    while (!(CairnMounted(mp_) && ::stat(mp_.c_str(), &st) == 0)) {
      if (holder_->Exited() || std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "mount did not come up:\n" << Log();
        return false;
      }
      std::this_thread::sleep_for(20ms);
    }
    return true;
  }
  std::string Log() const { return ReadWholeFile(log_); }
  // The mounter serving the mount now (the holder's only child).
  pid_t Worker() { return WaitForNewChild(holder_->pid(), 0, 5s); }

  // 4 MiB of data in dir/data.bin, committed.
  std::string PutData() {
    fs::path local = dir_->path() / absl::StrCat("data-", counter_++);
    EXPECT_TRUE(WriteRandomFile(local, 4 << 20, counter_).ok());
    std::string data = ReadWholeFile(local);
    fs::create_directories(mp_ / "dir");
    WriteWholeFile(mp_ / "dir" / "data.bin", data);
    EXPECT_EQ(Cli({"volume", "commit", mp_.string()}).exit_code, 0);
    return data;
  }

  static inline cairn::testing::TempDir* dir_ = nullptr;
  static inline ServerProcess* server_ = nullptr;
  static inline int counter_ = 0;
  fs::path mp_;
  fs::path log_;
  std::unique_ptr<Child> holder_;
};

// Reads of a killed mounter's mount go on within 5 s through the same
// descriptor, with the right data and never ENOTCONN; the kernel's
// cached node IDs and handles are answered by the replacement.
TEST_F(HandoverTest, SigkillOfTheMounterUnderAReaderHandsTheMountOver) {
  ASSERT_TRUE(Mount(NewVolume()));
  std::string data = PutData();
  struct stat before;
  ASSERT_EQ(::stat((mp_ / "dir" / "data.bin").c_str(), &before), 0);
  auto reader_owner = std::make_unique<ReadLoop>(mp_ / "dir" / "data.bin", data);
  ReadLoop& reader = *reader_owner;
  ASSERT_EQ(reader.open_errno(), 0) << std::strerror(reader.open_errno());
  ASSERT_TRUE(reader.WaitForReads(5, 5s)) << reader.Describe();
  pid_t worker = Worker();
  ASSERT_GT(worker, 0);
  ASSERT_EQ(::kill(worker, SIGKILL), 0);
  pid_t next = WaitForNewChild(holder_->pid(), worker, 10s);
  ASSERT_GT(next, 0) << Log();
  EXPECT_TRUE(reader.WaitForReads(10, 5s)) << reader.Describe() << "\n" << Log();
  // Paths the kernel knows by the old node IDs: open, list, stat.
  EXPECT_EQ(ReadWholeFile(mp_ / "dir" / "data.bin"), data);
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(mp_ / "dir")) names.insert(e.path().filename());
  EXPECT_EQ(names, std::set<std::string>{"data.bin"});
  struct stat after;
  ASSERT_EQ(::stat((mp_ / "dir" / "data.bin").c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino);
  ASSERT_TRUE(reader.Stop(15s, mp_)) << reader.Describe();
  auto errors = reader.errors();
  EXPECT_EQ(errors.count(ENOTCONN), 0u) << reader.Describe();
  // At most the read in flight at the kill fails (ECONNABORTED).
  int other = 0;
  for (const auto& [err, n] : errors) {
    if (err != ECONNABORTED) other += n;
  }
  EXPECT_EQ(other, 0) << reader.Describe();
  EXPECT_LE(errors[ECONNABORTED], 1) << reader.Describe();
  EXPECT_EQ(reader.mismatches(), 0) << reader.Describe();
  EXPECT_LT(reader.longest_gap(), 5000ms) << reader.Describe();
  EXPECT_THAT(Log(), HasSubstr("takes over"));
  reader_owner.reset();  // closes its descriptor: the unmount needs no file open
  RunProcess({"/usr/bin/fusermount3", "-u", mp_.string()});
  EXPECT_EQ(holder_->Wait(60s), 0) << Log();
}

// What the killed mounter had made durable (fsync) is in the view after
// the hand-over, the file stays writable through the descriptor opened
// before, and a commit publishes all of it.
TEST_F(HandoverTest, JournaledWriteSurvivesTheHandOverAndCommits) {
  std::string vol = NewVolume();
  ASSERT_TRUE(Mount(vol));
  int fd = ::open((mp_ / "w.txt").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "journaled\n", 10), 10);
  ASSERT_EQ(::fsync(fd), 0) << std::strerror(errno);
  pid_t worker = Worker();
  ASSERT_GT(worker, 0);
  ASSERT_EQ(::kill(worker, SIGKILL), 0);
  ASSERT_GT(WaitForNewChild(holder_->pid(), worker, 10s), 0) << Log();
  EXPECT_EQ(ReadWholeFile(mp_ / "w.txt"), "journaled\n") << Log();
  EXPECT_EQ(::write(fd, "more\n", 5), 5) << std::strerror(errno) << "\n" << Log();
  EXPECT_EQ(::close(fd), 0) << std::strerror(errno);
  EXPECT_EQ(ReadWholeFile(mp_ / "w.txt"), "journaled\nmore\n");
  RunResult commit = Cli({"volume", "commit", mp_.string()});
  EXPECT_EQ(commit.exit_code, 0) << commit.err << Log();
  RunResult head = Cli({"volume", "get", vol, "w.txt", "-"});
  EXPECT_EQ(head.out, "journaled\nmore\n") << head.err;
}

// SIGUSR2 to the holder: the mounter drains and the next one (the binary at
// the same path) takes over; no read fails, closed writes carry over.
TEST_F(HandoverTest, UpgradeUnderAReaderLosesNothing) {
  std::string vol = NewVolume();
  ASSERT_TRUE(Mount(vol));
  std::string data = PutData();
  WriteWholeFile(mp_ / "pending.txt", "not committed yet\n");
  ReadLoop reader(mp_ / "dir" / "data.bin", data);
  ASSERT_EQ(reader.open_errno(), 0);
  ASSERT_TRUE(reader.WaitForReads(5, 5s)) << reader.Describe();
  pid_t worker = Worker();
  ASSERT_GT(worker, 0);
  holder_->Signal(SIGUSR2);
  ASSERT_GT(WaitForNewChild(holder_->pid(), worker, 15s), 0) << Log();
  EXPECT_TRUE(reader.WaitForReads(10, 5s)) << reader.Describe() << "\n" << Log();
  ASSERT_TRUE(reader.Stop(15s, mp_)) << reader.Describe();
  EXPECT_TRUE(reader.errors().empty()) << reader.Describe();
  EXPECT_EQ(reader.mismatches(), 0) << reader.Describe();
  EXPECT_LT(reader.longest_gap(), 5000ms) << reader.Describe();
  EXPECT_THAT(Log(), HasSubstr("handed"));
  EXPECT_EQ(ReadWholeFile(mp_ / "pending.txt"), "not committed yet\n");
  EXPECT_EQ(Cli({"volume", "commit", mp_.string()}).exit_code, 0) << Log();
  EXPECT_EQ(Cli({"volume", "get", vol, "pending.txt", "-"}).out, "not committed yet\n");
}

// A killed holder leaves the mounter serving (it has its own descriptor);
// without the holder a later mounter crash ends the mount, and the reader
// then gets errors at once instead of hanging.
TEST_F(HandoverTest, SigkillOfTheHolderLeavesTheMountServingAndNothingHangs) {
  ASSERT_TRUE(Mount(NewVolume()));
  std::string data = PutData();
  ReadLoop reader(mp_ / "dir" / "data.bin", data);
  ASSERT_EQ(reader.open_errno(), 0);
  ASSERT_TRUE(reader.WaitForReads(5, 5s));
  pid_t worker = Worker();
  ASSERT_GT(worker, 0);
  holder_->Signal(SIGKILL);
  holder_->Wait(10s);
  EXPECT_TRUE(reader.WaitForReads(10, 5s)) << reader.Describe();
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (Log().find("holder") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_THAT(Log(), HasSubstr("is gone"));
  EXPECT_TRUE(reader.errors().empty()) << reader.Describe();
  ASSERT_EQ(::kill(worker, SIGKILL), 0);
  // The connection dies with its last descriptor: reads fail, none hangs.
  deadline = std::chrono::steady_clock::now() + 5s;
  while (reader.errors().empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_FALSE(reader.errors().empty()) << reader.Describe();
  EXPECT_TRUE(reader.Stop(5s, mp_)) << reader.Describe();
  // The dead mount is detached like any other (TearDown); the next mount
  // of the volume recovers what the journal holds (mount e2e tests).
}

// Mounter pods (D29) without Kubernetes: the holder listens on a socket
// (`--handover-listen`) and each mounter is a process that connects to it
// (`--handover-connect`), started by the test as the kubelet would start a
// mounter pod's container. An OOM kill (SIGKILL) and a pod deletion
// (SIGTERM: hand over) of the mounter leave the reader's descriptor
// working once the next mounter connects; the holder's SIGTERM (the node
// plugin's unpublish) has the mounter unmount and commit.
TEST_F(HandoverTest, ConnectedMountersComeAndGoUnderAReader) {
  std::string vol = NewVolume();
  mp_ = dir_->path() / absl::StrCat("mnt-", counter_++);
  fs::create_directories(mp_);
  log_ = dir_->path() / absl::StrCat("holder-", counter_++, ".log");
  fs::path sock = dir_->path() / absl::StrCat("h-", counter_++, ".sock");
  std::vector<std::string> args = {CairnBinary().string(), "mount", vol, mp_.string(),
                                   "--cache-dir", (dir_->path() / "cache").string(),
                                   "--commit-interval", "3600"};
  std::vector<std::string> holder_args = args;
  holder_args.insert(holder_args.end(), {"--handover-listen", sock.string()});
  auto holder = Child::Spawn(holder_args, server_->ClientEnv(), log_);
  ASSERT_TRUE(holder.ok()) << holder.status();
  holder_ = std::move(*holder);
  std::vector<std::string> worker_args = args;
  worker_args.insert(worker_args.end(), {"--handover-connect", sock.string()});
  int generation = 0;
  fs::path worker_log;
  auto start_worker = [&] {
    worker_log = dir_->path() / absl::StrCat("worker-", counter_++, ".log");
    ++generation;
    auto w = Child::Spawn(worker_args, server_->ClientEnv(), worker_log);
    EXPECT_TRUE(w.ok()) << w.status();
    return w.ok() ? std::move(*w) : nullptr;
  };
  std::unique_ptr<Child> worker = start_worker();
  ASSERT_NE(worker, nullptr);
  auto deadline = std::chrono::steady_clock::now() + 30s;
  struct stat st;
  while (!(CairnMounted(mp_) && ::stat(mp_.c_str(), &st) == 0)) {
    ASSERT_FALSE(worker->Exited()) << ReadWholeFile(worker_log) << Log();
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << ReadWholeFile(worker_log) << Log();
    std::this_thread::sleep_for(20ms);
  }
  std::string data = PutData();
  WriteWholeFile(mp_ / "pending.txt", "not committed yet\n");
  auto reader = std::make_unique<ReadLoop>(mp_ / "dir" / "data.bin", data);
  ASSERT_EQ(reader->open_errno(), 0);
  ASSERT_TRUE(reader->WaitForReads(5, 5s)) << reader->Describe();

  // The next mounter starts while the current one serves, as a replacement
  // pod may (it waits in the holder's queue), and is past exec before the
  // current one goes: this process must not fork while its own reads wait
  // for a mounter.
  auto start_next = [&] {
    std::unique_ptr<Child> next = start_worker();
    if (next == nullptr) return next;
    auto until = std::chrono::steady_clock::now() + 10s;
    while (ReadWholeFile(fs::path("/proc") / std::to_string(next->pid()) / "cmdline")
               .find("--handover-connect") == std::string::npos &&
           std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(10ms);
    }
    return next;
  };
  auto takes_over = [&](Child& next, int gen) {
    std::string line = absl::StrCat("(generation ", gen, ") takes over");
    auto until = std::chrono::steady_clock::now() + 30s;
    while (Log().find(line) == std::string::npos) {
      if (next.Exited() || std::chrono::steady_clock::now() > until) {
        ADD_FAILURE() << "mounter " << gen << " did not take over:\n"
                      << ReadWholeFile(worker_log) << Log();
        return false;
      }
      std::this_thread::sleep_for(20ms);
    }
    return true;
  };
  // OOM kill: the reader's requests wait for the next mounter.
  std::unique_ptr<Child> next = start_next();
  ASSERT_NE(next, nullptr);
  worker->Signal(SIGKILL);
  EXPECT_EQ(worker->Wait(10s), 128 + SIGKILL);
  worker = std::move(next);
  ASSERT_TRUE(takes_over(*worker, 2));
  EXPECT_TRUE(reader->WaitForReads(10, 15s)) << reader->Describe() << "\n" << Log();

  // Pod deletion: SIGTERM hands over (exit 75) instead of unmounting.
  fs::path serving_log = worker_log;
  next = start_next();
  ASSERT_NE(next, nullptr);
  worker->Signal(SIGTERM);
  EXPECT_EQ(worker->Wait(30s), 75) << ReadWholeFile(serving_log);
  EXPECT_TRUE(CairnMounted(mp_));
  worker = std::move(next);
  ASSERT_TRUE(takes_over(*worker, 3));
  EXPECT_TRUE(reader->WaitForReads(10, 15s)) << reader->Describe() << "\n" << Log();
  ASSERT_TRUE(reader->Stop(15s, mp_)) << reader->Describe();
  auto errors = reader->errors();
  EXPECT_EQ(errors.count(ENOTCONN), 0u) << reader->Describe();
  int other = 0;
  for (const auto& [err, n] : errors) {
    if (err != ECONNABORTED) other += n;
  }
  EXPECT_EQ(other, 0) << reader->Describe();
  EXPECT_LE(errors[ECONNABORTED], 1) << reader->Describe();  // the read in flight at the kill
  EXPECT_EQ(reader->mismatches(), 0) << reader->Describe();
  reader.reset();
  EXPECT_EQ(ReadWholeFile(mp_ / "pending.txt"), "not committed yet\n");

  // Unpublish: the holder's SIGTERM ends the mount through the mounter,
  // which makes the final commit.
  holder_->Signal(SIGTERM);
  EXPECT_EQ(holder_->Wait(60s), 0) << Log();
  EXPECT_EQ(worker->Wait(60s), 0) << ReadWholeFile(worker_log);
  EXPECT_FALSE(CairnMounted(mp_));
  EXPECT_FALSE(fs::exists(sock));
  EXPECT_EQ(Cli({"volume", "get", vol, "pending.txt", "-"}).out, "not committed yet\n");
  EXPECT_EQ(generation, 3);
}

}  // namespace
}  // namespace cairn::e2e
