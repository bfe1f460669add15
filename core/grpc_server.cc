#include "core/grpc_server.h"

#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"

namespace cairn {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::FailedPreconditionError(absl::StrCat("cannot read ", std::string(what), " ", path));
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

// Removes a socket left by a previous process; refuses to remove anything else.
absl::Status PrepareSocketPath(const std::string& path) {
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("unix socket path must be absolute (unix:///path), got '", path, "'"));
  }
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  if (ec) return ErrnoToStatus(ec.value(), absl::StrCat("create the directory of ", path));
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoToStatus(errno, absl::StrCat("stat ", path));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " exists and is not a socket; refusing to replace it"));
  }
  if (::unlink(path.c_str()) != 0) return ErrnoToStatus(errno, absl::StrCat("remove stale ", path));
  return absl::OkStatus();
}

}  // namespace

bool IsUnixAddress(std::string_view address, std::string* path) {
  if (!address.starts_with("unix:")) return false;
  if (path != nullptr) {
    std::string_view rest = address.substr(5);
    // unix:///abs/path and unix:/abs/path both name /abs/path.
    if (rest.starts_with("//")) rest.remove_prefix(2);
    *path = std::string(rest);
  }
  return true;
}

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(
    const GrpcServerOptions& options, const std::vector<grpc::Service*>& services) {
  if (options.address.empty()) return absl::InvalidArgumentError("no listen address given");
  if (services.empty()) return absl::InvalidArgumentError("a gRPC server needs a service");
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key must be given together");
  }
  std::unique_ptr<GrpcServer> server(new GrpcServer());
  server->address_ = options.address;
  std::string listen = options.address;
  if (IsUnixAddress(options.address, &server->socket_path_)) {
    CAIRN_RETURN_IF_ERROR(PrepareSocketPath(server->socket_path_));
    listen = absl::StrCat("unix://", server->socket_path_);
  }

  std::shared_ptr<grpc::ServerCredentials> creds;
  if (options.tls_cert_file.empty()) {
    creds = grpc::InsecureServerCredentials();
  } else {
    grpc::SslServerCredentialsOptions ssl;
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    CAIRN_ASSIGN_OR_RETURN(pair.cert_chain, ReadPem(options.tls_cert_file, "TLS certificate"));
    CAIRN_ASSIGN_OR_RETURN(pair.private_key, ReadPem(options.tls_key_file, "TLS key"));
    ssl.pem_key_cert_pairs.push_back(std::move(pair));
    creds = grpc::SslServerCredentials(ssl);
  }

  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, creds, &server->port_);
  for (grpc::Service* service : services) builder.RegisterService(service);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             kMinPingIntervalMs);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  server->server_ = builder.BuildAndStart();
  // On a unix socket gRPC reports port 1 for success.
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.address,
                                               " (address in use, not local, or no permission?)"));
  }
  if (!server->socket_path_.empty()) server->port_ = 0;
  return server;
}

GrpcServer::~GrpcServer() { Shutdown(); }

void GrpcServer::Shutdown(absl::Duration grace) {
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(grace));
  server_->Wait();
  if (!socket_path_.empty()) ::unlink(socket_path_.c_str());
}

void GrpcServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

absl::Status CheckBearerToken(const grpc::ServerContext& context, std::string_view token) {
  if (token.empty()) return absl::OkStatus();
  const auto& md = context.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) {
    return absl::UnauthenticatedError(
        "unauthenticated: this server requires a bearer token (set CAIRN_TOKEN or "
        "CAIRN_TOKEN_FILE)");
  }
  std::string_view value(it->second.data(), it->second.size());
  const std::string expected = absl::StrCat("Bearer ", std::string(token));
  // Constant time, so the comparison does not leak a prefix of the token.
  if (value.size() != expected.size() ||
      CRYPTO_memcmp(value.data(), expected.data(), expected.size()) != 0) {
    return absl::UnauthenticatedError("unauthenticated: the bearer token was not accepted");
  }
  return absl::OkStatus();
}

}  // namespace cairn
