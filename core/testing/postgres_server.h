// A real PostgreSQL server for tests (test-only; linked into every
// cairn_test binary). Start() runs initdb and pg_ctl from the Debian
// `postgresql` package in a fresh temporary directory, as `nobody` when the
// test runs as root (PostgreSQL refuses root), listening only on a unix
// socket in that directory, so parallel test binaries never collide on a
// port. fsync is off: the tests kill processes, never the machine, and the
// page cache survives a killed server.
//
// Tests that need PostgreSQL use CAIRN_REQUIRE_POSTGRES: without the
// binaries they skip, unless CI=true, where they fail (a CI runner without
// PostgreSQL is broken, not a pass).
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/testing/temp_dir.h"

namespace cairn::testing {

class PostgresServer {
 public:
  // NotFound if the PostgreSQL server binaries are not installed;
  // Internal with the server's log if it does not start.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<PostgresServer>> Start();
  // One server for the whole test binary, started on first use and stopped
  // at exit. Forked children must leave with _exit.
  [[nodiscard]] static absl::StatusOr<PostgresServer*> Shared();
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // A new, empty database; returns its URL.
  [[nodiscard]] absl::StatusOr<std::string> NewDatabase();
  // The URL of database `db` (which must exist).
  std::string Url(const std::string& db) const;
  // Runs `sql` (one or more statements) in database `db`.
  [[nodiscard]] absl::Status Exec(const std::string& db, const std::string& sql);

  // Stops the server: `immediate` is a crash (no checkpoint, clients cut
  // off at once), otherwise a fast shutdown (clients disconnected, clean).
  [[nodiscard]] absl::Status Stop(bool immediate);
  // Starts it again on the same data directory and socket.
  [[nodiscard]] absl::Status Restart();

 private:
  PostgresServer() = default;
  absl::Status Run(const std::vector<std::string>& argv);
  absl::Status StartServer();

  TempDir dir_;
  std::filesystem::path bin_;   // initdb, pg_ctl, postgres
  std::filesystem::path home_;  // owned by the server's user: data/, the socket, log
  bool running_ = false;
  int next_db_ = 0;
};

// True when CI=true: a missing PostgreSQL fails the tests instead of skipping.
bool PostgresRequired();

}  // namespace cairn::testing

// In a TEST body or SetUp: `var` becomes the shared server's pointer, or the
// test skips (fails when CI=true) saying why.
#define CAIRN_REQUIRE_POSTGRES(var)                                                      \
  ::cairn::testing::PostgresServer* var = nullptr;                                       \
  do {                                                                                   \
    auto cairn_pg_ = ::cairn::testing::PostgresServer::Shared();                         \
    if (!cairn_pg_.ok()) {                                                               \
      if (::cairn::testing::PostgresRequired()) {                                        \
        FAIL() << "PostgreSQL is required (CI=true): " << cairn_pg_.status();            \
      }                                                                                  \
      GTEST_SKIP() << "no PostgreSQL: " << cairn_pg_.status();                           \
    }                                                                                    \
    var = *cairn_pg_;                                                                    \
  } while (0)
