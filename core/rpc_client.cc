#include "core/rpc_client.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace cairn {
namespace {

constexpr int kMaxMessageBytes = 64 << 20;

absl::StatusOr<std::string> ReadWholeFile(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::FailedPreconditionError(absl::StrCat("cannot read ", std::string(what), " ", path));
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) {
    return absl::FailedPreconditionError(absl::StrCat("cannot read ", std::string(what), " ", path));
  }
  return buf.str();
}

int Ms(absl::Duration d) {
  return static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(d), 1, INT32_MAX));
}

const char* Env(const char* name) {
  const char* v = std::getenv(name);
  return (v != nullptr && *v != '\0') ? v : nullptr;
}

}  // namespace

absl::StatusOr<absl::Duration> ParseSeconds(std::string_view text) {
  double seconds = 0;
  if (!absl::SimpleAtod(absl::string_view(text.data(), text.size()), &seconds) || !(seconds >= 0) || seconds > 1e9) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", std::string(text), "' is not a number of seconds"));
  }
  return absl::Seconds(seconds);
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  CAIRN_ASSIGN_OR_RETURN(std::string token, ReadWholeFile(path, "token file"));
  // Token files usually end in a newline (echo > file); it is not part of the token.
  token = std::string(absl::StripAsciiWhitespace(token));
  if (token.empty()) return absl::InvalidArgumentError(absl::StrCat("token file ", path, " is empty"));
  return token;
}

absl::StatusOr<ClientOptions> ClientOptionsFromEnv() {
  ClientOptions options;
  if (const char* v = Env("CAIRN_SERVER")) options.server = v;
  if (const char* v = Env("CAIRN_NAMESPACE")) options.ns = v;
  if (const char* v = Env("CAIRN_CA_FILE")) options.ca_file = v;
  if (const char* v = Env("CAIRN_SERVER_WAIT")) {
    absl::StatusOr<absl::Duration> wait = ParseSeconds(v);
    if (!wait.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("CAIRN_SERVER_WAIT: ", wait.status().message()));
    }
    options.retry_for = *wait;
  }
  if (const char* v = Env("CAIRN_TOKEN")) {
    options.token = v;
  } else if (const char* f = Env("CAIRN_TOKEN_FILE")) {
    CAIRN_ASSIGN_OR_RETURN(options.token, ReadTokenFile(f));
  }
  return options;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> Dial(const ClientOptions& options) {
  if (options.server.empty()) return absl::InvalidArgumentError("no server address given");
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (options.ca_file.empty()) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    absl::StatusOr<std::string> roots = ReadWholeFile(options.ca_file, "CA file");
    if (!roots.ok()) return roots.status();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *roots;
    creds = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(-1);  // commits of large trees; the server bounds them
  // Pings on idle connections too, at the interval GrpcServer accepts
  // (core/grpc_server.h), so a half-open connection is noticed without a
  // GOAWAY "too_many_pings".
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, Ms(options.keepalive_time));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, Ms(options.keepalive_timeout));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // gRPC's reconnect backoff grows to 120 s by default: after a long outage
  // the channel would stay down for up to that long after the server is
  // back. Capped, a restarted server is found within max_backoff.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              std::min(100, Ms(options.max_backoff)));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, Ms(options.max_backoff));
  // Chunk-sized messages dominate the traffic; larger socket reads cut the
  // syscalls per chunk.
  args.SetInt(GRPC_ARG_TCP_READ_CHUNK_SIZE, 1 << 20);
  args.SetInt(GRPC_ARG_TCP_MIN_READ_CHUNK_SIZE, 256 << 10);
  args.SetInt(GRPC_ARG_TCP_MAX_READ_CHUNK_SIZE, 4 << 20);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(options.server, creds, args);
  if (channel == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot connect to ", options.server));
  }
  return channel;
}

void Authorize(grpc::ClientContext& context, const ClientOptions& options) {
  if (!options.token.empty()) {
    context.AddMetadata("authorization", absl::StrCat("Bearer ", options.token));
  }
}

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace cairn
