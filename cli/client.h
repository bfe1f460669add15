// Client: the CLI's connection to the Volume API. Wraps the stub with the
// bearer token, the namespace, and errors a person can act on (an
// unreachable server names the address and how to start one).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/rpc_client.h"
#include "proto/volume.grpc.pb.h"

namespace cairn::cli {

class Client {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Client>> Connect(
      const ClientOptions& options);

  api::VolumeService::Stub& stub() { return *stub_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  const ClientOptions& options() const { return options_; }

  // A fresh context carrying the token.
  std::unique_ptr<grpc::ClientContext> Context() const;
  // grpc::Status -> absl::Status, with a hint for UNAVAILABLE.
  absl::Status Check(const grpc::Status& status) const;
  // The volume `name` in the client's namespace.
  api::VolumeRef Ref(const std::string& name) const;

 private:
  Client() = default;
  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<api::VolumeService::Stub> stub_;
};

}  // namespace cairn::cli
