// A small command-line parser for the `cairn` subcommands: long and short
// flags (with a value as the next argument or after '='), positionals, and
// "--" to end flags. Usage errors are InvalidArgument; the dispatcher turns
// them into exit code 2.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace cairn::cli {

struct FlagSpec {
  std::string name;        // "--force"
  std::string short_name;  // "-f" or ""
  bool takes_value = false;
};

class Args {
 public:
  // "-h"/"--help" are always accepted and reported by help().
  [[nodiscard]] static absl::StatusOr<Args> Parse(const std::vector<std::string>& args,
                                                  const std::vector<FlagSpec>& specs);

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  // The last value given for a value flag, or `fallback`.
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  const std::vector<std::string>& positional() const { return positional_; }
  bool help() const { return help_; }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
  bool help_ = false;
};

// "--flag=value" -> {"--flag", "value", true}; anything else -> {arg, "", false}.
struct SplitFlagResult {
  std::string name;
  std::string value;
  bool inline_value = false;
};
SplitFlagResult SplitFlag(const std::string& arg);

// Error for exit code 2.
absl::Status UsageError(const std::string& message);
bool IsUsageError(const absl::Status& status);

}  // namespace cairn::cli
