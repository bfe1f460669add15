// ObjectStore: one volume's sealed view of a BlobStore. Chunks and directory
// objects go in as plaintext and are stored sealed under their HMAC address.
//
// Thread-safe. Does not own the BlobStore. Parsed directory objects are
// cached (they are immutable by address), bounded by entry count.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "core/blob_store.h"
#include "core/crypto.h"
#include "core/digest.h"
#include "proto/objects.pb.h"

namespace cairn {

class ObjectStore {
 public:
  ObjectStore(BlobStore* blobs, std::string volume_id, DataKey key);
  ~ObjectStore();
  ObjectStore(const ObjectStore&) = delete;
  ObjectStore& operator=(const ObjectStore&) = delete;

  const std::string& volume_id() const { return volume_id_; }
  const DataKey& key() const { return key_; }
  BlobStore* blobs() const { return blobs_; }

  // Seals and stores `plaintext` (skipping the write when already present).
  [[nodiscard]] absl::StatusOr<Digest> PutChunk(std::string_view plaintext);
  // The same into `batch` (of this volume, from blobs()->NewBatch): the
  // chunk is stored once the batch finishes. Not skipped when present
  // unless the store confirms it (Touch), as PutChunk.
  [[nodiscard]] absl::StatusOr<Digest> PutChunk(std::string_view plaintext,
                                                BlobStore::Batch& batch);
  // NotFound if absent; DataLoss if it fails to authenticate.
  [[nodiscard]] absl::StatusOr<std::string> GetChunk(const Digest& address);

  // Entries must be sorted and unique (InvalidArgument otherwise).
  [[nodiscard]] absl::StatusOr<Digest> PutDirectory(const objects::Directory& dir);
  [[nodiscard]] absl::StatusOr<std::shared_ptr<const objects::Directory>> GetDirectory(
      const Digest& address);

  // Address of the empty directory under this volume's key (stored on first
  // PutDirectory of an empty Directory).
  Digest EmptyDirectoryAddress() const;

 private:
  struct Cache;
  BlobStore* const blobs_;
  const std::string volume_id_;
  const DataKey key_;
  std::unique_ptr<Cache> cache_;
};

}  // namespace cairn
