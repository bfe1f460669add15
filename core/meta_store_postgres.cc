// PostgresMetaStore: volumes, snapshots and heads in a PostgreSQL database,
// shared by several control-plane replicas (D37).
//
// Concurrency: a pool of connections (libpq connections are not safe for
// concurrent use), each call takes one for its transaction. The head CAS
// reads the head row FOR UPDATE inside a READ COMMITTED transaction: two
// committers on any replicas queue on that row lock, and the second sees
// the first's head once it commits, so exactly one wins each seq.
// Names are unique per namespace by a UNIQUE constraint (a racing create
// fails with a unique violation: AlreadyExists).
//
// Errors (PgStatus, the one edge from libpq to Status): serialization
// failures and deadlocks are Aborted (redo the read-modify-write); a lost
// connection, a server shutting down or starting, a statement timeout are
// Unavailable (retry the call); a unique violation is AlreadyExists.
//
// Durability is the server's: a COMMIT that returned is on the server's
// WAL (synchronous_commit, the default). A connection lost during COMMIT
// leaves the outcome unknown; the caller's retry with its idempotency key
// (D10) resolves it.
#include <libpq-fe.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "core/log.h"
#include "core/meta_store.h"
#include "core/meta_store_errors.h"
#include "core/status.h"

namespace cairn {

bool IsPostgresUrl(std::string_view url) {
  return absl::StartsWith(absl::string_view(url.data(), url.size()), "postgres://") ||
         absl::StartsWith(absl::string_view(url.data(), url.size()), "postgresql://");
}

namespace {

absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Advisory lock keys (any 64-bit values unique to Cairn in the database).
constexpr int64_t kMigrateLockKey = 0x636169726e6d6967;  // "cairnmig"
constexpr int64_t kGcLockKey = 0x636169726e5f6763;       // "cairn_gc"

// Schema migrations, applied in order; a database records the last one it
// has in cairn_schema. Append new ones, never edit a released one.
struct Migration {
  int version;
  const char* sql;
};
// COLLATE "C": names and IDs compare and sort byte-wise, as in SQLite,
// whatever the database's locale.
constexpr Migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE volumes (
  id              TEXT COLLATE "C" PRIMARY KEY,
  ns              TEXT COLLATE "C" NOT NULL,
  name            TEXT COLLATE "C" NOT NULL,
  version         BIGINT NOT NULL,
  created_at_ns   BIGINT NOT NULL,
  wrapped_key     BYTEA NOT NULL,
  max_inodes      BIGINT NOT NULL,
  max_dir_entries BIGINT NOT NULL,
  max_file_size   BIGINT NOT NULL,
  hard_links      BOOLEAN NOT NULL,
  UNIQUE (ns, name)
);
CREATE INDEX volumes_by_age ON volumes (created_at_ns DESC, id);
CREATE TABLE snapshots (
  volume_id     TEXT COLLATE "C" NOT NULL REFERENCES volumes(id),
  seq           BIGINT NOT NULL,
  root          BYTEA NOT NULL,
  parent_seq    BIGINT NOT NULL,
  created_at_ns BIGINT NOT NULL,
  inodes        BIGINT NOT NULL,
  bytes         BIGINT NOT NULL,
  PRIMARY KEY (volume_id, seq)
);
CREATE TABLE heads (
  volume_id TEXT COLLATE "C" PRIMARY KEY REFERENCES volumes(id),
  seq       BIGINT NOT NULL,
  FOREIGN KEY (volume_id, seq) REFERENCES snapshots(volume_id, seq)
);
CREATE TABLE commit_keys (
  volume_id     TEXT COLLATE "C" NOT NULL REFERENCES volumes(id),
  key           TEXT COLLATE "C" NOT NULL,
  seq           BIGINT NOT NULL,
  created_at_ns BIGINT NOT NULL,
  changes       BYTEA NOT NULL,
  PRIMARY KEY (volume_id, key),
  FOREIGN KEY (volume_id, seq) REFERENCES snapshots(volume_id, seq)
);
CREATE INDEX commit_keys_by_seq ON commit_keys (volume_id, seq);
CREATE INDEX commit_keys_by_age ON commit_keys (volume_id, created_at_ns);
)sql"},
    // Ephemeral volumes (D34): a row per volume that lives only while its
    // holders renew the lease. No row: an ordinary volume.
    {2, R"sql(
CREATE TABLE leases (
  volume_id     TEXT COLLATE "C" PRIMARY KEY REFERENCES volumes(id),
  expires_at_ns BIGINT NOT NULL
);
CREATE INDEX leases_by_expiry ON leases (expires_at_ns);
)sql"},
};
constexpr int kSchemaVersion = 2;

constexpr char kVolumeColumns[] =
    "id, ns, name, version, created_at_ns, wrapped_key, max_inodes, max_dir_entries, "
    "max_file_size, hard_links";
// What reads of a volume select: its columns and its lease's expiry (0 for
// an ordinary volume); ReadVolume's column order.
constexpr char kVolumeSelect[] =
    "SELECT id, ns, name, version, created_at_ns, wrapped_key, max_inodes, max_dir_entries, "
    "max_file_size, hard_links, COALESCE((SELECT l.expires_at_ns FROM leases l "
    "WHERE l.volume_id = volumes.id), 0) FROM volumes";
constexpr char kSnapshotColumns[] =
    "volume_id, seq, root, parent_seq, created_at_ns, inodes, bytes";

