// S3BlobStore: blobs as objects <prefix>/<volume id>/<hex address> in one
// bucket of an S3-compatible object store (docs/decisions.md D40).
//
// A Put is durable when S3 acknowledges it (there is no batch durability
// point and no temporary: a PUT is atomic, and a failed one leaves nothing
// visible). Put sends `If-None-Match: *` so a present blob is not rewritten,
// and then refreshes its Last-Modified (GC's grace period counts from it)
// with a copy onto itself, as Touch does. Blobs of config.multipart_threshold
// or more go up as multipart uploads. Thread-safe.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/blob_store.h"
#include "core/s3_client.h"

namespace cairn {

class S3BlobStore : public BlobStore {
 public:
  // A URL anyone holding it can GET the sealed blob from until `expires`
  // passes (ciphertext only; the data key never leaves the control plane).
  // InvalidArgument for a bad volume ID.
  [[nodiscard]] virtual absl::StatusOr<std::string> PresignGet(std::string_view volume_id,
                                                               const Digest& address,
                                                               absl::Duration expires) = 0;
};

// Opens the store and checks that the bucket answers (FailedPrecondition
// if it does not exist, PermissionDenied for credentials it refuses,
// Unavailable if the endpoint cannot be reached).
[[nodiscard]] absl::StatusOr<std::unique_ptr<S3BlobStore>> OpenS3BlobStore(S3Config config);

}  // namespace cairn
