// Error plumbing shared by every module (shared/STYLE.md §1–2).
//
// absl::Status codes are the gRPC codes, so the API edge converts with a
// cast. errno enters through ErrnoToStatus and leaves (towards FUSE) through
// StatusToErrno; those two functions are the only errno tables in the tree.
#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cairn {

// `context` says what was being done, e.g. "open /data/blobs/ab/cd".
[[nodiscard]] absl::Status ErrnoToStatus(int err, std::string_view context);

// The errno a FUSE reply should carry for `status` (0 for OK). Keeps the
// distinction callers act on: ENOENT, EEXIST, ENOSPC, EFBIG, ENAMETOOLONG,
// EINVAL, ENOTEMPTY/EISDIR/ENOTDIR via their payload, EIO otherwise.
[[nodiscard]] int StatusToErrno(const absl::Status& status);

// Attaches a precise errno to a status so StatusToErrno can return it
// (e.g. ENOTDIR, EISDIR, ENOTEMPTY, EFBIG, ENAMETOOLONG, EPERM), without
// changing its code.
[[nodiscard]] absl::Status WithErrno(absl::Status status, int err);

}  // namespace cairn

// Evaluates `expr` (an absl::Status); returns it from the caller if not OK.
#define CAIRN_RETURN_IF_ERROR(expr)                  \
  do {                                               \
    ::absl::Status _cairn_status = (expr);           \
    if (!_cairn_status.ok()) return _cairn_status;   \
  } while (0)

#define CAIRN_CONCAT_INNER_(a, b) a##b
#define CAIRN_CONCAT_(a, b) CAIRN_CONCAT_INNER_(a, b)

// CAIRN_ASSIGN_OR_RETURN(auto x, StatusOrExpr()); returns the error if any.
#define CAIRN_ASSIGN_OR_RETURN(lhs, expr) \
  CAIRN_ASSIGN_OR_RETURN_IMPL_(CAIRN_CONCAT_(_cairn_statusor_, __LINE__), lhs, expr)
#define CAIRN_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return std::move(tmp).status();     \
  lhs = std::move(tmp).value()
