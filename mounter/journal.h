// Journal: the node-local, crash-safe record of one mount's changes that
// are not committed yet, so that neither a failed final commit nor a
// mounter that dies loses them (docs/mounter.md "Durability").
//
// Layout: one directory per mount, STAGING/<volume id>/<mount id>/, holding
// `journal` (append-only records) and the mount's named staged files
// (mounter/staged_file.h). The live mounter holds an flock on `journal`; a
// directory whose journal nobody locks belongs to a mounter that is gone.
//
// Records: u32 length, 8 bytes of SHA-256 of the payload, payload. A reader
// stops at the first record that is short or fails its checksum (a torn
// tail), so a crash in the middle of an append loses at most that record.
// Payloads:
// - CHANGE (seq, node): one logged change, in log order; `node` ties a PUT
//   to the CONTENT records of the node whose entry it sends.
// - CONTENT (node): the node's metadata and StagedFile state; the newest
//   one for a node wins.
// - DONE (seq): every change up to seq is committed (or can never be).
// - SENT (first, last, key, change set): the changes first..last were sent
//   to the control plane as this change set (entries built) with this
//   idempotency key, before the answer came. It may have been applied, so
//   a recovery resends exactly it with the same key (the control plane
//   answers a repeat with the snapshot it made). A later SENT overlapping
//   it, or a DONE at or past `first`, ends it.
// Appends are write(2) only (a mounter crash keeps them: the page cache
// survives); Sync() makes everything appended so far durable on the node.
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "mounter/staged_file.h"
#include "proto/objects.pb.h"

namespace cairn::mounter {

// What a node's PUT sends: metadata (`entry`: type, mode, mtime, symlink
// target, link id; for a file without staged content, its base entry) and,
// for a staged file, its StagedFile state.
struct JournalContent {
  objects::Entry entry;
  std::optional<StagedFile::State> staged;
};

struct RecoveredChange {
  objects::Change change;
  uint64_t seq = 0;                      // position in the journal's order
  uint64_t node = 0;                     // PUT: the node id it was logged with
  std::optional<JournalContent> content;  // PUT: the newest content of that node
};

// A change set whose commit may have been applied (a live SENT record).
struct RecoveredSent {
  uint64_t first_seq = 0, last_seq = 0;  // the changes it was built from
  std::string key;
  objects::ChangeSet changes;  // as sent
};

struct RecoveredJournal {
  std::filesystem::path dir;
  std::vector<RecoveredChange> changes;  // after the last DONE, in log order
  std::vector<RecoveredSent> sent;       // in seq order, not overlapping
  size_t dropped_puts = 0;               // PUTs whose content was never recorded
};

class Journal {
 public:
  // Creates `dir` and an empty journal in it, locked for this process.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Journal>> Create(
      const std::filesystem::path& dir);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  const std::filesystem::path& dir() const { return dir_; }

  // Record payloads, for Append or Rewrite.
  static std::string ChangeRecord(uint64_t seq, uint64_t node, const objects::Change& change);
  static std::string ContentRecord(uint64_t node, const JournalContent& content);
  static std::string DoneRecord(uint64_t seq);
  static std::string SentRecord(uint64_t first_seq, uint64_t last_seq, std::string_view key,
                                const objects::ChangeSet& changes);

  [[nodiscard]] absl::Status AppendChange(uint64_t seq, uint64_t node,
                                          const objects::Change& change) {
    return Append(ChangeRecord(seq, node, change));
  }
  [[nodiscard]] absl::Status AppendContent(uint64_t node, const JournalContent& content) {
    return Append(ContentRecord(node, content));
  }
  [[nodiscard]] absl::Status AppendDone(uint64_t seq) { return Append(DoneRecord(seq)); }
  [[nodiscard]] absl::Status AppendSent(uint64_t first_seq, uint64_t last_seq,
                                        std::string_view key, const objects::ChangeSet& changes) {
    return Append(SentRecord(first_seq, last_seq, key, changes));
  }
  // Replaces the journal by exactly `records` (written to a new file,
  // synced, renamed over the old one): keeps a long-lived mount's journal
  // as small as what is pending.
  [[nodiscard]] absl::Status Rewrite(const std::vector<std::string>& records);
  // Bytes in the journal file.
  uint64_t size();
  // fdatasync of the journal and fsync of its directory (new staged files).
  [[nodiscard]] absl::Status Sync();
  // Nothing is pending any more: start over with an empty journal.
  [[nodiscard]] absl::Status Reset();
  // Removes the directory on destruction (a clean end with nothing pending).
  void RemoveOnClose() { remove_ = true; }

  // Journals under `volume_dir` (STAGING/<volume id>) that no live mounter
  // holds, read and parsed. Each one stays locked by the caller until
  // Discard(); an empty or fully committed one is discarded at once.
  class Leftover {
   public:
    ~Leftover();
    Leftover(Leftover&& other) noexcept
        : fd_(std::exchange(other.fd_, -1)), journal_(std::move(other.journal_)) {}
    Leftover& operator=(Leftover&&) = delete;
    RecoveredJournal& journal() { return journal_; }
    // Removes the directory (after its changes are journaled elsewhere).
    void Discard();

   private:
    friend class Journal;
    Leftover() = default;
    int fd_ = -1;
    RecoveredJournal journal_;
  };
  [[nodiscard]] static absl::StatusOr<std::vector<Leftover>> FindLeftovers(
      const std::filesystem::path& volume_dir);
  // Parses a journal file (exposed for tests).
  [[nodiscard]] static absl::StatusOr<RecoveredJournal> Read(const std::filesystem::path& dir);

 private:
  Journal(std::filesystem::path dir, int fd) : dir_(std::move(dir)), fd_(fd) {}
  absl::Status Append(std::string payload);

  const std::filesystem::path dir_;
  absl::Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_);
  uint64_t size_ ABSL_GUARDED_BY(mu_) = 0;
  bool failed_ ABSL_GUARDED_BY(mu_) = false;  // a torn append: later ones would be unreadable
  bool remove_ = false;
};

}  // namespace cairn::mounter
