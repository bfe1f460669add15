#include "core/flags.h"

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace cairn {

namespace {
constexpr char kHelpRequested[] = "help requested";
}  // namespace

bool FlagCursor::Next() {
  if (started_) {
    ++i_;
  } else {
    started_ = true;
  }
  if (i_ >= args_.size()) return false;
  const std::string& a = args_[i_];
  has_inline_ = false;
  inline_value_.clear();
  size_t eq = a.find('=');
  if (a.starts_with("--") && eq != std::string::npos) {
    flag_ = a.substr(0, eq);
    inline_value_ = a.substr(eq + 1);
    has_inline_ = true;
  } else {
    flag_ = a;
  }
  return true;
}

absl::StatusOr<std::string> FlagCursor::Value() {
  if (has_inline_) return inline_value_;
  if (i_ + 1 >= args_.size()) {
    return absl::InvalidArgumentError(absl::StrCat(flag_, " needs a value"));
  }
  return args_[++i_];
}

absl::Status FlagCursor::NoValue() const {
  if (has_inline_) return absl::InvalidArgumentError(absl::StrCat(flag_, " takes no value"));
  return absl::OkStatus();
}

absl::StatusOr<int64_t> FlagCursor::Integer(int64_t min, int64_t max) {
  absl::StatusOr<std::string> v = Value();
  if (!v.ok()) return v.status();
  int64_t n = 0;
  if (!absl::SimpleAtoi(*v, &n)) {
    return absl::InvalidArgumentError(absl::StrCat(flag_, ": '", *v, "' is not an integer"));
  }
  if (n < min || n > max) {
    constexpr auto kLowest = std::numeric_limits<int64_t>::min();
    constexpr auto kHighest = std::numeric_limits<int64_t>::max();
    std::string range = max == kHighest  ? absl::StrCat("at least ", min)
                        : min == kLowest ? absl::StrCat("at most ", max)
                                         : absl::StrCat("from ", min, " to ", max);
    return absl::InvalidArgumentError(absl::StrCat(flag_, ": ", n, " is not ", range));
  }
  return n;
}

absl::StatusOr<absl::Duration> FlagCursor::Seconds(bool allow_zero, absl::Duration max) {
  absl::StatusOr<std::string> v = Value();
  if (!v.ok()) return v.status();
  double s = 0;
  if (!absl::SimpleAtod(*v, &s) || !std::isfinite(s)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag_, ": '", *v, "' is not a number of seconds"));
  }
  if (s < 0 || (s == 0 && !allow_zero)) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag_, ": '", *v, "' is not a ", allow_zero ? "non-negative" : "positive",
        " number of seconds"));
  }
  absl::Duration d = absl::Seconds(s);
  if (d > max) {
    return absl::InvalidArgumentError(absl::StrCat(flag_, ": '", *v, "' is more than ",
                                                   absl::FormatDuration(max)));
  }
  return d;
}

absl::Status FlagCursor::Unknown() const {
  if (IsFlag()) return absl::InvalidArgumentError(absl::StrCat("unknown flag '", flag_, "'"));
  return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg(), "'"));
}

absl::Status HelpRequested() { return absl::InvalidArgumentError(kHelpRequested); }

bool IsHelpRequested(const absl::Status& status) {
  return status.code() == absl::StatusCode::kInvalidArgument &&
         status.message() == kHelpRequested;
}

}  // namespace cairn