struct ResultFree {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultFree>;
struct ConnFree {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using Conn = std::unique_ptr<PGconn, ConnFree>;

// The one edge from libpq to Status. Codes by how the caller retries.
absl::Status PgStatus(PGconn* conn, const PGresult* res, std::string_view what) {
  std::string detail = res != nullptr ? PQresultErrorMessage(res) : "";
  if (detail.empty() && conn != nullptr) detail = PQerrorMessage(conn);
  while (!detail.empty() && (detail.back() == '\n' || detail.back() == ' ')) detail.pop_back();
  std::string message = absl::StrCat("postgres ", Sv(what), ": ", detail);
  if (conn == nullptr || PQstatus(conn) == CONNECTION_BAD) {
    return absl::UnavailableError(absl::StrCat(message, " (connection lost)"));
  }
  const char* state = res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  std::string code = state != nullptr ? state : "";
  if (code.empty()) return absl::UnavailableError(message);  // no answer from the server
  absl::StrAppend(&message, " [SQLSTATE ", code, "]");
  if (code == "40001" || code == "40P01") return absl::AbortedError(message);
  if (code == "23505") return absl::AlreadyExistsError(message);
  if (code == "57014") return absl::UnavailableError(message);  // statement timeout, cancel
  if (code == "53300") return absl::UnavailableError(message);  // too many connections
  if (absl::StartsWith(code, "53")) return absl::ResourceExhaustedError(message);  // disk full
  // Connection exceptions, admin shutdown, starting up, read-only
  // (a standby), lock not available.
  if (absl::StartsWith(code, "08") || absl::StartsWith(code, "57P") || code == "25006" ||
      code == "55P03") {
    return absl::UnavailableError(message);
  }
  if (absl::StartsWith(code, "22")) return absl::InvalidArgumentError(message);
  if (absl::StartsWith(code, "28") || code == "3D000" || code == "42501") {
    return absl::FailedPreconditionError(message);  // auth, no database, no privilege
  }
  return absl::InternalError(message);
}

// Statement parameters: strings and bytes in binary form (exact bytes,
// no escaping), integers as text.
class Params {
 public:
  Params& Str(std::string_view v) {
    values_.emplace_back(v);
    formats_.push_back(1);
    return *this;
  }
  Params& Int(int64_t v) {
    values_.push_back(std::to_string(v));
    formats_.push_back(0);
    return *this;
  }
  Params& U64(uint64_t v) { return Int(static_cast<int64_t>(v)); }
  Params& Bool(bool v) {
    values_.emplace_back(v ? "true" : "false");
    formats_.push_back(0);
    return *this;
  }

  Result Exec(PGconn* conn, const char* sql) const {
    std::vector<const char*> ptrs;
    std::vector<int> lengths;
    for (const std::string& v : values_) {
      ptrs.push_back(v.data());
      lengths.push_back(static_cast<int>(v.size()));
    }
    // Results in binary form too: exact bytes, integers big-endian.
    return Result(PQexecParams(conn, sql, static_cast<int>(values_.size()), nullptr, ptrs.data(),
                               lengths.data(), formats_.data(), 1));
  }

 private:
  std::vector<std::string> values_;
  std::vector<int> formats_;
};

// Binary result columns.
std::string ColBytes(const PGresult* r, int row, int col) {
  return std::string(PQgetvalue(r, row, col), static_cast<size_t>(PQgetlength(r, row, col)));
}
int64_t ColInt(const PGresult* r, int row, int col) {
  const auto* p = reinterpret_cast<const unsigned char*>(PQgetvalue(r, row, col));
  const int n = PQgetlength(r, row, col);
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
  if (n == 4) return static_cast<int32_t>(static_cast<uint32_t>(v));
  return static_cast<int64_t>(v);
}
uint64_t ColU64(const PGresult* r, int row, int col) {
  return static_cast<uint64_t>(ColInt(r, row, col));
}
bool ColBool(const PGresult* r, int row, int col) {
  return PQgetlength(r, row, col) == 1 && PQgetvalue(r, row, col)[0] != 0;
}

VolumeRecord ReadVolume(const PGresult* r, int row) {
  VolumeRecord v;
  v.id = ColBytes(r, row, 0);
  v.ns = ColBytes(r, row, 1);
  v.name = ColBytes(r, row, 2);
  v.version = static_cast<int>(ColInt(r, row, 3));
  v.created_at_ns = ColInt(r, row, 4);
  v.wrapped_key = ColBytes(r, row, 5);
  v.limits.max_inodes = ColU64(r, row, 6);
  v.limits.max_dir_entries = static_cast<uint32_t>(ColU64(r, row, 7));
  v.limits.max_file_size = ColU64(r, row, 8);
  v.limits.hard_links = ColBool(r, row, 9);
  v.lease_expires_ns = ColInt(r, row, 10);
  return v;
}

absl::StatusOr<SnapshotRecord> ReadSnapshot(const PGresult* r, int row) {
  SnapshotRecord s;
  s.volume_id = ColBytes(r, row, 0);
  s.seq = ColU64(r, row, 1);
  absl::StatusOr<Digest> root = Digest::FromRaw(ColBytes(r, row, 2));
  if (!root.ok()) {
    return absl::DataLossError(absl::StrCat("snapshot ", s.volume_id, "@", s.seq,
                                            " has a malformed root: ", root.status().message()));
  }
  s.root = *root;
  s.parent_seq = ColU64(r, row, 3);
  s.created_at_ns = ColInt(r, row, 4);
  s.inodes = ColU64(r, row, 5);
  s.bytes = ColU64(r, row, 6);
  return s;
}

// Connections to one server, at most `max` open; Get waits for one.
// Thread-safe.
class Pool {
 public:
  Pool(std::string url, int max, int statement_timeout_ms, int connect_timeout_s)
      : url_(std::move(url)),
        max_(max),
        statement_timeout_ms_(statement_timeout_ms),
        connect_timeout_s_(connect_timeout_s) {}

