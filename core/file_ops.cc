#include "core/file_ops.h"

#include <cerrno>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/path.h"
#include "core/status.h"
#include "core/tree.h"

namespace cairn {
namespace {

absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string Quoted(std::string_view path) { return absl::StrCat("'/", Sv(path), "'"); }

}  // namespace

absl::StatusOr<objects::ChangeSet> RemoveChanges(ObjectStore& objects, const SnapshotRecord& head,
                                                 std::string_view volume_name,
                                                 std::string_view raw_path, bool recursive) {
  CAIRN_ASSIGN_OR_RETURN(std::string path, NormalizePath(raw_path));
  if (path.empty()) {
    return absl::InvalidArgumentError(
        "refusing to remove the volume root (delete the volume instead)");
  }
  // Checked here for a clear message; the commit re-checks on the head it
  // lands on (must_exist, recursive).
  absl::StatusOr<objects::Entry> at = LookupPath(objects, head.root, path);
  if (absl::IsNotFound(at.status())) {
    return absl::NotFoundError(absl::StrCat("no such file or directory: ", Quoted(path),
                                            " in volume ", Sv(volume_name)));
  }
  if (!at.ok()) return at.status();
  if (at->type() == objects::DIRECTORY && !recursive) {
    return WithErrno(absl::FailedPreconditionError(absl::StrCat(
                         Quoted(path), " is a directory; remove it recursively (-r)")),
                     EISDIR);
  }
  objects::ChangeSet changes;
  objects::Change* c = changes.add_changes();
  c->set_kind(objects::Change::REMOVE);
  c->set_path(path);
  c->set_must_exist(true);
  c->set_recursive(recursive);
  return changes;
}

absl::StatusOr<objects::ChangeSet> CopyChanges(ObjectStore& objects, const SnapshotRecord& head,
                                               std::string_view volume_name,
                                               const std::vector<std::string>& sources,
                                               std::string_view destination, bool recursive) {
  if (sources.empty()) return absl::InvalidArgumentError("cp: no source given");
  CAIRN_ASSIGN_OR_RETURN(std::string dst, NormalizePath(destination));
  bool dst_is_dir = false;
  absl::StatusOr<objects::Entry> dst_entry = LookupPath(objects, head.root, dst);
  if (dst_entry.ok()) {
    dst_is_dir = dst_entry->type() == objects::DIRECTORY;
  } else if (!absl::IsNotFound(dst_entry.status())) {
    return dst_entry.status();
  }
  // "cp a dir/" with dir missing: the trailing slash says "into a directory".
  const bool into_dir = dst_is_dir || absl::EndsWith(Sv(destination), "/");
  if (into_dir && dst_entry.ok() && !dst_is_dir) {
    // Copying "into" an existing file would replace it with a directory.
    return WithErrno(absl::FailedPreconditionError(
                         absl::StrCat("cp: target ", Quoted(dst), " is not a directory")),
                     ENOTDIR);
  }
  if (sources.size() > 1 && !dst_is_dir) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cp: target ", Quoted(dst), " is not an existing directory (copying several sources)"));
  }

  objects::ChangeSet changes;
  for (const std::string& raw : sources) {
    CAIRN_ASSIGN_OR_RETURN(std::string src, NormalizePath(raw));
    if (src.empty()) return absl::InvalidArgumentError("cp: cannot copy the volume root");
    absl::StatusOr<objects::Entry> entry = LookupPath(objects, head.root, src);
    if (absl::IsNotFound(entry.status())) {
      return absl::NotFoundError(absl::StrCat("cp: no such file or directory: ", Quoted(src),
                                              " in volume ", Sv(volume_name)));
    }
    if (!entry.ok()) return entry.status();
    const bool is_dir = entry->type() == objects::DIRECTORY;
    if (is_dir && !recursive) {
      return WithErrno(absl::FailedPreconditionError(absl::StrCat(
                           "cp: ", Quoted(src), " is a directory; copy it recursively (-r)")),
                       EISDIR);
    }
    const std::string target = into_dir ? JoinPath(dst, SplitParent(src).second) : dst;
    if (target == src) {
      return absl::InvalidArgumentError(
          absl::StrCat("cp: ", Quoted(src), " and ", Quoted(target), " are the same"));
    }
    if (is_dir && absl::StartsWith(target, absl::StrCat(src, "/"))) {
      return absl::InvalidArgumentError(absl::StrCat("cp: cannot copy directory ", Quoted(src),
                                                     " into itself (", Quoted(target), ")"));
    }
    objects::Change* c = changes.add_changes();
    c->set_kind(objects::Change::PUT);
    c->set_path(target);
    objects::Entry* copied = c->mutable_entry();
    *copied = *entry;
    copied->clear_name();
    // A copy is a new inode, not another link to the source.
    copied->set_link_id(0);
    // A copied file never replaces a directory tree; a copied directory
    // replaces what was at the target, as a graft.
    c->set_keep_directories(!is_dir);
  }
  return changes;
}

}  // namespace cairn
