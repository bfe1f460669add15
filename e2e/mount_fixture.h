// The shared fixture of the FUSE mount tests (e2e/mount_*_test.cc): one real
// `cairn server` per test binary, real `cairn mount` processes and kernel
// mounts, and small helpers to drive and check them.
//
// Needs root, /dev/fuse and /usr/bin/fusermount3: without them every test
// is skipped, and fails when CI=true (a runner without FUSE is broken, not a
// pass). Not thread-safe: one test at a time, as gtest runs them.
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/testing/temp_dir.h"
#include "e2e/harness.h"
#include "gtest/gtest.h"

namespace cairn::e2e {

// Mount IDs of the cairn FUSE mounts at `mountpoint`.
std::set<std::string> CairnMountIds(const std::filesystem::path& mountpoint);
bool IsMountedAt(const std::filesystem::path& mountpoint);

// The whole file ("" if it cannot be read); replace the file with `content`.
std::string Slurp(const std::filesystem::path& path);
void Spit(const std::filesystem::path& path, const std::string& content);

// Errno of a failed syscall, 0 on success.
inline int Errno(int rc) { return rc < 0 ? errno : 0; }

// A `cairn mount` process; unmounted (and reaped) on destruction.
class Mount {
 public:
  Mount(std::unique_ptr<Child> child, std::filesystem::path mountpoint,
        std::filesystem::path log)
      : child_(std::move(child)), mountpoint_(std::move(mountpoint)), log_(std::move(log)) {}
  ~Mount();
  Mount(const Mount&) = delete;
  Mount& operator=(const Mount&) = delete;

  const std::filesystem::path& path() const { return mountpoint_; }
  std::filesystem::path operator/(const std::string& rel) const { return mountpoint_ / rel; }
  Child& child() { return *child_; }
  std::string Log() const { return Slurp(log_); }

  // fusermount3 -u, then the process's exit code.
  int Unmount();

 private:
  std::unique_ptr<Child> child_;
  std::filesystem::path mountpoint_;
  std::filesystem::path log_;
};

class MountTest : public ::testing::Test {
 protected:
  // Why FUSE mounts cannot work here, or "" if they can.
  static std::string FuseUnusable();
  static void SetUpTestSuite();
  static void TearDownTestSuite();
  void SetUp() override;

  RunResult Cli(const std::vector<std::string>& args) { return RunCli(*server_, args); }
  // Cli, asserting exit code 0.
  void Ok(const std::vector<std::string>& args);

  // A fresh volume name for this test.
  // `limits`: extra `cairn volume create` flags, e.g. {"--max-inodes", "5"}.
  std::string NewVolume(int version = 2, const std::vector<std::string>& limits = {});

  // Mounts `volume` at a new directory (or `at`) with `cairn mount` against
  // `server` (default: the suite's), waiting until the kernel shows the
  // mount answering. Null, with a test failure recorded, if it does not.
  std::unique_ptr<Mount> MountVolume(const std::string& volume,
                                     std::vector<std::string> extra = {},
                                     std::optional<std::filesystem::path> at = {},
                                     const ServerProcess* server = nullptr);

  // The file's content in the volume's head, via `cairn volume get`.
  std::optional<std::string> HeadFile(const std::string& volume, const std::string& path);

  // `cairn volume VERB MOUNTPOINT` (commit, reload, status; status with --json).
  RunResult Control(const std::string& verb, const Mount& m);

  // The volume ID a mount reports in its status.
  std::string VolumeId(const Mount& m);

  // A `cairn server` of the test's own on `data_dir` (to stop, kill or hang
  // without disturbing the suite's), with `volume` created on it unless it
  // is "" (a restart on the same data). Null, with a test failure
  // recorded, if it does not start.
  std::unique_ptr<ServerProcess> OwnServer(const std::filesystem::path& data_dir,
                                           const std::string& volume);
  // A new mount of `volume` from `server` shows `path` with `content`, and
  // so does the volume's head; then it unmounts cleanly.
  void ExpectFileInNewMountAndHead(const ServerProcess& server, const std::string& volume,
                                   const std::string& path, const std::string& content);

  static inline cairn::testing::TempDir* dir_ = nullptr;
  static inline ServerProcess* server_ = nullptr;
  static inline int counter_ = 0;
};

#define MOUNT_OR_RETURN(var, ...)      \
  auto var = MountVolume(__VA_ARGS__); \
  ASSERT_NE(var, nullptr)

}  // namespace cairn::e2e
