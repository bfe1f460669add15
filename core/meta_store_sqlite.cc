// SqliteMetaStore: volumes, snapshots and heads in one SQLite database.
//
// Concurrency: one connection per store, serialised by mu_ (SQLite
// connections are not safe for concurrent use, and statements are cached on
// it). Several processes may open the same file: WAL mode lets readers run
// beside a writer, every write is one BEGIN IMMEDIATE transaction (the write
// lock is taken up front, so two writers never deadlock upgrading a read
// lock), and busy_timeout makes a contended writer wait instead of failing.
// A writer that still cannot get the lock gets Unavailable (retry).
//
// Durability: synchronous=FULL fsyncs the WAL at every commit, so an
// acknowledged commit survives the process being killed or the machine
// losing power.
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <system_error>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/log.h"
#include "core/meta_store.h"
#include "core/meta_store_errors.h"
#include "core/status.h"

namespace cairn {

Limits DefaultLimits(int version) {
  if (version == 1) {
    return Limits{.max_inodes = 500000, .max_dir_entries = 0, .max_file_size = 0,
                  .hard_links = false};
  }
  return Limits{.max_inodes = 0, .max_dir_entries = 32768, .max_file_size = uint64_t{1} << 40,
                .hard_links = true};
}

namespace {

absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

constexpr int kBusyTimeoutMs = 10000;
// 1: volumes, snapshots, heads. 2: commit_keys (idempotent commits).
// 3: leases (ephemeral volumes).
// Every change so far only adds tables, so migrating is running the schema
// (IF NOT EXISTS) and raising user_version, in one transaction (Migrate).
constexpr int kSchemaVersion = 3;

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS volumes (
  id              TEXT PRIMARY KEY,
  ns              TEXT NOT NULL,
  name            TEXT NOT NULL,
  version         INTEGER NOT NULL,
  created_at_ns   INTEGER NOT NULL,
  wrapped_key     BLOB NOT NULL,
  max_inodes      INTEGER NOT NULL,
  max_dir_entries INTEGER NOT NULL,
  max_file_size   INTEGER NOT NULL,
  hard_links      INTEGER NOT NULL,
  UNIQUE (ns, name)
);
CREATE TABLE IF NOT EXISTS snapshots (
  volume_id     TEXT NOT NULL REFERENCES volumes(id),
  seq           INTEGER NOT NULL,
  root          BLOB NOT NULL,
  parent_seq    INTEGER NOT NULL,
  created_at_ns INTEGER NOT NULL,
  inodes        INTEGER NOT NULL,
  bytes         INTEGER NOT NULL,
  PRIMARY KEY (volume_id, seq)
);
CREATE TABLE IF NOT EXISTS heads (
  volume_id TEXT PRIMARY KEY REFERENCES volumes(id),
  seq       INTEGER NOT NULL,
  FOREIGN KEY (volume_id, seq) REFERENCES snapshots(volume_id, seq)
);
CREATE INDEX IF NOT EXISTS volumes_by_age ON volumes(created_at_ns DESC, id);
-- ON DELETE CASCADE: a Cairn that predates this table deletes a volume's
-- snapshots and volume row and knows nothing of its keys (C8).
CREATE TABLE IF NOT EXISTS commit_keys (
  volume_id     TEXT NOT NULL REFERENCES volumes(id) ON DELETE CASCADE,
  key           TEXT NOT NULL,
  seq           INTEGER NOT NULL,
  created_at_ns INTEGER NOT NULL,
  changes       BLOB NOT NULL,
  PRIMARY KEY (volume_id, key),
  FOREIGN KEY (volume_id, seq) REFERENCES snapshots(volume_id, seq) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS commit_keys_by_seq ON commit_keys(volume_id, seq);
CREATE INDEX IF NOT EXISTS commit_keys_by_age ON commit_keys(volume_id, created_at_ns);
-- Ephemeral volumes: a row per volume that lives only while its holders
-- renew the lease. No row: an ordinary volume.
CREATE TABLE IF NOT EXISTS leases (
  volume_id     TEXT PRIMARY KEY REFERENCES volumes(id) ON DELETE CASCADE,
  expires_at_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_by_expiry ON leases(expires_at_ns);
)sql";

constexpr char kVolumeColumns[] =
    "id, ns, name, version, created_at_ns, wrapped_key, max_inodes, max_dir_entries, "
    "max_file_size, hard_links";
// What reads of a volume select: its columns and its lease's expiry (NULL,
// read as 0, for an ordinary volume).
constexpr char kVolumeSelect[] =
    "SELECT id, ns, name, version, created_at_ns, wrapped_key, max_inodes, max_dir_entries, "
    "max_file_size, hard_links, "
    "(SELECT expires_at_ns FROM leases WHERE leases.volume_id = volumes.id) FROM volumes";
constexpr char kSnapshotColumns[] =
    "volume_id, seq, root, parent_seq, created_at_ns, inodes, bytes";

// Statement indexes into SqliteMetaStore::stmts_.
enum Stmt {
  kBeginImmediate,
  kBeginDeferred,
  kCommit,
  kRollback,
  kInsertVolume,
  kInsertSnapshot,
  kInsertHead,
  kVolumeById,
  kVolumeByName,
  kListAll,
  kListNs,
  kRename,
  kDeleteHead,
  kDeleteSnapshots,
  kDeleteVolume,
  kHeadSeq,
  kUpdateHead,
  kSnapshot,
  kListSnapshots,
  kFindKey,
  kInsertKey,
  kPruneKeys,
  kDeleteKeys,
  kInsertLease,
  kLeaseExpiry,
  kUpdateLease,
  kExpiredLeases,
  kDeleteLease,
  kNumStmts,
};

std::string StmtSql(Stmt s) {
  switch (s) {
    case kBeginImmediate: return "BEGIN IMMEDIATE";
    case kBeginDeferred: return "BEGIN";
    case kCommit: return "COMMIT";
    case kRollback: return "ROLLBACK";
    case kInsertVolume:
      return absl::StrCat("INSERT INTO volumes (", kVolumeColumns,
                          ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    case kInsertSnapshot:
      return absl::StrCat("INSERT INTO snapshots (", kSnapshotColumns,
                          ") VALUES (?, ?, ?, ?, ?, ?, ?)");
    case kInsertHead: return "INSERT INTO heads (volume_id, seq) VALUES (?, ?)";
    case kVolumeById: return absl::StrCat(kVolumeSelect, " WHERE id = ?");
    case kVolumeByName: return absl::StrCat(kVolumeSelect, " WHERE ns = ? AND name = ?");
    case kListAll: return absl::StrCat(kVolumeSelect, " ORDER BY created_at_ns DESC, id ASC");
    case kListNs:
      return absl::StrCat(kVolumeSelect, " WHERE ns = ? ORDER BY created_at_ns DESC, id ASC");
    case kRename: return "UPDATE volumes SET name = ? WHERE id = ?";
    case kDeleteHead: return "DELETE FROM heads WHERE volume_id = ?";
    case kDeleteSnapshots: return "DELETE FROM snapshots WHERE volume_id = ?";
    case kDeleteVolume: return "DELETE FROM volumes WHERE id = ?";
    case kHeadSeq: return "SELECT seq FROM heads WHERE volume_id = ?";
    case kUpdateHead: return "UPDATE heads SET seq = ? WHERE volume_id = ?";
    case kSnapshot:
      return absl::StrCat("SELECT ", kSnapshotColumns,
                          " FROM snapshots WHERE volume_id = ? AND seq = ?");
    case kListSnapshots:
      return absl::StrCat("SELECT ", kSnapshotColumns,
                          " FROM snapshots WHERE volume_id = ? ORDER BY seq ASC");
    case kFindKey: return "SELECT seq, changes FROM commit_keys WHERE volume_id = ? AND key = ?";
    case kInsertKey:
      return "INSERT INTO commit_keys (volume_id, key, seq, created_at_ns, changes) "
             "VALUES (?, ?, ?, ?, ?)";
    case kPruneKeys:
      return "DELETE FROM commit_keys WHERE volume_id = ?1 AND (created_at_ns < ?2 OR seq < ?3)";
    case kDeleteKeys: return "DELETE FROM commit_keys WHERE volume_id = ?";
    case kInsertLease: return "INSERT INTO leases (volume_id, expires_at_ns) VALUES (?, ?)";
    case kLeaseExpiry: return "SELECT expires_at_ns FROM leases WHERE volume_id = ?";
    case kUpdateLease: return "UPDATE leases SET expires_at_ns = ? WHERE volume_id = ?";
    case kExpiredLeases:
      return "SELECT volume_id FROM leases WHERE expires_at_ns <= ? ORDER BY expires_at_ns";
    case kDeleteLease: return "DELETE FROM leases WHERE volume_id = ?";
    case kNumStmts: break;
  }
  return "";
}

absl::Status SqliteError(sqlite3* db, int rc, std::string_view what) {
  std::string message = absl::StrCat("sqlite ", Sv(what), ": ", sqlite3_errstr(rc));
  if (db != nullptr && sqlite3_extended_errcode(db) == rc) {
    absl::StrAppend(&message, " (", sqlite3_errmsg(db), ")");
  }
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(message);
    case SQLITE_CONSTRAINT:
      return absl::AlreadyExistsError(message);
    case SQLITE_FULL:
      return absl::ResourceExhaustedError(message);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(message);
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
      return absl::FailedPreconditionError(message);
    default:
      return absl::InternalError(message);
  }
}

// Resets a cached statement (and drops its bindings) when a call is done
// with it, whatever path the call leaves by.
class StmtUse {
 public:
  explicit StmtUse(sqlite3_stmt* s) : s_(s) {}
  ~StmtUse() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  StmtUse(const StmtUse&) = delete;
  StmtUse& operator=(const StmtUse&) = delete;
  sqlite3_stmt* get() const { return s_; }

  void Text(int i, std::string_view v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void Blob(int i, std::string_view v) {
    // A zero-length blob must still be a blob, not NULL: pass a non-null pointer.
    sqlite3_bind_blob(s_, i, v.empty() ? "" : v.data(), static_cast<int>(v.size()),
                      SQLITE_TRANSIENT);
  }
  void Int(int i, int64_t v) { sqlite3_bind_int64(s_, i, v); }
  void U64(int i, uint64_t v) { sqlite3_bind_int64(s_, i, static_cast<int64_t>(v)); }

  std::string ColText(int i) const {
    const unsigned char* p = sqlite3_column_text(s_, i);
    return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(s_, i))
             : std::string();
  }
  std::string ColBlob(int i) const {
    const void* p = sqlite3_column_blob(s_, i);
    return p ? std::string(static_cast<const char*>(p), sqlite3_column_bytes(s_, i))
             : std::string();
  }
  int64_t ColInt(int i) const { return sqlite3_column_int64(s_, i); }
  uint64_t ColU64(int i) const { return static_cast<uint64_t>(sqlite3_column_int64(s_, i)); }

 private:
  sqlite3_stmt* s_;
};

VolumeRecord ReadVolume(const StmtUse& s) {
  VolumeRecord v;
  v.id = s.ColText(0);
  v.ns = s.ColText(1);
  v.name = s.ColText(2);
  v.version = static_cast<int>(s.ColInt(3));
  v.created_at_ns = s.ColInt(4);
  v.wrapped_key = s.ColBlob(5);
  v.limits.max_inodes = s.ColU64(6);
  v.limits.max_dir_entries = static_cast<uint32_t>(s.ColU64(7));
  v.limits.max_file_size = s.ColU64(8);
  v.limits.hard_links = s.ColInt(9) != 0;
  v.lease_expires_ns = s.ColInt(10);
  return v;
}

absl::StatusOr<SnapshotRecord> ReadSnapshot(const StmtUse& s) {
  SnapshotRecord r;
  r.volume_id = s.ColText(0);
  r.seq = s.ColU64(1);
  absl::StatusOr<Digest> root = Digest::FromRaw(s.ColBlob(2));
  if (!root.ok()) {
    return absl::DataLossError(absl::StrCat("snapshot ", r.volume_id, "@", r.seq,
                                            " has a malformed root: ", root.status().message()));
  }
  r.root = *root;
  r.parent_seq = s.ColU64(3);
  r.created_at_ns = s.ColInt(4);
  r.inodes = s.ColU64(5);
  r.bytes = s.ColU64(6);
  return r;
}

}  // namespace

absl::Status LeaseLapsed(const VolumeRecord& volume) {
  return absl::NotFoundError(absl::StrCat("ephemeral volume ", volume.name, " (", volume.id,
                                          ") is gone: its lease lapsed and it is being deleted"));
}

namespace {

class SqliteMetaStore : public MetaStore {
 public:
  ~SqliteMetaStore() override {
    for (sqlite3_stmt* s : stmts_) sqlite3_finalize(s);
    sqlite3_close_v2(db_);
  }

