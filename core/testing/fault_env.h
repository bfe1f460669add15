// Power-cut simulation for crash tests (test-only, in cairn_testing).
//
// PowerSwitch: shared by a FaultInjectionEnv and a FaultSqliteVfs so one
// simulated power cut stops both at the same instant. Arm it with a number
// of mutating operations (writes, syncs, renames, creates, removes, across
// both); the operation that would exceed it, and every operation after it,
// fails with Unavailable "simulated power cut" (SQLITE_IOERR in the VFS), as
// if the machine had stopped there. Thread-safe.
//
// FaultInjectionEnv: an Env (core/env.h) holding a whole filesystem in
// memory with two states per node, what the program sees and what a disk
// would still hold after losing power: a file's data as of its last Sync, a
// directory's entries as of its last SyncDir (leveldb's
// FaultInjectionTestEnv, made exact by keeping the durable tree apart).
// DropUnsynced() turns the durable state into the visible one: unsynced file
// data, and creations, renames and removals whose directory was not synced
// afterwards, are undone; a subdirectory whose entry was not synced vanishes
// with everything below it. Thread-safe; the root "/" always exists.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "core/env.h"

namespace cairn::testing {

class PowerSwitch {
 public:
  // Cuts the power when `ops` more mutating operations have run (the next
  // one fails). ops <= 0 turns the power on with no cut planned.
  void CutAfter(int64_t ops);
  void Restore() { CutAfter(0); }
  bool cut() const { return cut_.load(); }
  // Called by a mutating operation before it acts: false if the power is
  // (now) off.
  [[nodiscard]] bool Tick();
  // Called by any operation: false if the power is off.
  [[nodiscard]] bool On() const { return !cut_.load(); }
  int64_t ticks() const { return ticks_.load(); }

 private:
  std::atomic<int64_t> remaining_{0};  // <= 0: no cut planned
  std::atomic<bool> planned_{false};
  std::atomic<bool> cut_{false};
  std::atomic<int64_t> ticks_{0};
};

class FaultInjectionEnv final : public Env {
 public:
  // `power` is not owned and must outlive the Env; null: never cut.
  explicit FaultInjectionEnv(PowerSwitch* power);
  ~FaultInjectionEnv() override;

  // Everything not durable is lost (see above). Call with no operation in
  // flight (join the workers first).
  void DropUnsynced();

  // Counts of what DropUnsynced would lose, for tests that check the env.
  struct Pending {
    int unsynced_files = 0;  // reachable files whose data is ahead of its sync
    int unsynced_dirs = 0;   // reachable directories whose entries changed since sync
  };
  Pending CountPending();

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::filesystem::path& path,
                                                                WriteOptions options) override;
  absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path) override;
  absl::Status Rename(const std::filesystem::path& from, const std::filesystem::path& to) override;
  absl::Status Link(const std::filesystem::path& from, const std::filesystem::path& to) override;
  absl::Status RemoveFile(const std::filesystem::path& path) override;
  absl::Status CreateDir(const std::filesystem::path& path) override;
  absl::Status SyncDir(const std::filesystem::path& path) override;
  absl::StatusOr<FileInfo> Stat(const std::filesystem::path& path) override;
  absl::Status Touch(const std::filesystem::path& path) override;
  absl::Status ListDir(const std::filesystem::path& dir,
                       const std::function<void(const std::string&)>& fn) override;
  absl::Status RemoveTree(const std::filesystem::path& path) override;

  struct Node;

 private:
  friend class FaultWritableFile;
  absl::Status PowerCheck(bool mutating) const;
  // The directory holding `path` and the last component, or NotFound.
  absl::StatusOr<std::pair<Node*, std::string>> Parent(const std::filesystem::path& path)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::shared_ptr<Node>> Lookup(const std::filesystem::path& path)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  PowerSwitch* const power_;
  absl::Mutex mu_;
  std::shared_ptr<Node> root_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cairn::testing
