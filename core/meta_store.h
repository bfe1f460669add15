// MetaStore: volumes, snapshots and heads (DESIGN.md §2).
//
// The head of a volume changes only through CommitSnapshot's compare-and-swap.
// Implementations are thread-safe; SqliteMetaStore is also safe for several
// processes on one database file (WAL mode, busy timeout, IMMEDIATE
// transactions), and every call is one transaction.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/digest.h"

namespace cairn {

// C7 limits, stored per volume so tests can use small values.
struct Limits {
  uint64_t max_inodes = 0;        // 0: unlimited
  uint32_t max_dir_entries = 0;   // 0: unlimited
  uint64_t max_file_size = 0;     // 0: unlimited; a file must be < this
  bool hard_links = false;

  friend bool operator==(const Limits&, const Limits&) = default;
};

// v1: 500,000 inodes, no hard links. v2: 32,768 entries per directory,
// files under 1 TiB, hard links.
Limits DefaultLimits(int version);

struct VolumeRecord {
  std::string id;          // "vo-" + 22 random base62 characters
  std::string ns;          // namespace
  std::string name;
  int version = 2;
  int64_t created_at_ns = 0;
  std::string wrapped_key;  // MasterKey::Wrap output
  Limits limits;
  // Ephemeral volumes only: when the holders' lease lapses (wall clock, ns
  // since the epoch); the volume is then deleted by the lease sweeper.
  // 0: not ephemeral (an ordinary volume lives until deleted).
  int64_t lease_expires_ns = 0;
};

struct SnapshotRecord {
  std::string volume_id;
  uint64_t seq = 0;         // 0: the empty snapshot written at create
  Digest root;              // address of the root Directory object
  uint64_t parent_seq = 0;
  int64_t created_at_ns = 0;
  uint64_t inodes = 0;      // entries of every type, root excluded
  uint64_t bytes = 0;       // sum of file sizes
};

class MetaStore {
 public:
  virtual ~MetaStore() = default;

  // Inserts the volume and its snapshot 0 as head (and its lease when
  // volume.lease_expires_ns is set), atomically.
  // AlreadyExists if (ns, name) or id is taken.
  [[nodiscard]] virtual absl::Status CreateVolume(const VolumeRecord& volume,
                                                  const SnapshotRecord& initial) = 0;
  [[nodiscard]] virtual absl::StatusOr<VolumeRecord> GetVolumeByName(std::string_view ns,
                                                                     std::string_view name) = 0;
  [[nodiscard]] virtual absl::StatusOr<VolumeRecord> GetVolumeById(std::string_view id) = 0;
  // Newest first. An empty `ns` lists every namespace.
  [[nodiscard]] virtual absl::StatusOr<std::vector<VolumeRecord>> ListVolumes(
      std::string_view ns) = 0;
  // NotFound; AlreadyExists if the new name is taken in the namespace.
  [[nodiscard]] virtual absl::Status RenameVolume(std::string_view id,
                                                  std::string_view new_name) = 0;
  // Removes the volume row (and with it the wrapped key), its snapshots and
  // head in one transaction. NotFound if absent.
  [[nodiscard]] virtual absl::Status DeleteVolume(std::string_view id) = 0;

  [[nodiscard]] virtual absl::StatusOr<SnapshotRecord> GetHead(std::string_view volume_id) = 0;
  [[nodiscard]] virtual absl::StatusOr<SnapshotRecord> GetSnapshot(std::string_view volume_id,
                                                                   uint64_t seq) = 0;
  // Oldest first.
  [[nodiscard]] virtual absl::StatusOr<std::vector<SnapshotRecord>> ListSnapshots(
      std::string_view volume_id) = 0;
  // Stores `next` and makes it the head iff the head's seq is still
  // `expected_head_seq`; requires next.seq == expected_head_seq + 1.
  // Aborted if the head moved; NotFound if the volume is gone.
  // A non-empty `idempotency_key` is recorded with the snapshot and
  // `changes_digest` (what the commit applied, so a repeat can be told from
  // a different commit reusing the key) in the same
  // transaction; AlreadyExists (nothing stored) if the volume has it
  // recorded already: that commit has landed, FindCommit answers it. A key
  // is kept while its snapshot is younger than kCommitKeyRetentionNs,
  // measured by created_at_ns against `next.created_at_ns` (retries come
  // within the client's RPC deadline, minutes, whatever the commit rate);
  // kCommitKeysMaxPerVolume bounds a volume's keys only as a backstop: keys
  // of snapshots more than that many seqs behind the head are forgotten.
  [[nodiscard]] virtual absl::Status CommitSnapshot(const SnapshotRecord& next,
                                                    uint64_t expected_head_seq,
                                                    std::string_view idempotency_key = {},
                                                    const Digest& changes_digest = {}) = 0;
  // The snapshot recorded with `idempotency_key`, and in `*changes_digest`
  // (if not null) the digest recorded with it. NotFound if the volume is
  // gone or the key is not (or no longer) recorded.
  [[nodiscard]] virtual absl::StatusOr<SnapshotRecord> FindCommit(
      std::string_view volume_id, std::string_view idempotency_key,
      Digest* changes_digest = nullptr) = 0;

