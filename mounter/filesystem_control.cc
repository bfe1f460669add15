// The in-band controls (mounter/control.h) and the status JSON
// (docs/mounter.md) (filesystem.h "Controls and status").
#include "mounter/filesystem.h"

#include "absl/strings/str_cat.h"
#include "core/json.h"
#include "core/status.h"
#include "mounter/control.h"
#include "mounter/filesystem_internal.h"

namespace cairn::mounter {

namespace {

// The inside of a JSON string literal (core/json.h; bytes that are not
// UTF-8, as names may be, become U+FFFD so the status stays valid JSON).
std::string JsonEscape(std::string_view s) {
  std::string quoted = JsonQuote(s);
  return quoted.substr(1, quoted.size() - 2);
}

std::string TimeJson(absl::Time t) {
  if (t == absl::InfinitePast()) return "null";
  return absl::StrCat("\"", absl::FormatTime(absl::RFC3339_full, t, absl::UTCTimeZone()), "\"");
}

}  // namespace

absl::Status Filesystem::SetXattr(uint64_t ino, std::string_view name, std::string_view value) {
  if (ino == kRootIno) {
    if (IsControl(name, kCommitAttr)) return ForControl(Commit(/*report_stuck=*/true));
    if (IsControl(name, kReloadAttr)) return ForControl(Reload());
  }
  return Errno(EOPNOTSUPP, "extended attribute " + std::string(name));
}

// Anything but the status control answers EOPNOTSUPP, as setxattr does:
// extended attributes are not stored (D32). Tools take that errno as "this
// file system has none" and stop asking for the rest of the mount (`ls -l`
// would otherwise send two getxattr requests per file: an ACL and an
// SELinux label), where ENODATA would only answer for the one file.
absl::StatusOr<std::string> Filesystem::GetXattr(uint64_t ino, std::string_view name) {
  if (ino == kRootIno && IsControl(name, kStatusAttr)) return StatusJson();
  return Errno(EOPNOTSUPP, "extended attribute " + std::string(name));
}

std::vector<std::string> Filesystem::ListXattr(uint64_t ino) {
  if (ino == kRootIno) return {kStatusAttr};
  return {};
}

std::string Filesystem::StuckJsonLocked() const {
  std::string out = "[";
  for (const Stuck& st : stuck_) {
    if (out.size() > 1) out += ",";
    absl::StrAppend(&out, "{\"path\":\"", JsonEscape(st.path), "\",\"error\":\"",
                    JsonEscape(st.error.ToString()), "\"}");
  }
  return out + "]";
}

std::string Filesystem::StatusJson() {
  uint64_t base_seq, pending;
  int64_t inodes;
  {
    absl::ReaderMutexLock lock(&mu_);
    base_seq = base_.seq();
    pending = log_.size() + prepared_count_.load();
    inodes = inode_count_;
  }
  int open;
  {
    absl::MutexLock lock(&handles_mu_);
    open = open_files_;
  }
  absl::MutexLock lock(&status_mu_);
  return absl::StrCat(
      "{\"volume\":\"", JsonEscape(volume_name_), "\",\"volume_id\":\"", JsonEscape(volume_id_),
      "\",\"version\":", version_, ",\"sub_path\":\"", JsonEscape(options_.sub_path),
      "\",\"read_only\":", options_.read_only ? "true" : "false", ",\"base_seq\":", base_seq,
      ",\"dirty\":", pending > 0 ? "true" : "false", ",\"pending_changes\":", pending,
      ",\"open_files\":", open, ",\"inodes\":", inodes, ",\"commits\":", commits_,
      ",\"failed_commits\":", failed_commits_, ",\"last_commit_time\":",
      TimeJson(last_commit_time_), ",\"last_commit_seq\":", last_commit_seq_,
      ",\"last_commit_error\":\"", JsonEscape(last_commit_error_), "\",\"reloads\":", reloads_,
      ",\"last_reload_time\":", TimeJson(last_reload_time_), ",\"last_reload_error\":\"",
      JsonEscape(last_reload_error_), "\",\"stuck\":", StuckJsonLocked(),
      ",\"journal_failed\":", journal_failed_.load() ? "true" : "false", "}");
}

}  // namespace cairn::mounter
