// DataDir: the embedded default's on-disk layout (standalone control plane).
//
//   DIR/LOCK        flock()ed by the owning process for its lifetime
//   DIR/master.key  32 bytes, mode 0600, created on first start
//   DIR/meta.db     SQLite metadata store
//   DIR/blobs/      LocalBlobStore root
//
// Owns the stores and the lock; movable, not copyable.
#pragma once

#include <filesystem>
#include <memory>

#include "absl/status/statusor.h"
#include "core/blob_store.h"
#include "core/engine.h"
#include "core/meta_store.h"

namespace cairn {

class MasterKeySource;

class DataDir {
 public:
  // Creates the directory and its contents if missing. FailedPrecondition
  // "data directory DIR is in use by another process" if locked. The master
  // key comes from `keys` (not owned; used only during Open) or, when null,
  // from DIR/master.key.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<DataDir>> Open(
      const std::filesystem::path& dir, MasterKeySource* keys = nullptr);
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