  static absl::StatusOr<std::unique_ptr<MetaStore>> Open(const std::filesystem::path& path,
                                                         const SqliteOptions& options) {
    auto store = std::unique_ptr<SqliteMetaStore>(new SqliteMetaStore());
    absl::MutexLock lock(&store->mu_);
    CAIRN_RETURN_IF_ERROR(store->Init(path, options));
    return std::unique_ptr<MetaStore>(std::move(store));
  }

  absl::Status CreateVolume(const VolumeRecord& volume, const SnapshotRecord& initial) override {
    if (initial.volume_id != volume.id) {
      return absl::InvalidArgumentError(absl::StrCat("initial snapshot belongs to ",
                                                     initial.volume_id, ", not ", volume.id));
    }
    absl::MutexLock lock(&mu_);
    CAIRN_RETURN_IF_ERROR(Begin(kBeginImmediate));
    Txn txn(this);
    // Checked first for a clear message; the UNIQUE constraints back it.
    {
      StmtUse s(stmts_[kVolumeByName]);
      s.Text(1, volume.ns);
      s.Text(2, volume.name);
      CAIRN_ASSIGN_OR_RETURN(bool found, Step(s, "look up volume"));
      if (found) {
        return absl::AlreadyExistsError(
            absl::StrCat("volume ", volume.ns, "/", volume.name, " already exists"));
      }
    }
    {
      StmtUse s(stmts_[kVolumeById]);
      s.Text(1, volume.id);
      CAIRN_ASSIGN_OR_RETURN(bool found, Step(s, "look up volume"));
      if (found) {
        return absl::AlreadyExistsError(absl::StrCat("volume ID ", volume.id, " already exists"));
      }
    }
    {
      StmtUse s(stmts_[kInsertVolume]);
      s.Text(1, volume.id);
      s.Text(2, volume.ns);
      s.Text(3, volume.name);
      s.Int(4, volume.version);
      s.Int(5, volume.created_at_ns);
      s.Blob(6, volume.wrapped_key);
      s.U64(7, volume.limits.max_inodes);
      s.U64(8, volume.limits.max_dir_entries);
      s.U64(9, volume.limits.max_file_size);
      s.Int(10, volume.limits.hard_links ? 1 : 0);
      CAIRN_RETURN_IF_ERROR(Exec(s, "insert volume"));
    }
    CAIRN_RETURN_IF_ERROR(InsertSnapshot(initial));
    {
      StmtUse s(stmts_[kInsertHead]);
      s.Text(1, volume.id);
      s.U64(2, initial.seq);
      CAIRN_RETURN_IF_ERROR(Exec(s, "insert head"));
    }
    if (volume.lease_expires_ns != 0) {
      StmtUse s(stmts_[kInsertLease]);
      s.Text(1, volume.id);
      s.Int(2, volume.lease_expires_ns);
      CAIRN_RETURN_IF_ERROR(Exec(s, "insert lease"));
    }
    return txn.Commit();
  }