  // A connection lent to one caller; back to the pool when destroyed,
  // or closed if it broke.
  class Lease {
   public:
    Lease(Pool* pool, Conn conn, bool reused)
        : pool_(pool), conn_(std::move(conn)), reused_(reused) {}
    Lease(Lease&& o) noexcept
        : pool_(o.pool_), conn_(std::move(o.conn_)), reused_(o.reused_) {}
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (conn_ != nullptr) pool_->Return(std::move(conn_));
    }
    PGconn* get() const { return conn_.get(); }
    // Whether it sat idle in the pool (and may have gone stale since).
    bool reused() const { return reused_; }

   private:
    Pool* pool_;
    Conn conn_;
    bool reused_;
  };

  absl::StatusOr<Lease> Get() {
    {
      absl::MutexLock lock(&mu_);
      auto usable = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !idle_.empty() || open_ < max_;
      };
      mu_.Await(absl::Condition(&usable));
      if (!idle_.empty()) {
        Conn c = std::move(idle_.back());
        idle_.pop_back();
        return Lease(this, std::move(c), true);
      }
      ++open_;
    }
    absl::StatusOr<Conn> fresh = Connect();
    if (!fresh.ok()) {
      absl::MutexLock lock(&mu_);
      --open_;
      return fresh.status();
    }
    return Lease(this, *std::move(fresh), false);
  }

  // A connection failed: those idle beside it most likely share its fate
  // (the server restarted), so they go too and the next calls connect anew.
  void DropIdle() {
    std::vector<Conn> stale;
    {
      absl::MutexLock lock(&mu_);
      stale.swap(idle_);
      open_ -= static_cast<int>(stale.size());
    }
  }

  ~Pool() { DropIdle(); }

 private:
  void Return(Conn c) {
    // A connection that broke, or was left inside a transaction, is closed.
    const bool healthy =
        PQstatus(c.get()) == CONNECTION_OK && PQtransactionStatus(c.get()) == PQTRANS_IDLE;
    if (!healthy) DropIdle();
    absl::MutexLock lock(&mu_);
    if (healthy) {
      idle_.push_back(std::move(c));
    } else {
      --open_;
      c.reset();
    }
  }

  absl::StatusOr<Conn> Connect() {
    const std::string timeout = std::to_string(connect_timeout_s_);
    // Earlier keywords are defaults the URL may override (expand_dbname).
    const char* keys[] = {"connect_timeout",   "application_name", "keepalives",
                          "keepalives_idle",   "keepalives_interval", "keepalives_count",
                          "dbname",            nullptr};
    const char* values[] = {timeout.c_str(), "cairn", "1", "30", "10", "3", url_.c_str(), nullptr};
    Conn c(PQconnectdbParams(keys, values, 1));
    if (c == nullptr || PQstatus(c.get()) != CONNECTION_OK) {
      std::string why = c != nullptr ? PQerrorMessage(c.get()) : "out of memory";
      while (!why.empty() && why.back() == '\n') why.pop_back();
      return absl::UnavailableError(absl::StrCat("cannot connect to PostgreSQL: ", why));
    }
    // Server notices ("relation already exists, skipping") are not errors;
    // libpq would print them to stderr.
    PQsetNoticeProcessor(c.get(), [](void*, const char*) {}, nullptr);
    const std::string setup = absl::StrCat(
        "SET statement_timeout = ", statement_timeout_ms_,
        "; SET idle_in_transaction_session_timeout = 60000; SET TIME ZONE 'UTC'");
    Result r(PQexec(c.get(), setup.c_str()));
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
      return PgStatus(c.get(), r.get(), "configure the session");
    }
    return c;
  }

  const std::string url_;
  const int max_;
  const int statement_timeout_ms_;
  const int connect_timeout_s_;
  absl::Mutex mu_;
  std::vector<Conn> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;  // idle and lent
};

// Runs `sql` on a connection from `pool`; a pooled connection that turns
// out to be dead (the server restarted since it was last used) is replaced
// by a fresh one once, which is safe because the statement never reached a
// server that could have run it.
absl::StatusOr<std::pair<Pool::Lease, Result>> ExecFirst(Pool& pool, const char* sql,
                                                         const Params& params,
                                                         std::string_view what) {
  for (int attempt = 0;; ++attempt) {
    CAIRN_ASSIGN_OR_RETURN(Pool::Lease conn, pool.Get());
    Result r = params.Exec(conn.get(), sql);
    const ExecStatusType st = PQresultStatus(r.get());
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
      return std::make_pair(std::move(conn), std::move(r));
    }
    if (attempt == 0 && conn.reused() && PQstatus(conn.get()) == CONNECTION_BAD) {
      pool.DropIdle();
      continue;
    }
    return PgStatus(conn.get(), r.get(), what);
  }
}

