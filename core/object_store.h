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

  // The newest directory-object encoding this build reads and writes
  // (objects.proto Directory.format). Format 2 adds the POSIX identity
  // fields (uid, gid, atime, ctime, rdev) and the special entry types;
  // format 3 the holes of sparse files (D28).
  static constexpr uint32_t kDirectoryFormat = 3;

  // Entries must be sorted and unique (InvalidArgument otherwise). The
  // stored object's `format` is derived from its entries, not taken from
  // `dir`: 3 when a file has holes, 2 when any entry uses a format-2
  // field, else absent, so a directory that uses none is byte-identical to
  // the one older builds wrote (same address, dedup across the change).
  [[nodiscard]] absl::StatusOr<Digest> PutDirectory(const objects::Directory& dir);
  // NotFound if absent; DataLoss if it fails to authenticate or parse;
  // FailedPrecondition if written in a format newer than kDirectoryFormat
  // (a newer Cairn wrote it: reading it here would drop what it says).
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