  absl::StatusOr<VolumeRecord> GetVolumeByName(std::string_view ns,
                                               std::string_view name) override {
    absl::MutexLock lock(&mu_);
    StmtUse s(stmts_[kVolumeByName]);
    s.Text(1, ns);
    s.Text(2, name);
    CAIRN_ASSIGN_OR_RETURN(bool found, Step(s, "get volume"));
    if (!found) {
      return absl::NotFoundError(absl::StrCat("volume ", Sv(ns), "/", Sv(name), " not found"));
    }
    return ReadVolume(s);
  }

  absl::StatusOr<VolumeRecord> GetVolumeById(std::string_view id) override {
    absl::MutexLock lock(&mu_);
    return GetVolumeByIdLocked(id);
  }

  absl::StatusOr<std::vector<VolumeRecord>> ListVolumes(std::string_view ns) override {
    absl::MutexLock lock(&mu_);
    StmtUse s(stmts_[ns.empty() ? kListAll : kListNs]);
    if (!ns.empty()) s.Text(1, ns);
    std::vector<VolumeRecord> out;
    for (;;) {
      CAIRN_ASSIGN_OR_RETURN(bool row, Step(s, "list volumes"));
      if (!row) break;
      out.push_back(ReadVolume(s));
    }
    return out;
  }

