// RemoteBlobStore: a BlobStore whose blobs live behind the control plane's
// Volume API (GetObjects / MissingObjects / PutObjects). Clients that seal
// on their side (the CLI's put/get, the mounter) wrap it in an ObjectStore.
//
// Only the data-path methods work remotely: Put, Get, Contains, Touch and
// the batched PutMany / GetMany / Missing. List, Delete, ListVolumes and
// DeleteVolume are the control plane's business and return Unimplemented.
// The server refreshes the mtime of every blob MissingObjects finds present
// (so Contains, Touch and Missing all restart GC's grace period for what
// the caller is about to reference).
//
// Thread-safe (a gRPC channel and stub are); each call is its own RPC, so
// concurrent callers get concurrent streams. Errors are the server's codes
// (Unavailable when it is unreachable).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/blob_store.h"
#include "core/rpc_client.h"
#include "proto/volume.grpc.pb.h"

namespace cairn {

class RemoteBlobStore : public BlobStore {
 public:
  RemoteBlobStore(std::shared_ptr<grpc::Channel> channel, ClientOptions options);

  absl::Status Put(std::string_view volume_id, const Digest& address,
                   std::string_view sealed) override;
  absl::StatusOr<std::string> Get(std::string_view volume_id, const Digest& address) override;
  absl::StatusOr<bool> Contains(std::string_view volume_id, const Digest& address) override;
  absl::Status Touch(std::string_view volume_id, const Digest& address) override;
  absl::Status List(std::string_view volume_id,
                    const std::function<void(const BlobInfo&)>& fn) override;
  absl::Status Delete(std::string_view volume_id, const Digest& address) override;
  absl::StatusOr<std::vector<std::string>> ListVolumes() override;
  absl::Status DeleteVolume(std::string_view volume_id) override;

  // Uploads every (address, sealed) pair in one client stream. The server
  // acknowledges the stream once all of it is durable. The rvalue overload
  // moves each blob into its message instead of copying it.
  [[nodiscard]] absl::Status PutMany(
      std::string_view volume_id,
      const std::vector<std::pair<Digest, std::string>>& blobs);
  [[nodiscard]] absl::Status PutMany(std::string_view volume_id,
                                     std::vector<std::pair<Digest, std::string>>&& blobs);

  // An open PutObjects stream, for callers that produce blobs over time:
  // Write sends one blob (moved into the message, not copied); Finish ends
  // the stream and returns once the server has made every blob durable.
  class PutStream {
   public:
    ~PutStream();
    [[nodiscard]] absl::Status Write(const Digest& address, std::string&& sealed);
    [[nodiscard]] absl::Status Finish();

   private:
    friend class RemoteBlobStore;
    PutStream() = default;
    std::string volume_id_;
    std::unique_ptr<grpc::ClientContext> context_;
    api::PutObjectsResponse response_;
    std::unique_ptr<grpc::ClientWriter<api::PutObjectsRequest>> writer_;
    bool first_ = true;
    bool broken_ = false;
    bool finished_ = false;
    absl::Status status_;
  };
  [[nodiscard]] std::unique_ptr<PutStream> OpenPutStream(std::string_view volume_id);
  // Fetches `addresses` in one server stream; results in the same order.
  // NotFound names the first address the server does not have.
  [[nodiscard]] absl::StatusOr<std::vector<std::string>> GetMany(
      std::string_view volume_id, const std::vector<Digest>& addresses);
  // The subset of `addresses` the server does not hold, in request order.
  [[nodiscard]] absl::StatusOr<std::vector<Digest>> Missing(std::string_view volume_id,
                                                            const std::vector<Digest>& addresses);

 private:
  std::unique_ptr<grpc::ClientContext> NewContext() const;

  const ClientOptions options_;
  std::unique_ptr<api::VolumeService::Stub> stub_;
};

}  // namespace cairn
