// Shared fixture of the CSI integration tests: a real `cairn server`, a real
// `cairn-csi` process on a unix socket, and CSI stubs to drive it. Needs
// root and /dev/fuse: without them a test fails when CI=true and is skipped
// otherwise.
#pragma once

#include <fcntl.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/testing/temp_dir.h"
#include "e2e/harness.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/csi.grpc.pb.h"

namespace cairn::e2e {

inline bool InCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

// Empty when root and /dev/fuse are there; else what is missing.
inline std::string FuseMissing() {
  if (::geteuid() != 0) return "root";
  if (::access("/dev/fuse", R_OK | W_OK) != 0) return "/dev/fuse";
  return "";
}

#define CAIRN_REQUIRE_FUSE()                                                        \
  do {                                                                              \
    std::string missing = FuseMissing();                                            \
    if (!missing.empty()) {                                                         \
      if (InCi()) FAIL() << "CI=true and this test needs " << missing;              \
      GTEST_SKIP() << "needs " << missing;                                          \
    }                                                                               \
  } while (0)

inline bool CairnMountedAt(const std::filesystem::path& target) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  std::string needle = " " + target.string() + " ";
  while (std::getline(in, line)) {
    if (line.find(needle) != std::string::npos && line.find(" - fuse.cairn ") != std::string::npos) {
      return true;
    }
  }
  return false;
}

// A cairn-csi process. Stop() sends SIGTERM; Kill() SIGKILL.
class Plugin {
 public:
  static absl::StatusOr<std::unique_ptr<Plugin>> Start(const std::filesystem::path& dir,
                                                       const std::string& server,
                                                       std::vector<std::string> extra = {}) {
    std::unique_ptr<Plugin> p(new Plugin());
    p->socket_ = dir / "csi.sock";
    p->log_ = dir / absl::StrCat("csi-", counter()++, ".log");
    std::vector<std::string> argv = {BuiltBinary("csi/cairn-csi").string(),
                                     "--endpoint", "unix://" + p->socket_.string(),
                                     "--node-id", "node-1",
                                     "--server", server,
                                     "--state-dir", (dir / "state").string(),
                                     "--cache-dir", (dir / "cache").string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    // A socket left by a killed predecessor must not be mistaken for ours.
    std::filesystem::remove(p->socket_);
    auto child = Child::Spawn(argv, {}, p->log_);
    if (!child.ok()) return child.status();
    p->child_ = std::move(*child);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      if (p->child_->Exited()) {
        return absl::InternalError(absl::StrCat("cairn-csi exited: ", ReadWholeFile(p->log_)));
      }
      if (std::filesystem::exists(p->socket_)) {
        p->channel_ = grpc::CreateChannel("unix://" + p->socket_.string(),
                                          grpc::InsecureChannelCredentials());
        if (p->channel_->WaitForConnected(std::chrono::system_clock::now() +
                                          std::chrono::seconds(2))) {
          p->identity_ = ::csi::v1::Identity::NewStub(p->channel_);
          p->controller_ = ::csi::v1::Controller::NewStub(p->channel_);
          p->node_ = ::csi::v1::Node::NewStub(p->channel_);
          ::csi::v1::GetPluginInfoRequest req;
          ::csi::v1::GetPluginInfoResponse resp;
          grpc::ClientContext ctx;
          ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
          if (p->identity_->GetPluginInfo(&ctx, req, &resp).ok()) return p;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return absl::DeadlineExceededError(absl::StrCat("cairn-csi did not listen: ", ReadWholeFile(p->log_)));
  }

  ::csi::v1::Identity::Stub& identity() { return *identity_; }
  ::csi::v1::Controller::Stub& controller() { return *controller_; }
  ::csi::v1::Node::Stub& node() { return *node_; }
  std::string Log() const { return ReadWholeFile(log_); }
  Child& child() { return *child_; }
  const std::filesystem::path& socket() const { return socket_; }

 private:
  Plugin() = default;
  static int& counter() {
    static int n = 0;
    return n;
  }
  std::unique_ptr<Child> child_;
  std::filesystem::path socket_;
  std::filesystem::path log_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<::csi::v1::Identity::Stub> identity_;
  std::unique_ptr<::csi::v1::Controller::Stub> controller_;
  std::unique_ptr<::csi::v1::Node::Stub> node_;
};

inline std::unique_ptr<grpc::ClientContext> Ctx(int seconds = 60) {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return c;
}

inline ::csi::v1::VolumeCapability MountCap(
    ::csi::v1::VolumeCapability::AccessMode::Mode mode =
        ::csi::v1::VolumeCapability::AccessMode::MULTI_NODE_MULTI_WRITER) {
  ::csi::v1::VolumeCapability cap;
  cap.mutable_mount();
  cap.mutable_access_mode()->set_mode(mode);
  return cap;
}

}  // namespace cairn::e2e