  absl::Status RenameVolume(std::string_view id, std::string_view new_name) override {
    absl::MutexLock lock(&mu_);
    CAIRN_RETURN_IF_ERROR(Begin(kBeginImmediate));
    Txn txn(this);
    CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, GetVolumeByIdLocked(id));
    if (volume.name == new_name) return txn.Commit();
    {
      StmtUse s(stmts_[kVolumeByName]);
      s.Text(1, volume.ns);
      s.Text(2, new_name);
      CAIRN_ASSIGN_OR_RETURN(bool found, Step(s, "look up volume"));
      if (found) {
        return absl::AlreadyExistsError(
            absl::StrCat("volume ", volume.ns, "/", Sv(new_name), " already exists"));
      }
    }
    {
      StmtUse s(stmts_[kRename]);
      s.Text(1, new_name);
      s.Text(2, id);
      CAIRN_RETURN_IF_ERROR(Exec(s, "rename volume"));
    }
    return txn.Commit();
  }

  absl::Status DeleteVolume(std::string_view id) override {
    absl::MutexLock lock(&mu_);
    CAIRN_RETURN_IF_ERROR(Begin(kBeginImmediate));
    Txn txn(this);
    CAIRN_RETURN_IF_ERROR(GetVolumeByIdLocked(id).status());
    // Children first: the foreign keys are enforced.
    for (Stmt stmt : {kDeleteKeys, kDeleteLease, kDeleteHead, kDeleteSnapshots, kDeleteVolume}) {
      StmtUse s(stmts_[stmt]);
      s.Text(1, id);
      CAIRN_RETURN_IF_ERROR(Exec(s, "delete volume"));
    }
    CAIRN_RETURN_IF_ERROR(txn.Commit());
    // C8: the wrapped key must not survive on disk. secure_delete zeroes the
    // freed cells in the new page images; checkpointing copies those over
    // the database file and truncates the WAL, which still holds the frames
    // that inserted the key. A reader in another process can hold the
    // checkpoint back; the delete itself has happened, so only warn.
    absl::StatusOr<std::string> busy = QueryText("PRAGMA wal_checkpoint(TRUNCATE)");
    if (!busy.ok() || *busy != "0") {
      CAIRN_LOG_WARNING("volume %s deleted, but the metadata WAL could not be checkpointed (%s); "
                        "its wrapped key stays on disk until the next checkpoint",
                        std::string(id), busy.ok() ? "busy" : busy.status().ToString());
    }
    return absl::OkStatus();
  }

