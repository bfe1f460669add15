// VolumeClient: the mounter's narrow view of the control plane (DESIGN.md §3):
// open a volume (data key, head, limits), read the head, commit a change set,
// and a BlobStore of sealed objects. The real implementation is a thin
// adapter over the shared core client (core/volume_api_client.h), which sets
// deadlines and waits out a control-plane restart (ClientOptions::retry_for,
// the mount's --read-timeout) before a call fails with UNAVAILABLE; tests of
// the mounter library may substitute their own.
//
// Thread-safe: every method may be called from any thread concurrently.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "core/blob_store.h"
#include "core/rpc_client.h"
#include "proto/objects.pb.h"
#include "proto/volume.pb.h"

namespace cairn::mounter {

class VolumeClient {
 public:
  virtual ~VolumeClient() = default;

  // NotFound if the volume does not exist (C1).
  [[nodiscard]] virtual absl::StatusOr<api::OpenVolumeResponse> Open(
      const api::VolumeRef& ref) = 0;
  [[nodiscard]] virtual absl::StatusOr<api::Snapshot> Head(std::string_view volume_id) = 0;
  // Applies `changes` onto the current head (C4); returns the new snapshot.
  // `idempotency_key` names this change set: a resend with the same key
  // (after an error or a lost reply) is answered with the snapshot the first
  // one made instead of being applied again. Empty: no deduplication.
  [[nodiscard]] virtual absl::StatusOr<api::Snapshot> Commit(
      std::string_view volume_id, uint64_t base_seq, const objects::ChangeSet& changes,
      std::string_view idempotency_key) = 0;
  // Sealed objects of any volume, over the API (GetObjects / PutObjects /
  // MissingObjects). Owned by the client; valid for its lifetime. Only
  // Get/Put/Contains/Touch are supported; the rest answer Unimplemented.
  virtual BlobStore* blobs() = 0;
  // How long calls (including those waiting now) wait for an unreachable
  // control plane; the unmount path shortens it to its final-commit budget.
  virtual void SetRetryFor(absl::Duration retry_for) {}
  // Renews the lease of an ephemeral volume (a mount is one of its
  // holders). NotFound once the lease lapsed.
  [[nodiscard]] virtual absl::Status RenewLease(std::string_view volume_id) {
    return absl::UnimplementedError("this client cannot renew leases");
  }
};

// With `direct_reads`, blobs are read from the object store with URLs the
// control plane signs, when it has them (core/direct_fetch_blob_store.h).
[[nodiscard]] absl::StatusOr<std::unique_ptr<VolumeClient>> NewGrpcVolumeClient(
    const ClientOptions& options, bool direct_reads = true);

}  // namespace cairn::mounter
