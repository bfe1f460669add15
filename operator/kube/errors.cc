#include "operator/kube/errors.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "operator/kube/json.h"

namespace cairn::kube {
namespace {

constexpr char kPayloadUrl[] = "type.cairn.dev/kube-reason";

constexpr Reason kAll[] = {Reason::kNotFound,     Reason::kAlreadyExists, Reason::kConflict,
                           Reason::kGone,         Reason::kInvalid,       Reason::kForbidden,
                           Reason::kUnauthorized, Reason::kTooManyRequests,
                           Reason::kUnavailable,  Reason::kUnknown};

}  // namespace

std::string_view ReasonName(Reason r) {
  switch (r) {
    case Reason::kNone: return "None";
    case Reason::kNotFound: return "NotFound";
    case Reason::kAlreadyExists: return "AlreadyExists";
    case Reason::kConflict: return "Conflict";
    case Reason::kGone: return "Gone";
    case Reason::kInvalid: return "Invalid";
    case Reason::kForbidden: return "Forbidden";
    case Reason::kUnauthorized: return "Unauthorized";
    case Reason::kTooManyRequests: return "TooManyRequests";
    case Reason::kUnavailable: return "Unavailable";
    case Reason::kUnknown: return "Unknown";
  }
  return "Unknown";
}

absl::Status WithReason(absl::Status status, Reason reason) {
  if (!status.ok()) status.SetPayload(kPayloadUrl, absl::Cord(std::string(ReasonName(reason))));
  return status;
}

Reason ReasonOf(const absl::Status& status) {
  if (status.ok()) return Reason::kNone;
  absl::optional<absl::Cord> p = status.GetPayload(kPayloadUrl);
  if (!p.has_value()) return Reason::kNone;
  std::string name(*p);
  for (Reason r : kAll) {
    if (ReasonName(r) == name) return r;
  }
  return Reason::kUnknown;
}

absl::Status HttpError(int http_status, std::string_view body, std::string_view what) {
  std::string message;
  std::string api_reason;
  Json parsed = ParseJson(body);
  if (parsed.is_object()) {
    message = GetString(parsed, "message");
    api_reason = GetString(parsed, "reason");
  }
  if (message.empty()) message = std::string(body.substr(0, 200));
  std::string text = absl::StrCat(std::string(what), ": HTTP ", http_status, ": ", message);
  switch (http_status) {
    case 404: return WithReason(absl::NotFoundError(text), Reason::kNotFound);
    case 409:
      if (api_reason == "AlreadyExists") {
        return WithReason(absl::AlreadyExistsError(text), Reason::kAlreadyExists);
      }
      return WithReason(absl::AbortedError(text), Reason::kConflict);
    case 410: return WithReason(absl::FailedPreconditionError(text), Reason::kGone);
    case 400:
    case 422: return WithReason(absl::InvalidArgumentError(text), Reason::kInvalid);
    case 403: return WithReason(absl::PermissionDeniedError(text), Reason::kForbidden);
    case 401: return WithReason(absl::UnauthenticatedError(text), Reason::kUnauthorized);
    case 429: return WithReason(absl::UnavailableError(text), Reason::kTooManyRequests);
    default: break;
  }
  if (http_status >= 500) return WithReason(absl::UnavailableError(text), Reason::kUnavailable);
  return WithReason(absl::UnknownError(text), Reason::kUnknown);
}

absl::Status ConnectionError(std::string_view detail, std::string_view what) {
  return WithReason(absl::UnavailableError(absl::StrCat(std::string(what), ": ", std::string(detail))),
                    Reason::kUnavailable);
}

}  // namespace cairn::kube