// One transaction on one pooled connection; rolled back on scope exit
// unless Commit() ran.
class Txn {
 public:
  static absl::StatusOr<Txn> Begin(Pool& pool, const char* begin = "BEGIN") {
    CAIRN_ASSIGN_OR_RETURN(auto started, ExecFirst(pool, begin, Params(), "begin transaction"));
    return Txn(std::move(started.first));
  }
  Txn(Txn&& o) noexcept : conn_(std::move(o.conn_)), done_(o.done_) { o.done_ = true; }
  Txn& operator=(Txn&&) = delete;
  ~Txn() {
    if (!done_ && PQstatus(conn_.get()) == CONNECTION_OK) {
      Result r(PQexec(conn_.get(), "ROLLBACK"));
    }
  }

  // Rows of a statement expected to return them (or none).
  absl::StatusOr<Result> Query(const char* sql, const Params& params, std::string_view what) {
    Result r = params.Exec(conn_.get(), sql);
    const ExecStatusType st = PQresultStatus(r.get());
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
      return PgStatus(conn_.get(), r.get(), what);
    }
    return r;
  }
  absl::Status Exec(const char* sql, const Params& params, std::string_view what) {
    return Query(sql, params, what).status();
  }
  // Several statements without parameters (the simple query protocol).
  absl::Status ExecScript(const char* sql, std::string_view what) {
    Result r(PQexec(conn_.get(), sql));
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) return PgStatus(conn_.get(), r.get(), what);
    return absl::OkStatus();
  }

  absl::Status Commit() {
    Result r(PQexec(conn_.get(), "COMMIT"));
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
      return PgStatus(conn_.get(), r.get(), "commit");
    }
    done_ = true;
    return absl::OkStatus();
  }

 private:
  explicit Txn(Pool::Lease conn) : conn_(std::move(conn)) {}
  Pool::Lease conn_;
  bool done_ = false;
};

// D5 across processes: a session advisory lock on a connection of its own.
class PostgresGcLock : public MetaStore::GcLock {
 public:
  PostgresGcLock(Pool::Lease conn, bool shared) : conn_(std::move(conn)), shared_(shared) {}
  ~PostgresGcLock() override {
    Result r(Params().Int(kGcLockKey).Exec(
        conn_.get(), shared_ ? "SELECT pg_advisory_unlock_shared($1)"
                             : "SELECT pg_advisory_unlock($1)"));
    // If the connection broke, the server has released the lock with it.
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
      CAIRN_LOG_WARNING("releasing the GC lock: %s",
                        PgStatus(conn_.get(), r.get(), "unlock").ToString());
    }
  }

 private:
  Pool::Lease conn_;
  const bool shared_;
};

