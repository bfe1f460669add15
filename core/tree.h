// Trees of directory objects: reading a snapshot, and applying a change set
// to produce the next one.
//
// ApplyChanges rewrites only the directories on the paths it changes, so a
// commit costs O(changed paths × depth × directory size), independent of the
// volume's total size. Thread-safe as far as the ObjectStore is.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "core/digest.h"
#include "core/meta_store.h"
#include "core/object_store.h"
#include "proto/objects.pb.h"

namespace cairn {

// The entry at `path` ("" is the root: a DIRECTORY entry whose tree is
// `root`). NotFound if absent; FailedPrecondition with ENOTDIR attached if
// a parent is not a directory.
[[nodiscard]] absl::StatusOr<objects::Entry> LookupPath(ObjectStore& objects, const Digest& root,
                                                        std::string_view path);

// The directory at `path`. NotFound, or FailedPrecondition + ENOTDIR.
[[nodiscard]] absl::StatusOr<std::shared_ptr<const objects::Directory>> ReadDirectory(
    ObjectStore& objects, const Digest& root, std::string_view path);

// Pre-order walk below `path` (not including `path` itself). `fn` gets the
// path relative to the volume root and the entry; returning false skips a
// directory's children.
[[nodiscard]] absl::Status WalkTree(
    ObjectStore& objects, const Digest& root, std::string_view path,
    const std::function<bool(const std::string& path, const objects::Entry& entry)>& fn);

struct ApplyResult {
  Digest root;
  uint64_t inodes = 0;
  uint64_t bytes = 0;
};

// Applies `changes` in order onto the tree at `root`, enforcing `limits`
// (ResourceExhausted with ENOSPC for inodes and directory entries, EFBIG for
// file size; FailedPrecondition with EPERM for hard links where not
// allowed). Paths in changes must already be normalised (InvalidArgument
// otherwise). Writes new directory objects; on error the result is simply
// not referenced and is left for GC.
[[nodiscard]] absl::StatusOr<ApplyResult> ApplyChanges(ObjectStore& objects, const Digest& root,
                                                       const objects::ChangeSet& changes,
                                                       const Limits& limits);

}  // namespace cairn
