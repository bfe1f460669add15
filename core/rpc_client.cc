#include "core/rpc_client.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/status.h"
#include "absl/strings/ascii.h"
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
  return buf.str();
}

const char* Env(const char* name) {
  const char* v = std::getenv(name);
  return (v != nullptr && *v != '\0') ? v : nullptr;
}

}  // namespace

absl::StatusOr<ClientOptions> ClientOptionsFromEnv() {
  ClientOptions options;
  if (const char* v = Env("CAIRN_SERVER")) options.server = v;
  if (const char* v = Env("CAIRN_NAMESPACE")) options.ns = v;
  if (const char* v = Env("CAIRN_CA_FILE")) options.ca_file = v;
  if (const char* v = Env("CAIRN_TOKEN")) {
    options.token = v;
  } else if (const char* f = Env("CAIRN_TOKEN_FILE")) {
    absl::StatusOr<std::string> token = ReadWholeFile(f, "token file");
    if (!token.ok()) return token.status();
    // Token files usually end in a newline (echo > file); it is not part of the token.
    options.token = std::string(absl::StripAsciiWhitespace(*token));
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
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
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
