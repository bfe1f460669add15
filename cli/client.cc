#include "cli/client.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace cairn::cli {

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const ClientOptions& options) {
  std::unique_ptr<Client> client(new Client());
  client->options_ = options;
  CAIRN_ASSIGN_OR_RETURN(client->channel_, Dial(options));
  client->stub_ = api::VolumeService::NewStub(client->channel_);
  return client;
}

std::unique_ptr<grpc::ClientContext> Client::Context() const {
  auto context = std::make_unique<grpc::ClientContext>();
  Authorize(*context, options_);
  return context;
}

absl::Status Client::Check(const grpc::Status& status) const {
  absl::Status s = FromGrpc(status);
  if (!s.ok() && s.message().empty()) {
    // e.g. a request gRPC could not parse (a path that is not UTF-8).
    return absl::Status(s.code(), absl::StrCat("the request failed (",
                                               absl::StatusCodeToString(s.code()),
                                               ") and the server gave no reason"));
  }
  if (absl::IsUnavailable(s)) {
    return absl::UnavailableError(
        absl::StrCat("cannot reach the Cairn server at ", options_.server, " (", s.message(),
                     "); start one with `cairn server --data DIR` or set --server/CAIRN_SERVER"));
  }
  if (absl::IsUnauthenticated(s) && !absl::StrContains(s.message(), "unauthenticated")) {
    return absl::UnauthenticatedError(absl::StrCat("unauthenticated: ", s.message()));
  }
  return s;
}

api::VolumeRef Client::Ref(const std::string& name) const {
  api::VolumeRef ref;
  ref.set_namespace_(options_.ns);
  ref.set_name(name);
  return ref;
}

}  // namespace cairn::cli
