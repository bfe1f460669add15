// Typed Kubernetes API errors, in the spirit of client-go's
// k8s.io/apimachinery/pkg/api/errors: every failed call returns an
// absl::Status whose code says how to retry (STYLE.md §3) and whose
// payload carries the precise Reason, so callers test `IsConflict(s)`
// rather than parsing messages.
//
//   reason            HTTP         absl code            caller should
//   kNotFound         404          NotFound             treat as gone
//   kAlreadyExists    409 (create) AlreadyExists        get it instead
//   kConflict         409          Aborted              re-read, redo the update
//   kGone             410          FailedPrecondition   re-list, then watch again
//   kInvalid          422, 400     InvalidArgument      fix the request
//   kForbidden        403          PermissionDenied     fix RBAC
//   kUnauthorized     401          Unauthenticated      fix credentials
//   kTooManyRequests  429          Unavailable          back off and retry
//   kUnavailable      5xx, no conn Unavailable          back off and retry
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace cairn::kube {

enum class Reason {
  kNone,  // OK, or not an API error
  kNotFound,
  kAlreadyExists,
  kConflict,
  kGone,
  kInvalid,
  kForbidden,
  kUnauthorized,
  kTooManyRequests,
  kUnavailable,
  kUnknown,  // any other HTTP status
};

std::string_view ReasonName(Reason r);

// The status for an HTTP response `http_status` with body `body` (a
// metav1.Status JSON when the API server wrote it; its message is used).
// `what` names the request, e.g. "GET /api/v1/namespaces/a/pods/b".
[[nodiscard]] absl::Status HttpError(int http_status, std::string_view body, std::string_view what);
// Connection-level failure (refused, TLS, timeout): Unavailable/kUnavailable.
[[nodiscard]] absl::Status ConnectionError(std::string_view detail, std::string_view what);
// A status with `reason` attached (used by HttpError and by fakes).
[[nodiscard]] absl::Status WithReason(absl::Status status, Reason reason);

// kNone for OK or a status without a Kubernetes reason.
Reason ReasonOf(const absl::Status& status);
inline bool IsNotFound(const absl::Status& s) { return ReasonOf(s) == Reason::kNotFound; }
inline bool IsAlreadyExists(const absl::Status& s) {
  return ReasonOf(s) == Reason::kAlreadyExists;
}
inline bool IsConflict(const absl::Status& s) { return ReasonOf(s) == Reason::kConflict; }
inline bool IsGone(const absl::Status& s) { return ReasonOf(s) == Reason::kGone; }
inline bool IsForbidden(const absl::Status& s) { return ReasonOf(s) == Reason::kForbidden; }
inline bool IsUnauthorized(const absl::Status& s) {
  return ReasonOf(s) == Reason::kUnauthorized;
}
inline bool IsInvalid(const absl::Status& s) { return ReasonOf(s) == Reason::kInvalid; }
// Worth retrying the same call after a backoff.
inline bool IsRetriable(const absl::Status& s) {
  Reason r = ReasonOf(s);
  return r == Reason::kUnavailable || r == Reason::kTooManyRequests;
}

}  // namespace cairn::kube