  absl::StatusOr<VolumeRecord> RenewLease(std::string_view volume_id, int64_t now_ns,
                                          int64_t expires_at_ns) override {
    absl::MutexLock lock(&mu_);
    CAIRN_RETURN_IF_ERROR(Begin(kBeginImmediate));
    Txn txn(this);
    CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, GetVolumeByIdLocked(volume_id));
    if (volume.lease_expires_ns == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("volume ", volume.name, " (", Sv(volume_id),
                       ") is not ephemeral: it has no lease to renew"));
    }
    if (volume.lease_expires_ns <= now_ns) return LeaseLapsed(volume);
    if (expires_at_ns > volume.lease_expires_ns) {
      StmtUse s(stmts_[kUpdateLease]);
      s.Int(1, expires_at_ns);
      s.Text(2, volume_id);
      CAIRN_RETURN_IF_ERROR(Exec(s, "renew lease"));
      volume.lease_expires_ns = expires_at_ns;
    }
    CAIRN_RETURN_IF_ERROR(txn.Commit());
    return volume;
  }

  absl::StatusOr<std::vector<std::string>> ListExpiredLeases(int64_t now_ns) override {
    absl::MutexLock lock(&mu_);
    StmtUse s(stmts_[kExpiredLeases]);
    s.Int(1, now_ns);
    std::vector<std::string> out;
    for (;;) {
      CAIRN_ASSIGN_OR_RETURN(bool row, Step(s, "list expired leases"));
      if (!row) break;
      out.push_back(s.ColText(0));
    }
    return out;
  }

  absl::StatusOr<SnapshotRecord> GetHead(std::string_view volume_id) override {
    absl::MutexLock lock(&mu_);
    // One read transaction, so the head seq and its row are consistent
    // even with a writer in another process.
    CAIRN_RETURN_IF_ERROR(Begin(kBeginDeferred));
    Txn txn(this);
    CAIRN_ASSIGN_OR_RETURN(uint64_t seq, HeadSeqLocked(volume_id));
    CAIRN_ASSIGN_OR_RETURN(SnapshotRecord head, GetSnapshotLocked(volume_id, seq));
    CAIRN_RETURN_IF_ERROR(txn.Commit());
    return head;
  }

  absl::StatusOr<SnapshotRecord> GetSnapshot(std::string_view volume_id, uint64_t seq) override {
    absl::MutexLock lock(&mu_);
    CAIRN_RETURN_IF_ERROR(Begin(kBeginDeferred));
    Txn txn(this);
    CAIRN_RETURN_IF_ERROR(HeadSeqLocked(volume_id).status());  // NotFound for the volume
    CAIRN_ASSIGN_OR_RETURN(SnapshotRecord snap, GetSnapshotLocked(volume_id, seq));
    CAIRN_RETURN_IF_ERROR(txn.Commit());
    return snap;
  }

  absl::StatusOr<std::vector<SnapshotRecord>> ListSnapshots(std::string_view volume_id) override {
    absl::MutexLock lock(&mu_);
    CAIRN_RETURN_IF_ERROR(Begin(kBeginDeferred));
    Txn txn(this);
    CAIRN_RETURN_IF_ERROR(HeadSeqLocked(volume_id).status());
    std::vector<SnapshotRecord> out;
    {
      StmtUse s(stmts_[kListSnapshots]);
      s.Text(1, volume_id);
      for (;;) {
        CAIRN_ASSIGN_OR_RETURN(bool row, Step(s, "list snapshots"));
        if (!row) break;
        CAIRN_ASSIGN_OR_RETURN(SnapshotRecord r, ReadSnapshot(s));
        out.push_back(std::move(r));
      }
    }
    CAIRN_RETURN_IF_ERROR(txn.Commit());
    return out;
  }

