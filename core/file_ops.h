// The change sets of the Volume API's file operations (`cairn volume rm`,
// `cairn volume cp`), built against a volume's current head with the rules
// a user expects of rm and cp: clear errors for what is missing, a
// directory without -r, a copy into itself or onto a file, and nothing
// committed when any source fails (C9). The caller commits the result
// through Engine::Commit, which re-checks on the head it lands on
// (must_exist, keep_directories).
//
// Pure functions of their arguments; thread-safe as far as the ObjectStore.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/meta_store.h"
#include "core/object_store.h"
#include "proto/objects.pb.h"

namespace cairn {

// Removes `raw_path` (recursively for a directory only when `recursive`).
// InvalidArgument for the root or a bad path; NotFound naming the path and
// `volume_name`; FailedPrecondition + EISDIR for a directory without
// `recursive`.
[[nodiscard]] absl::StatusOr<objects::ChangeSet> RemoveChanges(ObjectStore& objects,
                                                               const SnapshotRecord& head,
                                                               std::string_view volume_name,
                                                               std::string_view raw_path,
                                                               bool recursive);

// Copies `sources` to `destination` within the volume, sharing chunks. As
// cp(1): into `destination` if it is a directory (or ends in '/'), else to
// that name (one source only). A copy is a new inode (no hard link to the
// source). A copied file never replaces a directory; a copied directory
// replaces what is at its target.
[[nodiscard]] absl::StatusOr<objects::ChangeSet> CopyChanges(
    ObjectStore& objects, const SnapshotRecord& head, std::string_view volume_name,
    const std::vector<std::string>& sources, std::string_view destination, bool recursive);

}  // namespace cairn
