// GrpcServer: one gRPC listener for any list of services, on TCP
// (HOST:PORT, port 0 picks one) or a unix socket (unix:///abs/path). Shared
// by the control plane (`cairn server`, `cairn-operator`) and the CSI plugin
// (`cairn-csi`), so listen, TLS, message limits and the keepalive policy are
// decided once.
//
// Authentication is the services' business: a unix socket is protected by
// its file mode (CSI callers send no token); TCP services check the bearer
// token with CheckBearerToken at the top of each handler.
//
// Thread-safety: Shutdown and Wait may be called from any thread; Shutdown
// is idempotent and runs from the destructor too. Services must outlive the
// server.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/impl/service_type.h"
#include "grpcpp/server_context.h"

namespace grpc {
class Server;
}

namespace cairn {

// The keepalive contract between our clients and our servers: clients ping
// an idle connection every kKeepaliveTime; servers accept pings that often
// (gRPC's default would answer them with GOAWAY "too_many_pings").
inline constexpr int kKeepaliveTimeMs = 30'000;
inline constexpr int kKeepaliveTimeoutMs = 10'000;
inline constexpr int kMinPingIntervalMs = 10'000;

struct GrpcServerOptions {
  std::string address;       // HOST:PORT or unix:///abs/path
  std::string tls_cert_file;  // both or neither; TCP only
  std::string tls_key_file;
  int max_message_bytes = 1 << 30;
};

// True for "unix:" addresses; `path` (if given) receives the socket path.
bool IsUnixAddress(std::string_view address, std::string* path = nullptr);

class GrpcServer {
 public:
  // Returns once the listener is bound. A stale socket file at a unix
  // address is removed first (a regular file there is FailedPrecondition);
  // its directory is created if missing. At least one service is required.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(
      const GrpcServerOptions& options, const std::vector<grpc::Service*>& services);
  ~GrpcServer();
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  // Stops accepting; in-flight calls get `grace` to finish, then are
  // cancelled. Removes the unix socket file.
  void Shutdown(absl::Duration grace = absl::Seconds(5));
  void Wait();

  int port() const { return port_; }  // 0 on a unix socket
  const std::string& address() const { return address_; }

 private:
  GrpcServer() = default;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  std::string socket_path_;
  int port_ = 0;
  bool shut_down_ = false;
};

// OK when `token` is empty or the call carries "authorization: Bearer
// <token>" (compared in constant time); Unauthenticated otherwise.
[[nodiscard]] absl::Status CheckBearerToken(const grpc::ServerContext& context,
                                            std::string_view token);

}  // namespace cairn
