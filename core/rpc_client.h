// Connecting to the control plane's Volume API: address, bearer token and
// TLS from flags or the environment, and grpc::Status -> absl::Status.
//
// Environment: CAIRN_SERVER (host:port, default 127.0.0.1:7420),
// CAIRN_TOKEN or CAIRN_TOKEN_FILE (bearer token), CAIRN_CA_FILE (PEM roots;
// set means TLS), CAIRN_NAMESPACE (default "default"), CAIRN_SERVER_WAIT
// (seconds; ClientOptions::retry_for).
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/grpc_server.h"
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

  // Deadline of one attempt, by kind of call: metadata (volumes, head,
  // stat, open, missing objects), commits (the server touches every blob
  // a change references), and streams (blob transfer, listings).
  absl::Duration metadata_timeout = absl::Seconds(30);
  absl::Duration commit_timeout = absl::Minutes(5);
  absl::Duration stream_timeout = absl::Minutes(10);
  // How long one call keeps waiting for an unreachable server (and retrying
  // UNAVAILABLE) before it returns UNAVAILABLE. The mounter sets its
  // --read-timeout here.
  absl::Duration retry_for = absl::Seconds(15);
  // Ceiling of the backoff between attempts and of the channel's reconnect
  // backoff: how soon a server back from an outage is used again.
  absl::Duration max_backoff = absl::Seconds(1);
  // Client keepalive; the defaults are the contract with GrpcServer's ping
  // policy (core/grpc_server.h). Lowered only by tests of that contract.
  absl::Duration keepalive_time = absl::Milliseconds(kKeepaliveTimeMs);
  absl::Duration keepalive_timeout = absl::Milliseconds(kKeepaliveTimeoutMs);
};

// Defaults overridden by the environment variables above. A token file that
// cannot be read, or holds only whitespace, is an error.
[[nodiscard]] absl::StatusOr<ClientOptions> ClientOptionsFromEnv();

// "1.5" -> 1.5 s. InvalidArgument for anything but a non-negative number.
[[nodiscard]] absl::StatusOr<absl::Duration> ParseSeconds(std::string_view text);

// The one reader of token files (clients and servers): the whole file,
// surrounding whitespace (a trailing newline) stripped. FailedPrecondition
// naming the file if it cannot be read, InvalidArgument if it is empty.
[[nodiscard]] absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

// A channel with keepalive, capped reconnect backoff and large message
// limits (64 MiB received).
[[nodiscard]] absl::StatusOr<std::shared_ptr<grpc::Channel>> Dial(const ClientOptions& options);

// Adds "authorization: Bearer <token>" when a token is set.
void Authorize(grpc::ClientContext& context, const ClientOptions& options);

// gRPC codes are abseil codes; the message is kept.
absl::Status FromGrpc(const grpc::Status& status);
grpc::Status ToGrpc(const absl::Status& status);

}  // namespace cairn
