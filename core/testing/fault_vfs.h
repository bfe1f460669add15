// FaultSqliteVfs: a sqlite3_vfs for crash tests (test-only, in
// cairn_testing) that wraps the default VFS and keeps every write apart
// from the real file until SQLite syncs that file (xSync). Reads see the
// pending writes, so SQLite works as usual; at a simulated power cut (the
// PowerSwitch of fault_env.h) every call fails with SQLITE_IOERR and what
// was not synced is never written: closing the database afterwards drops
// it, exactly what a disk losing power would have lost. Mutating calls
// (xWrite, xTruncate, xSync, xDelete) tick the switch. Shared memory
// (the WAL index) passes through; SQLite rebuilds it from the WAL when the
// database is next opened.
//
// Registers itself under `name` (not as the default VFS) on construction
// and unregisters on destruction; open databases through it with
// SqliteOptions::vfs. Outlive every connection using it. Thread-safe as far
// as SQLite requires of a VFS (one connection uses a file at a time).
#pragma once

#include <memory>
#include <string>

#include "core/testing/fault_env.h"

struct sqlite3_vfs;

namespace cairn::testing {

class FaultSqliteVfs {
 public:
  FaultSqliteVfs(std::string name, PowerSwitch* power);
  ~FaultSqliteVfs();
  FaultSqliteVfs(const FaultSqliteVfs&) = delete;
  FaultSqliteVfs& operator=(const FaultSqliteVfs&) = delete;

  const std::string& name() const { return name_; }

  struct Impl;

 private:
  const std::string name_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cairn::testing
