// Engine: the volume lifecycle and commits over a MetaStore + BlobStore
// (DESIGN.md C1, C2, C4, C7, C8). The control plane is a thin gRPC layer
// over this; tests drive it directly.
//
// Thread-safe. The stores are not owned and must outlive the Engine.
// Commits and garbage collection exclude each other through gc_mu_: a
// commit checks (and touches) every address it references under a shared
// lock, GC deletes under an exclusive one, so GC never removes a blob that a
// commit about to land depends on. Within one process gc_mu_ does it; the
// MetaStore's GcLock (taken after gc_mu_) extends it to every process
// sharing the metadata store: replicas over one PostgreSQL (D38).
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
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/blob_store.h"
#include "core/crypto.h"
#include "core/meta_store.h"
#include "core/object_store.h"
#include "proto/objects.pb.h"

namespace cairn {

struct GcStats {
  uint64_t volumes_purged = 0;  // blob prefixes of deleted volumes removed
  uint64_t blobs_deleted = 0;
  uint64_t temporaries_deleted = 0;
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
  // Returns the existing volume, or creates it with the version's limits
  // tightened by `requested` (see TightenLimits). A request the existing
  // volume does not match is refused with AlreadyExists naming the
  // difference: another version, or a limit `requested` sets (non-zero)
  // that the volume has with another value. InvalidArgument as
  // TightenLimits.
  [[nodiscard]] absl::StatusOr<VolumeRecord> GetOrCreateVolume(std::string_view ns,
                                                               std::string_view name,
                                                               int version,
                                                               const Limits& requested = {});
  [[nodiscard]] absl::StatusOr<VolumeRecord> GetVolume(std::string_view ns, std::string_view name);

  // ---- Ephemeral volumes: anonymous, alive while a holder renews the lease ----
  static constexpr absl::Duration kDefaultLease = absl::Seconds(30);
  static constexpr absl::Duration kMaxLease = absl::Hours(24);
  // A new volume named "ephemeral-" + its ID's random part, whose lease
  // lapses `lease` from now unless renewed; when it lapses,
  // CollectExpiredVolumes deletes the volume (C8: its key is destroyed).
  // InvalidArgument for a lease outside [1 s, kMaxLease] or a bad version.
  [[nodiscard]] absl::StatusOr<VolumeRecord> CreateEphemeralVolume(
      std::string_view ns, int version, absl::Duration lease, std::optional<Limits> limits = {});
  // Extends the lease of ephemeral volume `id` to `lease` from now (never
  // shortening it). NotFound if the volume is gone or its lease lapsed;
  // FailedPrecondition if it is not ephemeral; InvalidArgument as above.
  [[nodiscard]] absl::StatusOr<VolumeRecord> RenewLease(std::string_view id, absl::Duration lease);
  // Deletes every ephemeral volume whose lease has lapsed, as DeleteVolumeById
  // does; returns how many. A lapsed lease cannot be renewed, so a volume
  // listed here is never revived between the listing and the delete.
  [[nodiscard]] absl::StatusOr<uint64_t> CollectExpiredVolumes();
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

  // ---- The object data path (PutObjects, MissingObjects, GetObjects) ----

  // Of `addresses`, those the volume does not store, in order. Present ones
  // are touched: their GC grace period restarts and the directory entries
  // leading to them are durable before this returns, so a commit may
  // reference them without uploading (D7). NotFound if the volume is gone.
  [[nodiscard]] absl::StatusOr<std::vector<Digest>> MissingObjects(
      std::string_view volume_id, const std::vector<Digest>& addresses);

  // Sealed blobs streamed into one volume, sharing durability points: blobs
  // are durable once Finish returns OK (and every kBlobsPerSync blobs on
  // the way, bounding what a failure in the middle leaves unacknowledged).
  // A dropped upload leaves each blob stored or absent, never half-written.
  // Not thread-safe: one per stream.
  class Upload {
   public:
    static constexpr uint64_t kBlobsPerSync = 64;
    // InvalidArgument if `sealed` is too short to be a sealed blob or
    // longer than kMaxUploadedObjectBytes (core/files.h); nothing of it is
    // stored then.
    [[nodiscard]] absl::Status Add(const Digest& address, std::string_view sealed);
    // Returns the number of blobs added.
    [[nodiscard]] absl::StatusOr<uint64_t> Finish();

