// File contents as chunks (DESIGN.md §2): fixed-size chunks, small files
// inline in their directory entry.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/object_store.h"
#include "proto/objects.pb.h"

namespace cairn {

inline constexpr uint64_t kChunkSize = 4 << 20;
// The largest object a client uploads (PutObjects): a full chunk, sealed in
// the smallest blocks a reader accepts (the most tags), so that a server
// takes the chunks of writers using any block size (D31).
// Directory objects are built by the engine at commit, never uploaded.
// Engine::Upload refuses anything bigger (docs/decisions.md).
inline constexpr uint64_t kMaxUploadedObjectBytes = SealedSize(kChunkSize, kSealMinBlockShift);
inline constexpr uint64_t kInlineMax = 4096;

// Reads up to `n` bytes into `buf`; returns 0 at end of input.
using ReadFn = std::function<absl::StatusOr<size_t>(char* buf, size_t n)>;

// Stores a file's content read from `read` and returns its FILE entry (name
// left empty). Files of at most kInlineMax bytes are inline.
[[nodiscard]] absl::StatusOr<objects::Entry> StoreFile(ObjectStore& objects, const ReadFn& read,
                                                       uint32_t mode, int64_t mtime_ns);
[[nodiscard]] absl::StatusOr<objects::Entry> StoreBytes(ObjectStore& objects,
                                                        std::string_view content, uint32_t mode,
                                                        int64_t mtime_ns);

// Bytes [offset, offset + length) of a FILE entry, clipped to its size.
[[nodiscard]] absl::StatusOr<std::string> ReadFileRange(ObjectStore& objects,
                                                        const objects::Entry& file,
                                                        uint64_t offset, uint64_t length);

// ---- Sparse files (objects.proto Entry.holes, docs/decisions.md D28) ----

// Holes are kept at the granularity local file systems allocate in.
inline constexpr uint64_t kHoleBlock = 4096;

struct Extent {
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t end() const { return offset + length; }
  bool operator==(const Extent&) const = default;
};

// A FILE entry's holes, as stored (sorted, apart).
std::vector<Extent> Holes(const objects::Entry& file);
// `holes` (any order, overlapping or touching) in stored form for a file of
// `size` bytes: shrunk inward to kHoleBlock boundaries (an end at or past
// `size` becomes `size` rounded up to kHoleBlock), merged, empty ones
// dropped. Files of at most kInlineMax bytes have none.
std::vector<Extent> NormalizeHoles(std::vector<Extent> holes, uint64_t size);
// Stores normalized holes in `file` (its size already set).
void SetHoles(objects::Entry& file, const std::vector<Extent>& holes);
// Whether [offset, offset + length) lies wholly in `holes` (length > 0).
bool InHole(const std::vector<Extent>& holes, uint64_t offset, uint64_t length);
// Whether chunk `index` of a file of `size` bytes lies wholly in `holes`:
// such a chunk has an empty address and nothing stored.
bool ChunkInHole(const std::vector<Extent>& holes, uint64_t size, uint64_t index);
// The data (what is not in `holes`) within [from, to), in order.
std::vector<Extent> DataRuns(const std::vector<Extent>& holes, uint64_t from, uint64_t to);
// Zeroes the bytes of `content` (file bytes from `at`) that lie in `holes`.
void ZeroHoles(const std::vector<Extent>& holes, uint64_t at, std::string& content);
// The space a local file system would allocate: the kHoleBlock blocks of
// the size (rounded up) that are not holes, in bytes (st_blocks * 512).
uint64_t AllocatedBytes(const std::vector<Extent>& holes, uint64_t size);
// lseek(2) SEEK_DATA / SEEK_HOLE over a file of `size` bytes with `holes`:
// the first data (hole) offset at or after `offset`; the end of the file is
// a hole. OutOfRange with errno ENXIO at or past the end, or when no data
// follows.
[[nodiscard]] absl::StatusOr<uint64_t> SeekData(const std::vector<Extent>& holes, uint64_t size,
                                                uint64_t offset);
[[nodiscard]] absl::StatusOr<uint64_t> SeekHole(const std::vector<Extent>& holes, uint64_t size,
                                                uint64_t offset);
// The holes of the open local file `fd` in [from, to) (not normalized):
// what SEEK_DATA / SEEK_HOLE report. None where the file system cannot
// tell (EINVAL): it is then all data.
[[nodiscard]] absl::StatusOr<std::vector<Extent>> FileHoles(int fd, uint64_t from, uint64_t to);
// A FILE entry's content fields agree: inline content of its size, or one
// chunk address per kChunkSize (empty exactly for chunks wholly in holes)
// and holes in stored form. InvalidArgument naming `path` otherwise.
[[nodiscard]] absl::Status CheckFileLayout(const objects::Entry& file, std::string_view path);
// The chunk addresses a FILE entry stores content under (holes skipped).
// DataLoss for a malformed one.
[[nodiscard]] absl::StatusOr<std::vector<Digest>> StoredChunks(const objects::Entry& file);

// Every chunk (and, for directories, tree) address an entry references
// directly; what a commit must find stored.
std::vector<Digest> ReferencedAddresses(const objects::Entry& entry);

}  // namespace cairn
