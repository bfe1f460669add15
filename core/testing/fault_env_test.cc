// The simulated disk itself: what a power cut keeps and drops.
#include "core/testing/fault_env.h"

#include <sqlite3.h>

#include "core/meta_store.h"
#include "core/testing/fault_vfs.h"
#include "core/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace cairn::testing {
namespace {

absl::Status WriteFile(Env& env, const std::string& path, const std::string& data, bool sync) {
  absl::StatusOr<std::unique_ptr<WritableFile>> f = env.NewWritableFile(path, {});
  if (!f.ok()) return f.status();
  absl::Status st = (*f)->Append(data);
  if (st.ok() && sync) st = (*f)->Sync();
  if (st.ok()) st = (*f)->Close();
  return st;
}

TEST(FaultInjectionEnvTest, KeepsOnlySyncedDataAndEntries) {
  FaultInjectionEnv env(nullptr);
  ASSERT_TRUE(env.CreateDir("/d").ok());
  ASSERT_TRUE(env.SyncDir("/").ok());
  ASSERT_TRUE(WriteFile(env, "/d/synced", "kept", true).ok());
  ASSERT_TRUE(WriteFile(env, "/d/unsynced", "lost", false).ok());
  ASSERT_TRUE(env.SyncDir("/d").ok());
  // Created and synced, but its entry never was.
  ASSERT_TRUE(WriteFile(env, "/d/no-entry", "data", true).ok());
  // Renamed after the last sync of its directory.
  ASSERT_TRUE(env.Rename("/d/synced", "/d/renamed").ok());
  // A directory whose entry was not synced takes its content with it.
  ASSERT_TRUE(env.CreateDir("/e").ok());
  ASSERT_TRUE(WriteFile(env, "/e/f", "x", true).ok());
  ASSERT_TRUE(env.SyncDir("/e").ok());

  env.DropUnsynced();
  EXPECT_EQ(env.ReadFile("/d/synced").value(), "kept");
  EXPECT_EQ(env.ReadFile("/d/unsynced").value(), "");
  EXPECT_TRUE(absl::IsNotFound(env.Stat("/d/no-entry").status()));
  EXPECT_TRUE(absl::IsNotFound(env.Stat("/d/renamed").status()));
  EXPECT_TRUE(absl::IsNotFound(env.Stat("/e").status()));
  EXPECT_EQ(env.CountPending().unsynced_dirs, 0);
  EXPECT_EQ(env.CountPending().unsynced_files, 0);
}

TEST(FaultInjectionEnvTest, CutStopsEveryOperation) {
  PowerSwitch power;
  FaultInjectionEnv env(&power);
  power.CutAfter(2);
  ASSERT_TRUE(env.CreateDir("/a").ok());
  ASSERT_TRUE(env.CreateDir("/b").ok());
  EXPECT_TRUE(absl::IsUnavailable(env.CreateDir("/c")));
  EXPECT_TRUE(power.cut());
  EXPECT_TRUE(absl::IsUnavailable(env.Stat("/a").status()));
  power.Restore();
  env.DropUnsynced();
  EXPECT_TRUE(absl::IsNotFound(env.Stat("/a").status()));
}

// A row written with synchronous=OFF is never synced, so the cut drops
// it; with the store's synchronous=FULL an acknowledged write survives.
TEST(FaultSqliteVfsTest, DropsUnsyncedPagesKeepsSyncedOnes) {
  TempDir dir;
  PowerSwitch power;
  FaultSqliteVfs vfs("cairn-fault-test", &power);
  const std::string path = (dir.path() / "t.db").string();
  auto exec = [](sqlite3* db, const char* sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
    std::string message = err ? err : "";
    sqlite3_free(err);
    return rc == SQLITE_OK ? std::string() : message.empty() ? "error" : message;
  };
  auto count = [&](sqlite3* db) {
    sqlite3_stmt* s = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &s, nullptr), SQLITE_OK);
    EXPECT_EQ(sqlite3_step(s), SQLITE_ROW);
    int n = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return n;
  };
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                            vfs.name().c_str()),
            SQLITE_OK);
  ASSERT_EQ(exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                     "CREATE TABLE t (x); INSERT INTO t VALUES (1);"),
            "");
  ASSERT_EQ(exec(db, "PRAGMA synchronous=OFF; INSERT INTO t VALUES (2);"), "");
  EXPECT_EQ(count(db), 2);
  power.CutAfter(1);
  EXPECT_NE(exec(db, "INSERT INTO t VALUES (3); INSERT INTO t VALUES (4);"), "");
  sqlite3_close_v2(db);
  power.Restore();

  ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, vfs.name().c_str()),
            SQLITE_OK);
  EXPECT_EQ(count(db), 1);
  sqlite3_close_v2(db);
}

TEST(FaultSqliteVfsTest, MetaStoreRefusesAnUnknownVfs) {
  TempDir dir;
  auto store = OpenSqliteMetaStore(dir.path() / "m.db", {.vfs = "no-such-vfs"});
  EXPECT_TRUE(absl::IsNotFound(store.status())) << store.status();
}

}  // namespace
}  // namespace cairn::testing