  // ---- Leases of ephemeral volumes ----
  // Extends the lease of an ephemeral volume to `expires_at_ns` (never
  // shortens it: the volume lives as long as its longest-lived holder) and
  // returns the volume with its new expiry. NotFound if the volume is gone
  // or its lease had lapsed by `now_ns` (a lapsed lease is never revived:
  // the sweeper may be deleting it); FailedPrecondition if the volume is
  // not ephemeral.
  [[nodiscard]] virtual absl::StatusOr<VolumeRecord> RenewLease(std::string_view volume_id,
                                                                int64_t now_ns,
                                                                int64_t expires_at_ns) = 0;
  // IDs of the ephemeral volumes whose lease lapsed by `now_ns`, soonest
  // lapsed first.
  [[nodiscard]] virtual absl::StatusOr<std::vector<std::string>> ListExpiredLeases(
      int64_t now_ns) = 0;

  // For readiness probes, cheap: OK if the store can serve reads and
  // writes that last. Unavailable naming what is wrong otherwise (for
  // SQLite: the database file is gone from its path or replaced, so what is
  // written would be lost, or a read fails).
  [[nodiscard]] virtual absl::Status CheckHealth() = 0;

  // Exclusion between commits (shared) and garbage collection (exclusive)
  // across every process using this store (D5, D38). Held until the
  // returned object is destroyed; the destructor never fails. The embedded
  // stores serve one process (the data directory's lock), where the
  // engine's own mutex already excludes, so they hand out a lock that
  // holds nothing. PostgreSQL takes an advisory lock, so that GC on one
  // replica never deletes a blob a commit on another is about to reference.
  // Unavailable if the lock cannot be taken (the database is unreachable).
  class GcLock {
   public:
    virtual ~GcLock() = default;
  };
  enum class GcLockMode { kShared, kExclusive };
  [[nodiscard]] virtual absl::StatusOr<std::unique_ptr<GcLock>> LockGc(GcLockMode mode) {
    (void)mode;
    return std::make_unique<GcLock>();
  }

  static constexpr int64_t kCommitKeyRetentionNs = int64_t{24} * 3600 * 1000000000;
  static constexpr uint64_t kCommitKeysMaxPerVolume = 100000;
};

// The NotFound answered for a volume whose lease lapsed (every store).
absl::Status LeaseLapsed(const VolumeRecord& volume);

struct SqliteOptions {
  // Name of a registered sqlite3_vfs to open the database through; empty:
  // SQLite's default. Crash tests use testing/fault_vfs.h.
  std::string vfs;
};

// Creates the database and schema if missing, and migrates an older schema
// in place (one transaction). FailedPrecondition for a database made by a
// newer version of Cairn; NotFound for an unknown `options.vfs`.
[[nodiscard]] absl::StatusOr<std::unique_ptr<MetaStore>> OpenSqliteMetaStore(
    const std::filesystem::path& db_path, const SqliteOptions& options = {});

struct PostgresOptions {
  // Connections used for statements; callers beyond this wait for one.
  int max_connections = 8;
  // Every statement is cancelled after this long (Unavailable): a stuck
  // lock or an overloaded server must not hang a commit forever.
  int statement_timeout_ms = 30000;
  // Waiting for the GC lock (LockGc) is bounded by this instead: a GC pass
  // over a large volume may hold it for minutes.
  int gc_lock_timeout_ms = 600000;
  int connect_timeout_s = 10;
};

// A MetaStore in a PostgreSQL database, for several control-plane replicas
// over one database (D37). `url` is a libpq connection string or URI
// (postgres://user@host:port/db?sslmode=...); the password may come from
// it, from PGPASSWORD or from a password file (PGPASSFILE / passfile=).
// Applies the schema migrations this version knows (one transaction under
// an advisory lock, so replicas starting together migrate once).
// Unavailable if the server cannot be reached; FailedPrecondition for a
// database migrated by a newer Cairn; InvalidArgument for a malformed URL.
[[nodiscard]] absl::StatusOr<std::unique_ptr<MetaStore>> OpenPostgresMetaStore(
    const std::string& url, const PostgresOptions& options = {});

// True for the URL forms OpenPostgresMetaStore is meant for
// (postgres:// or postgresql://).
bool IsPostgresUrl(std::string_view url);

}  // namespace cairn