   private:
    friend class Engine;
    Upload(BlobStore* blobs, std::string volume_id)
        : blobs_(blobs), volume_id_(std::move(volume_id)) {}
    BlobStore* const blobs_;
    const std::string volume_id_;
    std::unique_ptr<BlobStore::Batch> batch_;
    uint64_t added_ = 0;
  };
  // NotFound if the volume does not exist.
  [[nodiscard]] absl::StatusOr<std::unique_ptr<Upload>> NewUpload(std::string_view volume_id);

  // Part of a sealed blob (BlobStore::GetRange); NotFound naming the object
  // and volume, OutOfRange past its end.
  [[nodiscard]] absl::StatusOr<BlobRange> GetObjectRange(std::string_view volume_id,
                                                         const Digest& address, uint64_t offset,
                                                         uint64_t length);
  // The sealed blob; NotFound naming the object and volume.
  [[nodiscard]] absl::StatusOr<std::string> GetObject(std::string_view volume_id,
                                                      const Digest& address);

  // Applies `changes` onto the current head (C4), retrying the head CAS
  // when another commit lands first. Every address the changes reference
  // must be stored: FailedPrecondition naming the first missing one.
  // NotFound if the volume was deleted. An empty change set returns the
  // head unchanged.
  // A non-empty `idempotency_key` (at most kMaxIdempotencyKey bytes,
  // printable ASCII; InvalidArgument otherwise) is recorded with the
  // snapshot: a commit repeating a key recorded for the volume returns the
  // snapshot that key made, applying nothing, even if newer commits have
  // landed since. The key is recorded with a SHA-256 of the normalized
  // change set: a key repeated with different changes is FailedPrecondition.
  // A key with an empty change set (which makes no snapshot) is
  // InvalidArgument. Keys are kept for MetaStore::kCommitKeyRetentionNs (a
  // day) after their snapshot. `*made_snapshot` (if not null) is set to
  // whether this call published a new snapshot (false for a repeat or an
  // empty change set).
  [[nodiscard]] absl::StatusOr<SnapshotRecord> Commit(std::string_view volume_id,
                                                      const objects::ChangeSet& changes,
                                                      std::string_view idempotency_key = {},
                                                      bool* made_snapshot = nullptr);
  static constexpr size_t kMaxIdempotencyKey = 128;

  // Removes blobs of deleted volumes, and blobs of live volumes that no
  // snapshot references and temporaries of interrupted writes, both older
  // than `grace` (uploads for commits still in flight, and writes still in
  // progress, are younger).
  [[nodiscard]] absl::StatusOr<GcStats> CollectGarbage(std::chrono::seconds grace);

  MetaStore* meta() const { return meta_; }
  BlobStore* blobs() const { return blobs_; }

 private:
  // CreateVolume and CreateEphemeralVolume: with a lease the volume is
  // ephemeral and named after its ID (`name` is ignored).
  [[nodiscard]] absl::StatusOr<VolumeRecord> CreateVolumeRecord(
      std::string_view ns, std::string_view name, int version, std::optional<Limits> limits,
      std::optional<absl::Duration> lease);
  // Held by a commit from reading the head to its CAS, so commits to one
  // volume in this process never lose the CAS to each other. A lost CAS
  // wastes the attempt's work and leaves the directory objects it wrote
  // unreferenced (orphans: concurrent puts left a dozen), and the CAS is
  // one-at-a-time anyway. Commits from another process sharing the
  // metadata store can still win the CAS; the retry loop handles those.
  std::shared_ptr<absl::Mutex> CommitLock(const std::string& volume_id);

  MetaStore* const meta_;
  BlobStore* const blobs_;
  const MasterKey master_;
  // Lock order: a volume's commit lock, then gc_mu_, then the MetaStore's
  // GcLock (the same mode). Shared by commits, exclusive for GC.
  std::shared_mutex gc_mu_;
  absl::Mutex commit_locks_mu_;
  absl::flat_hash_map<std::string, std::weak_ptr<absl::Mutex>> commit_locks_
      ABSL_GUARDED_BY(commit_locks_mu_);
};

// The version's default limits (DefaultLimits), with each non-zero field of
// `requested` replacing the default. A limit above what the version allows
// would break C7's promise: InvalidArgument naming it (D6).
// `requested.hard_links` is ignored (it follows the version).
[[nodiscard]] absl::StatusOr<Limits> TightenLimits(int version, const Limits& requested);

// "vo-" followed by 22 random base62 characters.
std::string NewVolumeId();

}  // namespace cairn
