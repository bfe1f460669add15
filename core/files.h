// File contents as chunks (DESIGN.md §2): fixed-size chunks, small files
// inline in their directory entry.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "core/object_store.h"
#include "proto/objects.pb.h"

namespace cairn {

inline constexpr uint64_t kChunkSize = 4 << 20;
// The largest object a client uploads (PutObjects): a full chunk, sealed in
// the smallest blocks a reader accepts (the most tags), so that a server
// takes the chunks of writers using any block size (D32).
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

// Every chunk (and, for directories, tree) address an entry references
// directly; what a commit must find stored.
std::vector<Digest> ReferencedAddresses(const objects::Entry& entry);

}  // namespace cairn
