// Engine: the volume lifecycle and commits over a MetaStore + BlobStore
// (DESIGN.md C1, C2, C4, C7, C8). The control plane is a thin gRPC layer
// over this; tests drive it directly.
//
// Thread-safe. The stores are not owned and must outlive the Engine.
// Commits and garbage collection exclude each other through gc_mu_: a
// commit checks (and touches) every address it references under a shared
// lock, GC deletes under an exclusive one, so GC never removes a blob that a
// commit about to land depends on. One process owns a data directory at a
// time (see data_dir.h), so this in-process lock is sufficient.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "core/blob_store.h"
#include "core/crypto.h"
#include "core/meta_store.h"
#include "core/object_store.h"
#include "proto/objects.pb.h"

namespace cairn {

struct GcStats {
  uint64_t volumes_purged = 0;  // blob prefixes of deleted volumes removed
  uint64_t blobs_deleted = 0;
  uint64_t bytes_freed = 0;
};

class Engine {
 public:
  Engine(MetaStore* meta, BlobStore* blobs, MasterKey master);
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // version must be 1 or 2 (InvalidArgument); `limits` overrides the
  // version's defaults (tests use small ones). AlreadyExists if taken.
  [[nodiscard]] absl::StatusOr<VolumeRecord> CreateVolume(std::string_view ns,
                                                          std::string_view name, int version,
                                                          std::optional<Limits> limits = {});
  // Returns the existing volume, or creates it. FailedPrecondition naming
  // both versions if it exists with another version.
  [[nodiscard]] absl::StatusOr<VolumeRecord> GetOrCreateVolume(std::string_view ns,
                                                               std::string_view name,
                                                               int version);
  [[nodiscard]] absl::StatusOr<VolumeRecord> GetVolume(std::string_view ns, std::string_view name);
  // A clone: a new volume `name` in `ns` whose first head (snapshot 0) has
  // the root and totals of snapshot `seq` of `source_id` (its head when
  // unset). Nothing is re-sealed or rewritten: the clone gets the source's
  // data key, wrapped for the clone's ID, and its own link to every blob
  // that snapshot reaches (BlobStore::Link), so deleting the source never
  // breaks it (docs/decisions.md D12). Same version and limits as the
  // source. NotFound for an unknown source or snapshot, AlreadyExists if
  // the name is taken, InvalidArgument for a bad name.
  [[nodiscard]] absl::StatusOr<VolumeRecord> CloneVolume(std::string_view source_id,
                                                         std::optional<uint64_t> seq,
                                                         std::string_view ns,
                                                         std::string_view name);

  [[nodiscard]] absl::StatusOr<VolumeRecord> GetVolumeById(std::string_view id);
  [[nodiscard]] absl::StatusOr<std::vector<VolumeRecord>> ListVolumes(std::string_view ns);
  [[nodiscard]] absl::StatusOr<VolumeRecord> RenameVolume(std::string_view ns,
                                                          std::string_view name,
                                                          std::string_view new_name);
  // Destroys the volume's key and metadata at once (C8); its blobs become
  // garbage for CollectGarbage. NotFound if absent.
  [[nodiscard]] absl::Status DeleteVolume(std::string_view ns, std::string_view name);
  // The same, by ID: a caller that resolved a volume acts on exactly that one
  // (C1), never on a volume re-created under its name meanwhile.
  [[nodiscard]] absl::Status DeleteVolumeById(std::string_view id);
  [[nodiscard]] absl::StatusOr<VolumeRecord> RenameVolumeById(std::string_view id,
                                                              std::string_view new_name);

  [[nodiscard]] absl::StatusOr<DataKey> DataKeyFor(const VolumeRecord& volume) const;
  [[nodiscard]] absl::StatusOr<std::unique_ptr<ObjectStore>> OpenObjects(
      const VolumeRecord& volume) const;

  [[nodiscard]] absl::StatusOr<SnapshotRecord> Head(std::string_view volume_id);

  // Applies `changes` onto the current head (C4), retrying the head CAS
  // when another commit lands first. Every address the changes reference
  // must be stored: FailedPrecondition naming the first missing one.
  // NotFound if the volume was deleted. An empty change set returns the
  // head unchanged.
  [[nodiscard]] absl::StatusOr<SnapshotRecord> Commit(std::string_view volume_id,
                                                      const objects::ChangeSet& changes);

  // Removes blobs of deleted volumes, and blobs of live volumes that no
  // snapshot references and that are older than `grace` (uploads for
  // commits still in flight are younger).
  [[nodiscard]] absl::StatusOr<GcStats> CollectGarbage(std::chrono::seconds grace);

  MetaStore* meta() const { return meta_; }
  BlobStore* blobs() const { return blobs_; }

 private:
  MetaStore* const meta_;
  BlobStore* const blobs_;
  const MasterKey master_;
  // Shared by commits, exclusive for GC.
  std::shared_mutex gc_mu_;
};

// "vo-" followed by 22 random base62 characters.
std::string NewVolumeId();

}  // namespace cairn