class PostgresMetaStore : public MetaStore {
 public:
  static absl::StatusOr<std::unique_ptr<MetaStore>> Open(const std::string& url,
                                                         const PostgresOptions& options) {
    if (!IsPostgresUrl(url) && url.find('=') == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "metadata store URL must start with postgres:// or postgresql://, got '",
          RedactUrl(url), "'"));
    }
    char* err = nullptr;
    PQconninfoOption* parsed = PQconninfoParse(url.c_str(), &err);
    if (parsed == nullptr) {
      std::string why = err != nullptr ? err : "out of memory";
      PQfreemem(err);
      while (!why.empty() && why.back() == '\n') why.pop_back();
      return absl::InvalidArgumentError(
          absl::StrCat("bad PostgreSQL URL '", RedactUrl(url), "': ", why));
    }
    PQconninfoFree(parsed);
    if (options.max_connections < 1) {
      return absl::InvalidArgumentError("PostgreSQL pool needs at least one connection");
    }
    auto store = std::unique_ptr<PostgresMetaStore>(new PostgresMetaStore(url, options));
    CAIRN_RETURN_IF_ERROR(store->Migrate());
    return std::unique_ptr<MetaStore>(std::move(store));
  }

  absl::Status CreateVolume(const VolumeRecord& volume, const SnapshotRecord& initial) override {
    if (initial.volume_id != volume.id) {
      return absl::InvalidArgumentError(absl::StrCat("initial snapshot belongs to ",
                                                     initial.volume_id, ", not ", volume.id));
    }
    CAIRN_ASSIGN_OR_RETURN(Txn txn, Txn::Begin(pool_));
    // Checked first for a clear message; the constraints back it (a racing
    // create fails its INSERT with a unique violation).
    {
      CAIRN_ASSIGN_OR_RETURN(
          Result r, txn.Query("SELECT 1 FROM volumes WHERE ns = $1 AND name = $2",
                              Params().Str(volume.ns).Str(volume.name), "look up volume"));
      if (PQntuples(r.get()) > 0) {
        return absl::AlreadyExistsError(
            absl::StrCat("volume ", volume.ns, "/", volume.name, " already exists"));
      }
    }
    {
      CAIRN_ASSIGN_OR_RETURN(Result r, txn.Query("SELECT 1 FROM volumes WHERE id = $1",
                                                 Params().Str(volume.id), "look up volume"));
      if (PQntuples(r.get()) > 0) {
        return absl::AlreadyExistsError(absl::StrCat("volume ID ", volume.id, " already exists"));
      }
    }
    const std::string insert = absl::StrCat("INSERT INTO volumes (", kVolumeColumns,
                                            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)");
    CAIRN_RETURN_IF_ERROR(txn.Exec(insert.c_str(),
                                   Params()
                                       .Str(volume.id)
                                       .Str(volume.ns)
                                       .Str(volume.name)
                                       .Int(volume.version)
                                       .Int(volume.created_at_ns)
                                       .Str(volume.wrapped_key)
                                       .U64(volume.limits.max_inodes)
                                       .U64(volume.limits.max_dir_entries)
                                       .U64(volume.limits.max_file_size)
                                       .Bool(volume.limits.hard_links),
                                   "insert volume"));
    CAIRN_RETURN_IF_ERROR(InsertSnapshot(txn, initial));
    CAIRN_RETURN_IF_ERROR(txn.Exec("INSERT INTO heads (volume_id, seq) VALUES ($1, $2)",
                                   Params().Str(volume.id).U64(initial.seq), "insert head"));
    if (volume.lease_expires_ns != 0) {
      CAIRN_RETURN_IF_ERROR(
          txn.Exec("INSERT INTO leases (volume_id, expires_at_ns) VALUES ($1, $2)",
                   Params().Str(volume.id).Int(volume.lease_expires_ns), "insert lease"));
    }
    return txn.Commit();
  }

  absl::StatusOr<VolumeRecord> GetVolumeByName(std::string_view ns,
                                               std::string_view name) override {
    const std::string sql =
        absl::StrCat(kVolumeSelect, " WHERE ns = $1 AND name = $2");
    CAIRN_ASSIGN_OR_RETURN(auto done,
                           ExecFirst(pool_, sql.c_str(), Params().Str(ns).Str(name), "get volume"));
    if (PQntuples(done.second.get()) == 0) {
      return absl::NotFoundError(absl::StrCat("volume ", Sv(ns), "/", Sv(name), " not found"));
    }
    return ReadVolume(done.second.get(), 0);
  }

  absl::StatusOr<VolumeRecord> GetVolumeById(std::string_view id) override {
    const std::string sql = absl::StrCat(kVolumeSelect, " WHERE id = $1");
    CAIRN_ASSIGN_OR_RETURN(auto done, ExecFirst(pool_, sql.c_str(), Params().Str(id), "get volume"));
    if (PQntuples(done.second.get()) == 0) return meta_store_errors::VolumeNotFound(id);
    return ReadVolume(done.second.get(), 0);
  }

  absl::StatusOr<std::vector<VolumeRecord>> ListVolumes(std::string_view ns) override {
    const std::string sql =
        absl::StrCat(kVolumeSelect,
                     ns.empty() ? "" : " WHERE ns = $1", " ORDER BY created_at_ns DESC, id ASC");
    Params params;
    if (!ns.empty()) params.Str(ns);
    CAIRN_ASSIGN_OR_RETURN(auto done, ExecFirst(pool_, sql.c_str(), params, "list volumes"));
    std::vector<VolumeRecord> out;
    for (int i = 0; i < PQntuples(done.second.get()); ++i) {
      out.push_back(ReadVolume(done.second.get(), i));
    }
    return out;
  }

  absl::Status RenameVolume(std::string_view id, std::string_view new_name) override {
    CAIRN_ASSIGN_OR_RETURN(Txn txn, Txn::Begin(pool_));
    CAIRN_ASSIGN_OR_RETURN(Result r, txn.Query("SELECT ns, name FROM volumes WHERE id = $1 "
                                               "FOR NO KEY UPDATE",
                                               Params().Str(id), "get volume"));
    if (PQntuples(r.get()) == 0) return meta_store_errors::VolumeNotFound(id);
    const std::string ns = ColBytes(r.get(), 0, 0);
    if (ColBytes(r.get(), 0, 1) == new_name) return txn.Commit();
    absl::Status renamed = txn.Exec("UPDATE volumes SET name = $1 WHERE id = $2",
                                    Params().Str(new_name).Str(id), "rename volume");
    if (absl::IsAlreadyExists(renamed)) {
      return absl::AlreadyExistsError(
          absl::StrCat("volume ", ns, "/", Sv(new_name), " already exists"));
    }
    CAIRN_RETURN_IF_ERROR(renamed);
    return txn.Commit();
  }

  absl::Status DeleteVolume(std::string_view id) override {
    CAIRN_ASSIGN_OR_RETURN(Txn txn, Txn::Begin(pool_));
    // The head row first, as a commit does, so a delete racing a commit
    // waits for it instead of deadlocking on the volume row.
    CAIRN_ASSIGN_OR_RETURN(Result r, txn.Query("SELECT 1 FROM heads WHERE volume_id = $1 FOR UPDATE",
                                               Params().Str(id), "lock head"));
    if (PQntuples(r.get()) == 0) return meta_store_errors::VolumeNotFound(id);
    for (const char* sql : {"DELETE FROM commit_keys WHERE volume_id = $1",
                            "DELETE FROM leases WHERE volume_id = $1",
                            "DELETE FROM heads WHERE volume_id = $1",
                            "DELETE FROM snapshots WHERE volume_id = $1",
                            "DELETE FROM volumes WHERE id = $1"}) {
      CAIRN_RETURN_IF_ERROR(txn.Exec(sql, Params().Str(id), "delete volume"));
    }
    CAIRN_RETURN_IF_ERROR(txn.Commit());
    // C8 (D39): the row, and with it the wrapped key, is gone from every
    // query now. Vacuuming the small volumes table removes the dead tuple
    // from the live heap at once rather than at autovacuum's leisure; the
    // delete has happened either way, so a failure only warns.
    absl::StatusOr<std::pair<Pool::Lease, Result>> vacuumed =
        ExecFirst(pool_, "VACUUM volumes", Params(), "vacuum volumes");
    if (!vacuumed.ok()) {
      CAIRN_LOG_WARNING("volume %s deleted, but vacuuming the volumes table failed (%s)",
                        std::string(id), vacuumed.status().ToString());
    }
    return absl::OkStatus();
  }

  absl::StatusOr<SnapshotRecord> GetHead(std::string_view volume_id) override {
    // One statement: the head seq and its row are consistent.
    CAIRN_ASSIGN_OR_RETURN(
        auto done,
        ExecFirst(pool_,
                  "SELECT s.volume_id, s.seq, s.root, s.parent_seq, s.created_at_ns, s.inodes, "
                  "s.bytes FROM heads h JOIN snapshots s ON s.volume_id = h.volume_id AND "
                  "s.seq = h.seq WHERE h.volume_id = $1",
                  Params().Str(volume_id), "get head"));
    if (PQntuples(done.second.get()) == 0) return meta_store_errors::VolumeNotFound(volume_id);
    return ReadSnapshot(done.second.get(), 0);
  }

  absl::StatusOr<SnapshotRecord> GetSnapshot(std::string_view volume_id, uint64_t seq) override {
    // One statement: the volume's existence (NotFound for it) and the row.
    const std::string sql = absl::StrCat(
        "SELECT ", kSnapshotColumns, ", EXISTS (SELECT 1 FROM heads WHERE volume_id = $1) "
        "FROM (SELECT 1) one LEFT JOIN snapshots ON volume_id = $1 AND seq = $2");
    CAIRN_ASSIGN_OR_RETURN(
        auto done,
        ExecFirst(pool_, sql.c_str(), Params().Str(volume_id).U64(seq), "get snapshot"));
    const PGresult* r = done.second.get();
    if (!ColBool(r, 0, 7)) return meta_store_errors::VolumeNotFound(volume_id);
    if (PQgetisnull(r, 0, 0)) {
      return absl::NotFoundError(
          absl::StrCat("snapshot ", seq, " of volume ", Sv(volume_id), " not found"));
    }
    return ReadSnapshot(r, 0);
  }

  absl::StatusOr<std::vector<SnapshotRecord>> ListSnapshots(std::string_view volume_id) override {
    CAIRN_ASSIGN_OR_RETURN(Txn txn, Txn::Begin(pool_, "BEGIN ISOLATION LEVEL REPEATABLE READ"));
    CAIRN_RETURN_IF_ERROR(HeadSeq(txn, volume_id, false).status());
    const std::string sql = absl::StrCat("SELECT ", kSnapshotColumns,
                                         " FROM snapshots WHERE volume_id = $1 ORDER BY seq ASC");
    CAIRN_ASSIGN_OR_RETURN(Result r, txn.Query(sql.c_str(), Params().Str(volume_id),
                                               "list snapshots"));
    std::vector<SnapshotRecord> out;
    out.reserve(static_cast<size_t>(PQntuples(r.get())));
    for (int i = 0; i < PQntuples(r.get()); ++i) {
      CAIRN_ASSIGN_OR_RETURN(SnapshotRecord s, ReadSnapshot(r.get(), i));
      out.push_back(std::move(s));
    }
    CAIRN_RETURN_IF_ERROR(txn.Commit());
    return out;
  }

  absl::Status CommitSnapshot(const SnapshotRecord& next, uint64_t expected_head_seq,
                              std::string_view idempotency_key,
                              const Digest& changes_digest) override {
    CAIRN_RETURN_IF_ERROR(meta_store_errors::CheckFollows(next, expected_head_seq));
    CAIRN_ASSIGN_OR_RETURN(Txn txn, Txn::Begin(pool_));
    // FOR UPDATE: the head row stays locked until COMMIT, which makes the
    // read and the update below one compare-and-swap across replicas.
    CAIRN_ASSIGN_OR_RETURN(uint64_t head, HeadSeq(txn, next.volume_id, true));
    if (!idempotency_key.empty()) {
      CAIRN_ASSIGN_OR_RETURN(std::optional<uint64_t> seq,
                             FindKey(txn, next.volume_id, idempotency_key, nullptr));
      if (seq.has_value()) {
        return absl::AlreadyExistsError(
            absl::StrCat("commit key already recorded at snapshot ", *seq));
      }
    }
    if (head != expected_head_seq) {
      return meta_store_errors::HeadMoved(expected_head_seq, head);
    }
    CAIRN_RETURN_IF_ERROR(InsertSnapshot(txn, next));
    CAIRN_RETURN_IF_ERROR(txn.Exec("UPDATE heads SET seq = $1 WHERE volume_id = $2",
                                   Params().U64(next.seq).Str(next.volume_id), "update head"));
    if (!idempotency_key.empty()) {
      CAIRN_RETURN_IF_ERROR(txn.Exec(
          "INSERT INTO commit_keys (volume_id, key, seq, created_at_ns, changes) "
          "VALUES ($1, $2, $3, $4, $5)",
          Params()
              .Str(next.volume_id)
              .Str(idempotency_key)
              .U64(next.seq)
              .Int(next.created_at_ns)
              .Str(changes_digest.raw()),
          "record commit key"));
    }
    CAIRN_RETURN_IF_ERROR(txn.Exec(
        "DELETE FROM commit_keys WHERE volume_id = $1 AND (created_at_ns < $2 OR seq < $3)",
        Params()
            .Str(next.volume_id)
            .Int(next.created_at_ns - kCommitKeyRetentionNs)
            .U64(next.seq > kCommitKeysMaxPerVolume ? next.seq - kCommitKeysMaxPerVolume + 1 : 0),
        "forget old commit keys"));
    return txn.Commit();
  }

  absl::StatusOr<SnapshotRecord> FindCommit(std::string_view volume_id,
                                            std::string_view idempotency_key,
                                            Digest* changes_digest) override {
    CAIRN_ASSIGN_OR_RETURN(Txn txn, Txn::Begin(pool_, "BEGIN ISOLATION LEVEL REPEATABLE READ"));
    CAIRN_RETURN_IF_ERROR(HeadSeq(txn, volume_id, false).status());  // NotFound for the volume
    CAIRN_ASSIGN_OR_RETURN(std::optional<uint64_t> seq,
                           FindKey(txn, volume_id, idempotency_key, changes_digest));
    if (!seq.has_value()) return absl::NotFoundError("commit key not recorded");
    const std::string sql = absl::StrCat("SELECT ", kSnapshotColumns,
                                         " FROM snapshots WHERE volume_id = $1 AND seq = $2");
    CAIRN_ASSIGN_OR_RETURN(Result r, txn.Query(sql.c_str(), Params().Str(volume_id).U64(*seq),
                                               "get snapshot"));
    if (PQntuples(r.get()) == 0) {
      return absl::NotFoundError(
          absl::StrCat("snapshot ", *seq, " of volume ", Sv(volume_id), " not found"));
    }
    CAIRN_ASSIGN_OR_RETURN(SnapshotRecord snap, ReadSnapshot(r.get(), 0));
    CAIRN_RETURN_IF_ERROR(txn.Commit());
    return snap;
  }

  absl::StatusOr<VolumeRecord> RenewLease(std::string_view volume_id, int64_t now_ns,
                                          int64_t expires_at_ns) override {
    CAIRN_ASSIGN_OR_RETURN(Txn txn, Txn::Begin(pool_));
    // One statement moves a live lease forward (never back) and says
    // whether there was one; the row lock orders it against the sweeper's
    // delete, so a lapsed lease is never revived.
    CAIRN_ASSIGN_OR_RETURN(
        Result renewed,
        txn.Query("UPDATE leases SET expires_at_ns = GREATEST(expires_at_ns, $2) "
                  "WHERE volume_id = $1 AND expires_at_ns > $3 RETURNING expires_at_ns",
                  Params().Str(volume_id).Int(expires_at_ns).Int(now_ns), "renew lease"));
    const std::string sql = absl::StrCat(kVolumeSelect, " WHERE id = $1");
    CAIRN_ASSIGN_OR_RETURN(Result r, txn.Query(sql.c_str(), Params().Str(volume_id), "get volume"));
    if (PQntuples(r.get()) == 0) return meta_store_errors::VolumeNotFound(volume_id);
    VolumeRecord volume = ReadVolume(r.get(), 0);
    if (PQntuples(renewed.get()) == 0) {
      if (volume.lease_expires_ns == 0) {
        return absl::FailedPreconditionError(
            absl::StrCat("volume ", volume.name, " (", Sv(volume_id),
                         ") is not ephemeral: it has no lease to renew"));
      }
      return LeaseLapsed(volume);
    }
    CAIRN_RETURN_IF_ERROR(txn.Commit());
    return volume;
  }

  absl::StatusOr<std::vector<std::string>> ListExpiredLeases(int64_t now_ns) override {
    CAIRN_ASSIGN_OR_RETURN(
        auto done, ExecFirst(pool_,
                             "SELECT volume_id FROM leases WHERE expires_at_ns <= $1 "
                             "ORDER BY expires_at_ns",
                             Params().Int(now_ns), "list expired leases"));
    std::vector<std::string> out;
    for (int i = 0; i < PQntuples(done.second.get()); ++i) {
      out.push_back(ColBytes(done.second.get(), i, 0));
    }
    return out;
  }

  absl::Status CheckHealth() override {
    absl::StatusOr<std::pair<Pool::Lease, Result>> done =
        ExecFirst(pool_, "SELECT pg_is_in_recovery()", Params(), "health check");
    if (!done.ok()) {
      return absl::UnavailableError(
          absl::StrCat("metadata database: ", done.status().message()));
    }
    if (ColBool(done->second.get(), 0, 0)) {
      return absl::UnavailableError(
          "metadata database is a read-only standby (in recovery): commits would fail");
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<GcLock>> LockGc(GcLockMode mode) override {
    const bool shared = mode == GcLockMode::kShared;
    CAIRN_ASSIGN_OR_RETURN(
        auto done, ExecFirst(lock_pool_,
                             shared ? "SELECT pg_advisory_lock_shared($1)"
                                    : "SELECT pg_advisory_lock($1)",
                             Params().Int(kGcLockKey), "take the GC lock"));
    return std::unique_ptr<GcLock>(new PostgresGcLock(std::move(done.first), shared));
  }

 private:
  PostgresMetaStore(const std::string& url, const PostgresOptions& options)
      : pool_(url, options.max_connections, options.statement_timeout_ms,
              options.connect_timeout_s),
        // Lock holders wait on each other, never on the statement pool's
        // connections, so a pool of their own cannot starve it (a commit
        // holds its lock while it runs statements).
        lock_pool_(url, kMaxLockConnections, options.gc_lock_timeout_ms,
                   options.connect_timeout_s) {}

  static constexpr int kMaxLockConnections = 64;

  // "postgres://user:secret@host/db" without the secret, for messages.
  static std::string RedactUrl(const std::string& url) {
    const size_t scheme = url.find("://");
    const size_t at = url.find('@');
    if (scheme == std::string::npos || at == std::string::npos || at < scheme) return url;
    const size_t colon = url.find(':', scheme + 3);
    if (colon == std::string::npos || colon > at) return url;
    return absl::StrCat(url.substr(0, colon + 1), "***", url.substr(at));
  }

  // Creates the schema or brings it up to kSchemaVersion, in one
  // transaction under an advisory lock: replicas starting together migrate
  // once, and one that read an older version never writes it back.
  absl::Status Migrate() {
    CAIRN_ASSIGN_OR_RETURN(Txn txn, Txn::Begin(pool_));
    CAIRN_RETURN_IF_ERROR(txn.Exec("SELECT pg_advisory_xact_lock($1)",
                                   Params().Int(kMigrateLockKey), "lock for migration"));
    CAIRN_RETURN_IF_ERROR(txn.Exec(
        "CREATE TABLE IF NOT EXISTS cairn_schema (one BOOLEAN PRIMARY KEY DEFAULT true "
        "CHECK (one), version BIGINT NOT NULL)",
        Params(), "create cairn_schema"));
    CAIRN_ASSIGN_OR_RETURN(Result r, txn.Query("SELECT version FROM cairn_schema", Params(),
                                               "read schema version"));
    const int64_t version = PQntuples(r.get()) == 0 ? 0 : ColInt(r.get(), 0, 0);
    if (version > kSchemaVersion) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the metadata database has schema version ", version,
          "; this version of Cairn reads up to ", kSchemaVersion, " (upgrade Cairn)"));
    }
    if (version == kSchemaVersion) return txn.Commit();
    for (const Migration& m : kMigrations) {
      if (m.version <= version) continue;
      CAIRN_RETURN_IF_ERROR(
          txn.ExecScript(m.sql, absl::StrCat("migrate to schema version ", m.version)));
    }
    CAIRN_RETURN_IF_ERROR(txn.Exec(
        "INSERT INTO cairn_schema (version) VALUES ($1) "
        "ON CONFLICT (one) DO UPDATE SET version = EXCLUDED.version",
        Params().Int(kSchemaVersion), "record schema version"));
    CAIRN_RETURN_IF_ERROR(txn.Commit());
    CAIRN_LOG_INFO("metadata database migrated from schema version %d to %d", version,
                   kSchemaVersion);
    return absl::OkStatus();
  }

  static absl::StatusOr<uint64_t> HeadSeq(Txn& txn, std::string_view volume_id, bool for_update) {
    CAIRN_ASSIGN_OR_RETURN(
        Result r, txn.Query(for_update ? "SELECT seq FROM heads WHERE volume_id = $1 FOR UPDATE"
                                       : "SELECT seq FROM heads WHERE volume_id = $1",
                            Params().Str(volume_id), "get head"));
    if (PQntuples(r.get()) == 0) return meta_store_errors::VolumeNotFound(volume_id);
    return ColU64(r.get(), 0, 0);
  }

  static absl::StatusOr<std::optional<uint64_t>> FindKey(Txn& txn, std::string_view volume_id,
                                                         std::string_view key,
                                                         Digest* changes_digest) {
    CAIRN_ASSIGN_OR_RETURN(
        Result r, txn.Query("SELECT seq, changes FROM commit_keys WHERE volume_id = $1 AND key = $2",
                            Params().Str(volume_id).Str(key), "find commit key"));
    if (PQntuples(r.get()) == 0) return std::optional<uint64_t>();
    if (changes_digest != nullptr) {
      absl::StatusOr<Digest> d = Digest::FromRaw(ColBytes(r.get(), 0, 1));
      if (!d.ok()) {
        return absl::DataLossError(absl::StrCat("commit key ", Sv(key), " of volume ",
                                                Sv(volume_id), " has a malformed digest"));
      }
      *changes_digest = *d;
    }
    return std::optional<uint64_t>(ColU64(r.get(), 0, 0));
  }

  static absl::Status InsertSnapshot(Txn& txn, const SnapshotRecord& s) {
    const std::string sql = absl::StrCat("INSERT INTO snapshots (", kSnapshotColumns,
                                         ") VALUES ($1, $2, $3, $4, $5, $6, $7)");
    absl::Status st = txn.Exec(sql.c_str(),
                               Params()
                                   .Str(s.volume_id)
                                   .U64(s.seq)
                                   .Str(s.root.raw())
                                   .U64(s.parent_seq)
                                   .Int(s.created_at_ns)
                                   .U64(s.inodes)
                                   .U64(s.bytes),
                               "insert snapshot");
    if (absl::IsAlreadyExists(st)) {
      // A row with this seq but a head below it cannot come from this code;
      // report it as the lost race it most resembles.
      return absl::AbortedError(absl::StrCat("snapshot ", s.seq, " of volume ", s.volume_id,
                                             " already exists: ", st.message()));
    }
    return st;
  }

  Pool pool_;
  Pool lock_pool_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MetaStore>> OpenPostgresMetaStore(const std::string& url,
                                                                  const PostgresOptions& options) {
  return PostgresMetaStore::Open(url, options);
}

}  // namespace cairn
