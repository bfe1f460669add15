#include "core/grpc_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

#include "core/testing/temp_dir.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "proto/volume.grpc.pb.h"

namespace cairn {
namespace {

// Any service will do: every method answers Unimplemented.
api::VolumeService::Service* Service() {
  static auto* service = new api::VolumeService::Service();
  return service;
}

bool IsSocket(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

bool Connects(const std::string& target) {
  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  return channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5));
}

// A socket file as a killed process leaves it: bound, never unlinked.
void LeaveStaleSocket(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(path.size(), sizeof(addr.sun_path));
  path.copy(addr.sun_path, path.size());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::close(fd);
}

TEST(GrpcServerTest, ServesOnUnixSocketReplacingAStaleOneAndRemovesItOnShutdown) {
  testing::TempDir dir;
  const std::string path = (dir.path() / "sub" / "csi.sock").string();
  std::filesystem::create_directories(dir.path() / "sub");
  LeaveStaleSocket(path);
  ASSERT_TRUE(IsSocket(path));

  absl::StatusOr<std::unique_ptr<GrpcServer>> server =
      GrpcServer::Start({.address = "unix://" + path}, {Service()});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ((*server)->port(), 0);
  EXPECT_TRUE(Connects("unix://" + path));
  (*server)->Shutdown();
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(GrpcServerTest, CreatesTheSocketDirectory) {
  testing::TempDir dir;
  const std::string path = (dir.path() / "a" / "b" / "csi.sock").string();
  auto server = GrpcServer::Start({.address = "unix:" + path}, {Service()});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE(IsSocket(path));
}

TEST(GrpcServerTest, RefusesToReplaceARegularFile) {
  testing::TempDir dir;
  const std::string path = (dir.path() / "important").string();
  std::ofstream(path) << "data";
  auto server = GrpcServer::Start({.address = "unix://" + path}, {Service()});
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(std::filesystem::is_regular_file(path));
}

TEST(GrpcServerTest, RefusesARelativeSocketPath) {
  auto server = GrpcServer::Start({.address = "unix:relative.sock"}, {Service()});
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(GrpcServerTest, PortZeroPicksAPort) {
  auto server = GrpcServer::Start({.address = "127.0.0.1:0"}, {Service()});
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);
  EXPECT_TRUE(Connects("127.0.0.1:" + std::to_string((*server)->port())));
}

TEST(GrpcServerTest, TlsNeedsBothFiles) {
  auto server = GrpcServer::Start({.address = "127.0.0.1:0", .tls_cert_file = "c.pem"}, {Service()});
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(GrpcServerTest, NeedsAService) {
  auto server = GrpcServer::Start({.address = "127.0.0.1:0"}, {});
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(GrpcServerTest, UnixAddressParsing) {
  std::string path;
  EXPECT_TRUE(IsUnixAddress("unix:///csi/csi.sock", &path));
  EXPECT_EQ(path, "/csi/csi.sock");
  EXPECT_TRUE(IsUnixAddress("unix:/csi/csi.sock", &path));
  EXPECT_EQ(path, "/csi/csi.sock");
  EXPECT_FALSE(IsUnixAddress("127.0.0.1:7420"));
}

}  // namespace
}  // namespace cairn
