#include "core/status.h"

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace cairn {
namespace {

// Payload key carrying a precise errno through layers that only pass Status.
constexpr char kErrnoPayload[] = "cairn.dev/errno";

}  // namespace

absl::Status ErrnoToStatus(int err, std::string_view context) {
  std::string message = absl::StrCat(absl::string_view(context.data(), context.size()), ": ",
                                     std::strerror(err));
  absl::Status status;
  switch (err) {
    case 0:
      return absl::OkStatus();
    case ENOENT:
      status = absl::NotFoundError(message);
      break;
    case EEXIST:
      status = absl::AlreadyExistsError(message);
      break;
    case EINVAL:
    case ENAMETOOLONG:
      status = absl::InvalidArgumentError(message);
      break;
    case EACCES:
    case EPERM:
      status = absl::PermissionDeniedError(message);
      break;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
    case EMFILE:
    case ENFILE:
      status = absl::ResourceExhaustedError(message);
      break;
    case EAGAIN:
    case EINTR:
    case ECONNREFUSED:
    case ETIMEDOUT:
      status = absl::UnavailableError(message);
      break;
    case EBUSY:
    case ENOTEMPTY:
    case ENOTDIR:
    case EISDIR:
    case EROFS:
      status = absl::FailedPreconditionError(message);
      break;
    default:
      status = absl::InternalError(message);
      break;
  }
  return WithErrno(std::move(status), err);
}

absl::Status WithErrno(absl::Status status, int err) {
  if (!status.ok()) status.SetPayload(kErrnoPayload, absl::Cord(std::to_string(err)));
  return status;
}

int StatusToErrno(const absl::Status& status) {
  if (status.ok()) return 0;
  if (auto payload = status.GetPayload(kErrnoPayload)) {
    int err = 0;
    if (absl::SimpleAtoi(std::string(*payload), &err) && err > 0) return err;
  }
  switch (status.code()) {
    case absl::StatusCode::kNotFound:
      return ENOENT;
    case absl::StatusCode::kAlreadyExists:
      return EEXIST;
    case absl::StatusCode::kInvalidArgument:
      return EINVAL;
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
      return EACCES;
    case absl::StatusCode::kResourceExhausted:
      return ENOSPC;
    case absl::StatusCode::kOutOfRange:
      return EFBIG;
    case absl::StatusCode::kFailedPrecondition:
      return EBUSY;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kDeadlineExceeded:
      return EAGAIN;
    case absl::StatusCode::kUnimplemented:
      return ENOSYS;
    default:
      return EIO;
  }
}

}  // namespace cairn
