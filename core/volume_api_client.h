// VolumeApiClient: the one typed client of the control plane's Volume API
// (proto/volume.proto), shared by the CLI, the mounter and the CSI plugin.
//
// Every RPC is a method returning absl::Status / StatusOr. Every attempt has
// a deadline (ClientOptions: metadata calls short, commits longer, streams
// long). A call that finds the server unreachable waits for the channel to
// connect again, for at most ClientOptions::retry_for in total, and is
// retried on UNAVAILABLE with jittered exponential backoff capped at
// max_backoff; gRPC's own reconnect backoff is capped the same way, so a
// server back from an outage of any length is used again within about
// max_backoff (default 1 s). DEADLINE_EXCEEDED is retried only for calls
// that are safe to repeat (reads, blob uploads, and Commit when it carries
// an idempotency key). UNAVAILABLE is retried for every call: gRPC reports
// it when the request could not be sent (no connection, GOAWAY).
//
// The bearer token goes on every call; TLS when ClientOptions::ca_file is
// set. Errors keep the server's code and message; an unreachable server
// names the address.
//
// Thread-safe: one client may be shared by any number of threads; each call
// is its own RPC on one shared channel. The methods are virtual so the
// test-only library can offer a fake (core/testing/fake_volume_api_client.h).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/blob_store.h"
#include "core/digest.h"
#include "core/rpc_client.h"
#include "proto/volume.grpc.pb.h"

namespace cairn {

class VolumeApiClient {
 public:
  // Builds the channel (no connection is made until the first call).
  // InvalidArgument for an empty address, FailedPrecondition for an
  // unreadable CA file.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<VolumeApiClient>> Connect(
      const ClientOptions& options);
  // Over an existing channel (an in-process server's, in tests). Such a
  // channel has no connectivity state: calls are not held for a
  // reconnect, only retried.
  [[nodiscard]] static std::unique_ptr<VolumeApiClient> OverChannel(
      std::shared_ptr<grpc::Channel> channel, const ClientOptions& options);
  virtual ~VolumeApiClient() = default;

  const ClientOptions& options() const { return options_; }
  // The volume `name` in the client's namespace.
  api::VolumeRef Ref(std::string_view name) const;
  // Calls retried so far (after UNAVAILABLE or a retryable deadline), for
  // logs and tests.
  uint64_t retries() const { return retries_.load(); }

  // ---- volumes ----
  [[nodiscard]] virtual absl::StatusOr<api::Volume> CreateVolume(const api::CreateVolumeRequest& request);
  [[nodiscard]] virtual absl::StatusOr<api::Volume> GetVolume(const api::VolumeRef& ref);
  [[nodiscard]] virtual absl::StatusOr<api::ListVolumesResponse> ListVolumes(std::string_view ns);
  [[nodiscard]] virtual absl::StatusOr<api::DeleteVolumeResponse> DeleteVolume(
      const api::DeleteVolumeRequest& request);
  [[nodiscard]] virtual absl::StatusOr<api::Volume> RenameVolume(const api::RenameVolumeRequest& request);
  // A holder's heartbeat for an ephemeral volume (NotFound once it lapsed).
  [[nodiscard]] virtual absl::StatusOr<api::Volume> RenewLease(const api::RenewLeaseRequest& request);

  // ---- files (served by the control plane) ----
  // Every entry of the listing, collected from the stream.
  [[nodiscard]] virtual absl::StatusOr<std::vector<api::FileEntry>> ListFiles(
      const api::ListFilesRequest& request);
  [[nodiscard]] virtual absl::StatusOr<api::FileEntry> Stat(const api::StatRequest& request);
  [[nodiscard]] virtual absl::StatusOr<api::CommitResponse> RemoveFile(
      const api::RemoveFileRequest& request);
  [[nodiscard]] virtual absl::StatusOr<api::CommitResponse> CopyFiles(const api::CopyFilesRequest& request);

  // ---- data path (clients seal, docs/decisions.md D1) ----
  // NotFound if the volume does not exist (C1).
  [[nodiscard]] virtual absl::StatusOr<api::OpenVolumeResponse> OpenVolume(const api::VolumeRef& ref);
  [[nodiscard]] virtual absl::StatusOr<api::Snapshot> GetHead(std::string_view volume_id);
  // Applies the change set onto the current head (C4). Retried after a lost
  // reply only when request.idempotency_key() is set.
  [[nodiscard]] virtual absl::StatusOr<api::Snapshot> Commit(const api::CommitRequest& request);

