// Connecting to the control plane's Volume API: address, bearer token and
// TLS from flags or the environment, and grpc::Status -> absl::Status.
//
// Environment: CAIRN_SERVER (host:port, default 127.0.0.1:7420),
// CAIRN_TOKEN or CAIRN_TOKEN_FILE (bearer token), CAIRN_CA_FILE (PEM roots;
// set means TLS), CAIRN_NAMESPACE (default "default").
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"

namespace cairn {

inline constexpr char kDefaultServer[] = "127.0.0.1:7420";

struct ClientOptions {
  std::string server = kDefaultServer;
  std::string token;    // empty: no authorization header
  std::string ca_file;  // empty: plaintext
  std::string ns = "default";
};

// Defaults overridden by the environment variables above. A token file that
// cannot be read is an error.
[[nodiscard]] absl::StatusOr<ClientOptions> ClientOptionsFromEnv();

// A channel with keepalive and large message limits (64 MiB).
[[nodiscard]] absl::StatusOr<std::shared_ptr<grpc::Channel>> Dial(const ClientOptions& options);

// Adds "authorization: Bearer <token>" when a token is set.
void Authorize(grpc::ClientContext& context, const ClientOptions& options);

// gRPC codes are abseil codes; the message is kept.
absl::Status FromGrpc(const grpc::Status& status);
grpc::Status ToGrpc(const absl::Status& status);

}  // namespace cairn