  absl::Status CommitSnapshot(const SnapshotRecord& next, uint64_t expected_head_seq,
                              std::string_view idempotency_key,
                              const Digest& changes_digest) override {
    CAIRN_RETURN_IF_ERROR(meta_store_errors::CheckFollows(next, expected_head_seq));
    absl::MutexLock lock(&mu_);
    // IMMEDIATE: the write lock is held from the head read to the update,
    // which is what makes this a compare-and-swap across processes.
    CAIRN_RETURN_IF_ERROR(Begin(kBeginImmediate));
    Txn txn(this);
    CAIRN_ASSIGN_OR_RETURN(uint64_t head, HeadSeqLocked(next.volume_id));
    if (!idempotency_key.empty()) {
      CAIRN_ASSIGN_OR_RETURN(std::optional<uint64_t> seq,
                             FindKeyLocked(next.volume_id, idempotency_key));
      if (seq.has_value()) {
        return absl::AlreadyExistsError(
            absl::StrCat("commit key already recorded at snapshot ", *seq));
      }
    }
    if (head != expected_head_seq) {
      return meta_store_errors::HeadMoved(expected_head_seq, head);
    }
    CAIRN_RETURN_IF_ERROR(InsertSnapshot(next));
    {
      StmtUse s(stmts_[kUpdateHead]);
      s.U64(1, next.seq);
      s.Text(2, next.volume_id);
      CAIRN_RETURN_IF_ERROR(Exec(s, "update head"));
    }
    if (!idempotency_key.empty()) {
      StmtUse s(stmts_[kInsertKey]);
      s.Text(1, next.volume_id);
      s.Text(2, idempotency_key);
      s.U64(3, next.seq);
      s.Int(4, next.created_at_ns);
      s.Blob(5, changes_digest.raw());
      CAIRN_RETURN_IF_ERROR(Exec(s, "record commit key"));
    }
    {
      StmtUse s(stmts_[kPruneKeys]);
      s.Text(1, next.volume_id);
      s.Int(2, next.created_at_ns - kCommitKeyRetentionNs);
      s.U64(3, next.seq > kCommitKeysMaxPerVolume ? next.seq - kCommitKeysMaxPerVolume + 1 : 0);
      CAIRN_RETURN_IF_ERROR(Exec(s, "forget old commit keys"));
    }
    return txn.Commit();
  }

  absl::StatusOr<SnapshotRecord> FindCommit(std::string_view volume_id,
                                            std::string_view idempotency_key,
                                            Digest* changes_digest) override {
    absl::MutexLock lock(&mu_);
    CAIRN_RETURN_IF_ERROR(Begin(kBeginDeferred));
    Txn txn(this);
    CAIRN_RETURN_IF_ERROR(HeadSeqLocked(volume_id).status());  // NotFound for the volume
    CAIRN_ASSIGN_OR_RETURN(std::optional<uint64_t> seq,
                           FindKeyLocked(volume_id, idempotency_key, changes_digest));
    if (!seq.has_value()) return absl::NotFoundError("commit key not recorded");
    CAIRN_ASSIGN_OR_RETURN(SnapshotRecord snap, GetSnapshotLocked(volume_id, *seq));
    CAIRN_RETURN_IF_ERROR(txn.Commit());
    return snap;
  }

 private:
  // Rolls back on scope exit unless Commit() ran.
  class Txn {
   public:
    explicit Txn(SqliteMetaStore* store) : store_(store) {}
    // A Txn lives inside a critical section of its store; AssertHeld tells
    // the thread-safety analysis so (and checks it in debug builds).
    ~Txn() {
      store_->mu_.AssertHeld();
      if (!done_) {
        StmtUse s(store_->stmts_[kRollback]);
        sqlite3_step(s.get());
      }
    }
    Txn(const Txn&) = delete;
    Txn& operator=(const Txn&) = delete;
    absl::Status Commit() {
      store_->mu_.AssertHeld();
      StmtUse s(store_->stmts_[kCommit]);
      int rc = sqlite3_step(s.get());
      if (rc != SQLITE_DONE) return SqliteError(store_->db_, rc, "commit");
      done_ = true;
      return absl::OkStatus();
    }

   private:
    SqliteMetaStore* store_;
    bool done_ = false;
  };

  SqliteMetaStore() = default;