  // Fetches `addresses` in one server stream; results in request order.
  // NotFound names the first address the server does not have.
  [[nodiscard]] virtual absl::StatusOr<std::vector<std::string>> GetObjects(
      std::string_view volume_id, const std::vector<Digest>& addresses);
  // Part of one object (BlobStore::GetRange): NotFound if absent,
  // OutOfRange if `offset` is past its end.
  [[nodiscard]] virtual absl::StatusOr<BlobRange> GetObjectRange(std::string_view volume_id,
                                                                 const Digest& address,
                                                                 uint64_t offset, uint64_t length);
  // Presigned object-store URLs for `addresses` (GetObjectUrls), valid
  // until `expires`. Unimplemented when the server's blobs are not in an
  // object store.
  struct ObjectUrls {
    std::vector<std::string> urls;  // one per address, in order
    absl::Time expires;
  };
  [[nodiscard]] virtual absl::StatusOr<ObjectUrls> GetObjectUrls(
      std::string_view volume_id, const std::vector<Digest>& addresses);
  // The subset of `addresses` the server does not hold, in request order.
  // The server refreshes the GC grace period of every one it holds.
  [[nodiscard]] virtual absl::StatusOr<std::vector<Digest>> MissingObjects(
      std::string_view volume_id, const std::vector<Digest>& addresses);
  // Uploads every (address, sealed) pair in one client stream, acknowledged
  // once all of it is durable (D7). The blobs are moved into the messages
  // and back, so a retried stream resends them without copies; `blobs` is
  // unchanged on return.
  [[nodiscard]] virtual absl::Status PutObjects(std::string_view volume_id,
                                        std::vector<std::pair<Digest, std::string>>& blobs);

  // An open PutObjects stream for a producer of blobs over time. Not
  // retried by itself (it does not keep what it sent): a caller that gets
  // UNAVAILABLE redoes its unit of work (MissingObjects skips what landed).
  // Write moves the blob into the message; Finish returns once the server
  // has made every blob durable. Destroying an unfinished stream cancels it.
  class PutStream {
   public:
    virtual ~PutStream() = default;
    [[nodiscard]] virtual absl::Status Write(const Digest& address, std::string&& sealed) = 0;
    [[nodiscard]] virtual absl::Status Finish() = 0;
  };
  // Waits (up to retry_for) for the server to be reachable, then opens the
  // stream. Unavailable if it stays unreachable.
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<PutStream>> OpenPutStream(
      std::string_view volume_id);

  // Changes how long calls wait for an unreachable server (initially
  // options().retry_for), including calls waiting now: a mount that is
  // being unmounted stops waiting out an outage longer than its final
  // commit may take.
  void SetRetryFor(absl::Duration retry_for);
  absl::Duration retry_for() const { return absl::Nanoseconds(retry_for_ns_.load()); }

  // Blocks until the channel is connected or `timeout` passes; true if
  // connected. For callers that hold work until the server is back.
  [[nodiscard]] virtual bool WaitForServer(absl::Duration timeout);

  // The error a person sees for a failed call: the message kept, UNAVAILABLE
  // naming the server address, an empty message explained.
  [[nodiscard]] absl::Status Explain(absl::Status status) const;

 protected:
  // For the fake in the test-only library: no channel.
  explicit VolumeApiClient(ClientOptions options);

 private:
  enum class Kind { kMetadata, kCommit, kStream };
  enum class Retry { kUnavailableOnly, kAlsoDeadline };

  class GrpcPutStream;
  std::unique_ptr<grpc::ClientContext> NewContext(Kind kind) const;
  // Runs `attempt` with a fresh context until it succeeds, fails with a code
  // that is not retried, or retry_for is spent.
  absl::Status Call(std::string_view method, Kind kind, Retry retry,
                    const std::function<grpc::Status(grpc::ClientContext&)>& attempt);

  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  bool watch_channel_ = true;  // false: OverChannel
  std::unique_ptr<api::VolumeService::Stub> stub_;
  mutable std::atomic<uint64_t> retries_{0};
  std::atomic<int64_t> retry_for_ns_;
};

}  // namespace cairn
