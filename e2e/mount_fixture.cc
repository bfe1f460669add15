#include "e2e/mount_fixture.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string_view>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace cairn::e2e {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::set<std::string> CairnMountIds(const fs::path& mountpoint) {
  std::set<std::string> ids;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  std::string needle = " " + mountpoint.string() + " ";
  while (std::getline(in, line)) {
    if (line.find(needle) != std::string::npos && line.find(" - fuse.cairn ") != std::string::npos) {
      ids.insert(line.substr(0, line.find(' ')));
    }
  }
  return ids;
}

bool IsMountedAt(const fs::path& mountpoint) { return !CairnMountIds(mountpoint).empty(); }

std::string Slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void Spit(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

Mount::~Mount() {
  if (child_ && !child_->Exited()) Unmount();
}

int Mount::Unmount() {
  RunProcess({"/usr/bin/fusermount3", "-u", mountpoint_.string()});
  return child_->Wait(60s);
}

std::string MountTest::FuseUnusable() {
  if (::geteuid() != 0) return "needs root";
  if (::access("/dev/fuse", R_OK | W_OK) != 0) {
    return absl::StrCat("needs /dev/fuse (", std::strerror(errno), ")");
  }
  if (::access("/usr/bin/fusermount3", X_OK) != 0) return "needs /usr/bin/fusermount3";
  return "";
}

void MountTest::SetUpTestSuite() {
  if (!FuseUnusable().empty()) return;
  dir_ = new cairn::testing::TempDir();
  auto server = ServerProcess::Start({.data_dir = dir_->path() / "data"});
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = server->release();
}

void MountTest::TearDownTestSuite() {
  delete server_;
  server_ = nullptr;
  delete dir_;
  dir_ = nullptr;
}

void MountTest::SetUp() {
  if (server_ != nullptr) return;
  std::string why = FuseUnusable();
  if (why.empty()) why = "the control plane did not start";
  // CI must run these: a runner without FUSE is a broken runner, not a pass.
  const char* ci = std::getenv("CI");
  if (ci != nullptr && std::string_view(ci) == "true") FAIL() << why << " (CI=true)";
  GTEST_SKIP() << why;
}

void MountTest::Ok(const std::vector<std::string>& args) {
  RunResult r = Cli(args);
  ASSERT_EQ(r.exit_code, 0) << absl::StrJoin(args, " ") << "\n" << Describe(r);
}

std::string MountTest::NewVolume(int version, const std::vector<std::string>& limits) {
  std::string name = absl::StrCat(
      ::testing::UnitTest::GetInstance()->current_test_info()->name(), "-", counter_++);
  for (char& c : name) {
    if (c == '/') c = '-';
  }
  std::vector<std::string> args = {"volume", "create", name, "--version",
                                    std::to_string(version)};
  args.insert(args.end(), limits.begin(), limits.end());
  RunResult r = Cli(args);
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  return name;
}

std::unique_ptr<Mount> MountTest::MountVolume(const std::string& volume,
                                              std::vector<std::string> extra,
                                              std::optional<fs::path> at,
                                              const ServerProcess* server) {
  if (server == nullptr) server = server_;
  fs::path mp = at ? *at : dir_->path() / absl::StrCat("mnt-", counter_++);
  std::error_code ec;
  fs::create_directories(mp, ec);  // a stale mount point fails with ENOTCONN: fine
  // Mounted, and answering (a stale mount left by a killed mounter is in
  // mountinfo too, but stat fails with ENOTCONN).
  auto is_new = [&] {
    struct stat st;
    return IsMountedAt(mp) && ::stat(mp.c_str(), &st) == 0;
  };
  fs::path log = dir_->path() / absl::StrCat("mount-", counter_++, ".log");
  std::vector<std::string> argv = {CairnBinary().string(), "mount", volume, mp.string(),
                                   "--cache-dir", (dir_->path() / "cache").string(),
                                   "--commit-interval", "3600"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto child = Child::Spawn(argv, server->ClientEnv(), log);
  EXPECT_TRUE(child.ok()) << child.status();
  if (!child.ok()) return nullptr;
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!is_new()) {
    if ((*child)->Exited() || std::chrono::steady_clock::now() > deadline) {
      ADD_FAILURE() << "mount of " << volume << " did not come up:\n" << Slurp(log);
      return nullptr;
    }
    std::this_thread::sleep_for(20ms);
  }
  return std::make_unique<Mount>(std::move(*child), mp, log);
}

std::optional<std::string> MountTest::HeadFile(const std::string& volume,
                                               const std::string& path) {
  RunResult r = Cli({"volume", "get", volume, path, "-"});
  if (r.exit_code != 0) return std::nullopt;
  return r.out;
}

RunResult MountTest::Control(const std::string& verb, const Mount& m) {
  if (verb == "status") return Cli({"volume", verb, m.path().string(), "--json"});
  return Cli({"volume", verb, m.path().string()});
}

std::string MountTest::VolumeId(const Mount& m) {
  std::string status = Control("status", m).out;
  size_t at = status.find("\"volume_id\":\"");
  if (at == std::string::npos) return "";
  at += 13;
  return status.substr(at, status.find('"', at) - at);
}

std::unique_ptr<ServerProcess> MountTest::OwnServer(const fs::path& data_dir,
                                                   const std::string& volume) {
  auto server = ServerProcess::Start({.data_dir = data_dir});
  EXPECT_TRUE(server.ok()) << server.status();
  if (!server.ok()) return nullptr;
  if (!volume.empty()) {
    RunResult created = RunCli(**server, {"volume", "create", volume});
    EXPECT_EQ(created.exit_code, 0) << Describe(created);
  }
  return std::move(*server);
}

void MountTest::ExpectFileInNewMountAndHead(const ServerProcess& server,
                                            const std::string& volume, const std::string& path,
                                            const std::string& content) {
  auto m = MountVolume(volume, {}, {}, &server);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(Slurp(*m / path), content);
  RunResult got = RunCli(server, {"volume", "get", volume, path, "-"});
  EXPECT_EQ(got.out, content) << Describe(got) << m->Log();
  EXPECT_EQ(m->Unmount(), 0) << m->Log();
}

}  // namespace cairn::e2e
