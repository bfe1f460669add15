// StagedFile: a file being written through a mount. Copy-on-write by chunk
// (C7 "random writes rewrite only the changed chunks"): the content lives in
// a named local file in the mount's journal directory (so that a mounter
// that dies leaves it for the next mount to recover, see mounter/journal.h;
// removed when the StagedFile goes) except for chunks still identical to the
// base entry, which are read from the base on demand. A commit stores only the changed chunks and
// references the unchanged ones by address. Small files (up to
// kMemoryMax, with no chunked base) stay in memory and take no descriptor
// until they grow, so writing many small files does not run out of fds.
//
// Invariant: lazy_[i] implies chunk i of the base lies wholly below size_
// and is what the file holds there, and the backing file has a hole there.
//
// Sparse files (docs/decisions.md D28): the holes are the base's in lazy
// chunks and the backing file's own elsewhere (it is a sparse file on the
// node's disk); content still in memory tracks which 4 KiB blocks were
// written. A commit stores them as the entry's holes.
//
// Thread-safe: reads share mu_, writes and truncation hold it exclusively.
// I/O on base chunks may happen under mu_ (it only ever blocks this file).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/files.h"
#include "core/object_store.h"
#include "mounter/chunk_reader.h"
#include "proto/objects.pb.h"

namespace cairn::mounter {

class StagedFile {
 public:
  // `base` is the FILE entry the content starts from (default: empty file).
  // Inline content is copied at once; chunked content stays lazy.
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<StagedFile>> Create(
      const std::filesystem::path& dir, const objects::Entry& base, ChunkReader* reader);
  ~StagedFile();
  StagedFile(const StagedFile&) = delete;
  StagedFile& operator=(const StagedFile&) = delete;

  uint64_t size() const;
  // Bytes [off, off+len) clipped to the size.
  [[nodiscard]] absl::StatusOr<std::string> Read(uint64_t off, uint64_t len) const;
  [[nodiscard]] absl::Status Write(uint64_t off, std::string_view data);
  [[nodiscard]] absl::Status Truncate(uint64_t size);
  // fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE): [off, off+len)
  // reads as zeros and, where it covers whole 4 KiB blocks, is a hole.
  [[nodiscard]] absl::Status PunchHole(uint64_t off, uint64_t len);
  // The holes (stored form, files.h) and lseek SEEK_DATA / SEEK_HOLE.
  std::vector<Extent> Holes() const;
  [[nodiscard]] absl::StatusOr<uint64_t> Seek(uint64_t off, bool data) const;
  // The space a local file system would allocate (st_blocks * 512).
  uint64_t AllocatedBytes() const;
  // What the journal records to recreate this file after a crash: the base
  // entry, size and lazy chunks, and the content itself while it is in
  // memory (`file` empty) or else the backing file's name in the directory.
  struct State {
    objects::Entry base;
    uint64_t size = 0;
    std::vector<bool> lazy;
    std::string memory;
    std::string file;
  };
  State Snapshot() const;
  // Makes the content durable on the node: fdatasync of the backing file
  // (content still in memory is carried by the journal record instead).
  [[nodiscard]] absl::Status Sync() const;
  // A StagedFile from a State a journal recorded (in directory `from`); the
  // backing file is moved into `dir`. NotFound if it is gone.
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<StagedFile>> Restore(
      const std::filesystem::path& dir, const std::filesystem::path& from, State state,
      ChunkReader* reader);

  // The FILE entry of the current content (name empty): unchanged base chunks
  // by address, changed ones sealed and uploaded through `objects` in
  // batches (BlobStore::NewBatch) of kChunksPerBatch, on up to
  // kUploadThreads threads (the caller's included); the entry is returned
  // only once every batch finished (durable). Concurrent writes may or may
  // not be included.
  [[nodiscard]] absl::StatusOr<objects::Entry> Store(ObjectStore& objects, uint32_t mode,
                                                     int64_t mtime_ns) const;

 private:
  StagedFile(std::filesystem::path dir, objects::Entry base, ChunkReader* reader);
  uint64_t BaseLen(size_t i) const;
  absl::Status Materialize(size_t i) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ReadLocked(uint64_t off, uint64_t len, char* out) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  std::vector<Extent> HolesLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Holes of the backing store in [from, to).
  void BackHoles(uint64_t from, uint64_t to, std::vector<Extent>& out) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  static constexpr uint64_t kMemoryMax = 64 << 10;
  // At most kUploadThreads × kChunksPerBatch sealed chunks (128 MiB) are
  // held at once while a commit uploads.
  static constexpr size_t kUploadThreads = 4;
  static constexpr size_t kChunksPerBatch = 8;

  // The backing store: memory while fd_ < 0, else the anonymous file.
  absl::Status BackWrite(const char* data, size_t n, uint64_t off)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status BackTruncate(uint64_t size) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status BackRead(char* dst, size_t n, uint64_t off) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::Status Promote() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::filesystem::path dir_;
  const objects::Entry base_;
  ChunkReader* const reader_;
  mutable absl::Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_) = -1;
  std::string file_ ABSL_GUARDED_BY(mu_);  // name of the backing file in dir_
  std::string memory_ ABSL_GUARDED_BY(mu_);
  // While in memory: which kHoleBlock blocks of memory_ were written (the
  // rest are holes). Content restored from a journal counts as written.
  std::vector<bool> written_ ABSL_GUARDED_BY(mu_);
  uint64_t size_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<bool> lazy_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cairn::mounter
