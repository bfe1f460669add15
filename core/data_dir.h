// DataDir: the embedded default's on-disk layout (standalone control plane).
//
//   DIR/LOCK        flock()ed by the owning process for its lifetime
//   DIR/master.key  32 bytes, mode 0600, created on first start
//   DIR/meta.db     SQLite metadata store, unless options.meta_url names a
//                   PostgreSQL database (D37), which then holds the metadata
//   DIR/blobs/      LocalBlobStore root, unless blobs live in S3
//                   (DataDirOptions::blobs_url)
//
// Owns the stores and the lock; movable, not copyable.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/blob_store.h"
#include "core/engine.h"
#include "core/env.h"
#include "core/meta_store.h"

namespace cairn {

class MasterKeySource;

struct DataDirOptions {
  // File operations of the blob store (null: PosixEnv()). Not owned; must
  // outlive the DataDir. The lock and master key always use the real
  // filesystem: the lock must be a real flock, and the key is written once
  // and synced before first use.
  Env* env = nullptr;
  SqliteOptions sqlite;
  // Where the master key comes from (null: DIR/master.key). Not owned;
  // used only during Open.
  MasterKeySource* keys = nullptr;
  // Empty: blobs in DIR/blobs. "s3://BUCKET/PREFIX?endpoint=…": blobs in
  // that bucket (core/s3_client.h ParseS3Url; D40).
  std::string blobs_url;
  // A PostgreSQL URL (postgres://...): the metadata lives there instead of
  // DIR/meta.db, shared with other replicas. Empty: the embedded SQLite.
  std::string meta_url;
  PostgresOptions postgres;
};

class DataDir {
 public:
  // Creates the directory and its contents if missing. FailedPrecondition
  // "data directory DIR is in use by another process" if locked. The master
  // key comes from options.keys or, when null, from DIR/master.key.
  // With options.keys, FailedPrecondition if the directory holds a volume
  // whose data key the master key cannot unwrap (it was made under another master key), so a
  // wrong key is refused at start instead of surfacing as unreadable
  // volumes later.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<DataDir>> Open(
      const std::filesystem::path& dir, const DataDirOptions& options = {});
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<DataDir>> Open(
      const std::filesystem::path& dir, MasterKeySource* keys);
  // The same with a master key kept elsewhere (a Kubernetes Secret):
  // DIR/master.key is neither read nor written.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<DataDir>> Open(
      const std::filesystem::path& dir, const MasterKey& master,
      DataDirOptions options = {});
  ~DataDir();
  DataDir(const DataDir&) = delete;
  DataDir& operator=(const DataDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  MetaStore& meta() { return *meta_; }
  BlobStore& blobs() { return *blobs_; }
  const MasterKey& master() const { return master_; }
  Engine& engine() { return *engine_; }

 private:
  DataDir(std::filesystem::path path, int lock_fd, std::unique_ptr<MetaStore> meta,
          std::unique_ptr<BlobStore> blobs, MasterKey master);
  std::filesystem::path path_;
  int lock_fd_;
  std::unique_ptr<MetaStore> meta_;
  std::unique_ptr<BlobStore> blobs_;
  MasterKey master_;
  std::unique_ptr<Engine> engine_;
};

}  // namespace cairn