  absl::Status Init(const std::filesystem::path& path, const SqliteOptions& options)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!options.vfs.empty() && sqlite3_vfs_find(options.vfs.c_str()) == nullptr) {
      return absl::NotFoundError(absl::StrCat("no SQLite VFS named ", options.vfs));
    }
    // NOMUTEX: mu_ already serialises every use of the connection.
    int rc = sqlite3_open_v2(path.c_str(), &db_,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             options.vfs.empty() ? nullptr : options.vfs.c_str());
    if (rc != SQLITE_OK) {
      return SqliteError(db_, rc, absl::StrCat("open ", path.string()));
    }
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, kBusyTimeoutMs);
    path_ = path;
    if (struct stat st; ::stat(path.c_str(), &st) == 0) {
      dev_ = st.st_dev;
      ino_ = st.st_ino;
    }
    // Switching to WAL needs a moment of exclusive access, which the busy
    // handler does not cover; retry while another process opens the file.
    for (int attempt = 0;; ++attempt) {
      absl::StatusOr<std::string> mode = QueryText("PRAGMA journal_mode=WAL");
      if (mode.ok() && *mode == "wal") break;
      if (attempt >= 100 || (!mode.ok() && !absl::IsUnavailable(mode.status()))) {
        return mode.ok() ? absl::FailedPreconditionError(absl::StrCat(
                               "cannot switch ", path.string(), " to WAL mode (got ", *mode, ")"))
                         : mode.status();
      }
      ::usleep(100 * 1000);
    }
    CAIRN_RETURN_IF_ERROR(ExecSql("PRAGMA synchronous=FULL"));
    // Deleted rows (a deleted volume's wrapped key, C8) are overwritten with
    // zeros instead of lingering in free space.
    CAIRN_RETURN_IF_ERROR(ExecSql("PRAGMA secure_delete=ON"));
    CAIRN_RETURN_IF_ERROR(ExecSql("PRAGMA foreign_keys=ON"));
    CAIRN_RETURN_IF_ERROR(Migrate(path));
    for (int i = 0; i < kNumStmts; ++i) {
      std::string sql = StmtSql(static_cast<Stmt>(i));
      rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmts_[i], nullptr);
      if (rc != SQLITE_OK) return SqliteError(db_, rc, absl::StrCat("prepare ", sql));
    }
    return absl::OkStatus();
  }

  // Creates a fresh schema or migrates an older one (see kSchemaVersion).
  // The version is read and raised inside one IMMEDIATE transaction: two
  // processes opening an old file at once migrate it once, and one that
  // read an older version before another raised it can never lower it.
  absl::Status Migrate(const std::filesystem::path& path) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    CAIRN_RETURN_IF_ERROR(ExecSql("BEGIN IMMEDIATE"));
    absl::StatusOr<std::string> on_disk = QueryText("PRAGMA user_version");
    if (!on_disk.ok()) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return on_disk.status();
    }
    const int version = std::atoi(on_disk->c_str());
    if (version > kSchemaVersion) {
      // A database written by a newer Cairn may hold what this one would
      // misread or drop; refuse it rather than guess.
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return absl::FailedPreconditionError(absl::StrCat(
          path.string(), " has metadata schema version ", version, "; this version of Cairn "
          "reads up to ", kSchemaVersion, " (upgrade Cairn)"));
    }
    if (version == kSchemaVersion) return ExecSql("COMMIT");
    // ExecSql rolls back if any of it fails.
    return ExecSql(absl::StrCat(kSchema, "PRAGMA user_version=", kSchemaVersion, ";COMMIT;"));
  }

  absl::Status ExecSql(const std::string& sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
      std::string what = absl::StrCat(sql.substr(0, 40), err ? absl::StrCat(": ", err) : "");
      sqlite3_free(err);
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);  // if one was open
      return SqliteError(db_, rc, what);
    }
    return absl::OkStatus();
  }

  // First column of the first row of a one-off statement, as text.
  absl::StatusOr<std::string> QueryText(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql, -1, &raw, nullptr);
    if (rc != SQLITE_OK) return SqliteError(db_, rc, sql);
    rc = sqlite3_step(raw);
    std::string out;
    if (rc == SQLITE_ROW) {
      const unsigned char* p = sqlite3_column_text(raw, 0);
      if (p != nullptr) out = reinterpret_cast<const char*>(p);
    }
    absl::Status status =
        rc == SQLITE_ROW || rc == SQLITE_DONE ? absl::OkStatus() : SqliteError(db_, rc, sql);
    sqlite3_finalize(raw);
    CAIRN_RETURN_IF_ERROR(status);
    return out;
  }

  absl::Status Begin(Stmt which) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    StmtUse s(stmts_[which]);
    int rc = sqlite3_step(s.get());
    if (rc != SQLITE_DONE) return SqliteError(db_, rc, "begin transaction");
    return absl::OkStatus();
  }

  // One step: true for a row, false when done.
  absl::StatusOr<bool> Step(StmtUse& s, std::string_view what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    int rc = sqlite3_step(s.get());
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteError(db_, rc, what);
  }

  absl::Status Exec(StmtUse& s, std::string_view what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    int rc = sqlite3_step(s.get());
    if (rc == SQLITE_DONE || rc == SQLITE_ROW) return absl::OkStatus();
    return SqliteError(db_, rc, what);
  }

  absl::StatusOr<VolumeRecord> GetVolumeByIdLocked(std::string_view id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    StmtUse s(stmts_[kVolumeById]);
    s.Text(1, id);
    CAIRN_ASSIGN_OR_RETURN(bool found, Step(s, "get volume"));
    if (!found) return meta_store_errors::VolumeNotFound(id);
    return ReadVolume(s);
  }

  absl::StatusOr<uint64_t> HeadSeqLocked(std::string_view volume_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    StmtUse s(stmts_[kHeadSeq]);
    s.Text(1, volume_id);
    CAIRN_ASSIGN_OR_RETURN(bool found, Step(s, "get head"));
    if (!found) return meta_store_errors::VolumeNotFound(volume_id);
    return s.ColU64(0);
  }

  absl::StatusOr<std::optional<uint64_t>> FindKeyLocked(std::string_view volume_id,
                                                        std::string_view key,
                                                        Digest* changes_digest = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    StmtUse s(stmts_[kFindKey]);
    s.Text(1, volume_id);
    s.Text(2, key);
    CAIRN_ASSIGN_OR_RETURN(bool found, Step(s, "find commit key"));
    if (!found) return std::optional<uint64_t>();
    if (changes_digest != nullptr) {
      absl::StatusOr<Digest> d = Digest::FromRaw(s.ColBlob(1));
      if (!d.ok()) {
        return absl::DataLossError(absl::StrCat("commit key ", Sv(key), " of volume ",
                                                Sv(volume_id), " has a malformed digest"));
      }
      *changes_digest = *d;
    }
    return std::optional<uint64_t>(s.ColU64(0));
  }

  absl::StatusOr<SnapshotRecord> GetSnapshotLocked(std::string_view volume_id, uint64_t seq)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    StmtUse s(stmts_[kSnapshot]);
    s.Text(1, volume_id);
    s.U64(2, seq);
    CAIRN_ASSIGN_OR_RETURN(bool found, Step(s, "get snapshot"));
    if (!found) {
      return absl::NotFoundError(
          absl::StrCat("snapshot ", seq, " of volume ", Sv(volume_id), " not found"));
    }
    return ReadSnapshot(s);
  }

  absl::Status InsertSnapshot(const SnapshotRecord& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    StmtUse s(stmts_[kInsertSnapshot]);
    s.Text(1, r.volume_id);
    s.U64(2, r.seq);
    s.Blob(3, r.root.raw());
    s.U64(4, r.parent_seq);
    s.Int(5, r.created_at_ns);
    s.U64(6, r.inodes);
    s.U64(7, r.bytes);
    absl::Status st = Exec(s, "insert snapshot");
    if (absl::IsAlreadyExists(st)) {
      // A row with this seq but a head below it cannot come from this code;
      // report it as the lost race it most resembles.
      return absl::AbortedError(absl::StrCat("snapshot ", r.seq, " of volume ", r.volume_id,
                                             " already exists: ", st.message()));
    }
    return st;
  }

  absl::Status CheckHealth() override {
    absl::MutexLock lock(&mu_);
    struct stat st;
    if (::stat(path_.c_str(), &st) != 0) {
      return absl::UnavailableError(absl::StrCat("metadata database ", path_.string(),
                                                 " is gone: ", std::strerror(errno)));
    }
    if (ino_ == 0) {  // not on disk yet when opened (a VFS that defers writes)
      dev_ = st.st_dev;
      ino_ = st.st_ino;
    }
    if (st.st_dev != dev_ || st.st_ino != ino_) {
      return absl::UnavailableError(absl::StrCat(
          "metadata database ", path_.string(), " was replaced under the running server"));
    }
    // A read through SQLite (the schema version: no table scan).
    absl::StatusOr<std::string> version = QueryText("PRAGMA schema_version");
    if (!version.ok()) {
      return absl::UnavailableError(
          absl::StrCat("metadata database ", path_.string(), ": ", version.status().message()));
    }
    return absl::OkStatus();
  }

  absl::Mutex mu_;
  std::filesystem::path path_ ABSL_GUARDED_BY(mu_);
  dev_t dev_ ABSL_GUARDED_BY(mu_) = 0;  // the file opened, to notice it was removed
  ino_t ino_ ABSL_GUARDED_BY(mu_) = 0;
  sqlite3* db_ ABSL_GUARDED_BY(mu_) = nullptr;
  sqlite3_stmt* stmts_[kNumStmts] ABSL_GUARDED_BY(mu_) = {};
};

}  // namespace

absl::StatusOr<std::unique_ptr<MetaStore>> OpenSqliteMetaStore(
    const std::filesystem::path& db_path, const SqliteOptions& options) {
  return SqliteMetaStore::Open(db_path, options);
}

}  // namespace cairn
