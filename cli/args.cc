#include "cli/args.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace cairn::cli {
namespace {

// Marks a status as a usage error (exit 2) without changing its code.
constexpr char kUsagePayload[] = "cairn.dev/usage";

}  // namespace

absl::Status UsageError(const std::string& message) {
  absl::Status s = absl::InvalidArgumentError(message);
  s.SetPayload(kUsagePayload, absl::Cord("1"));
  return s;
}

bool IsUsageError(const absl::Status& status) {
  return status.GetPayload(kUsagePayload).has_value();
}

SplitFlagResult SplitFlag(const std::string& arg) {
  if (size_t eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
    return {arg.substr(0, eq), arg.substr(eq + 1), true};
  }
  return {arg, "", false};
}

absl::StatusOr<Args> Args::Parse(const std::vector<std::string>& args,
                                 const std::vector<FlagSpec>& specs) {
  Args out;
  bool flags_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (flags_done || a == "-" || a.size() < 2 || a[0] != '-') {
      out.positional_.push_back(a);
      continue;
    }
    if (a == "--") {
      flags_done = true;
      continue;
    }
    if (a == "-h" || a == "--help") {
      out.help_ = true;
      continue;
    }
    auto [name, value, inline_value] = SplitFlag(a);
    const FlagSpec* spec = nullptr;
    for (const FlagSpec& s : specs) {
      if (s.name == name || (!s.short_name.empty() && s.short_name == name)) spec = &s;
    }
    if (spec == nullptr) return UsageError(absl::StrCat("unknown option '", a, "'"));
    if (spec->takes_value) {
      if (!inline_value) {
        if (i + 1 >= args.size()) return UsageError(absl::StrCat(name, " needs a value"));
        value = args[++i];
      }
      out.values_[spec->name] = value;
    } else {
      if (inline_value) return UsageError(absl::StrCat(spec->name, " takes no value"));
      out.values_[spec->name] = "";
    }
  }
  return out;
}

std::string Args::Get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

}  // namespace cairn::cli
