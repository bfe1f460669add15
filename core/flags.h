// One reader of `--flag value` / `--flag=value` command lines, shared by the
// binaries that take flags (cairn server, cairn-operator, cairn-csi, cairn
// mount). Each binary keeps its own flag table and --help text; this only
// walks the arguments and turns the usual mistakes into one kind of error:
// InvalidArgument with a message that names the flag ("--gc-grace needs a
// value", "--uid: 'x' is not an integer", "unknown flag '--bogus'").
//
// Usage:
//   FlagCursor flags(args);
//   while (flags.Next()) {
//     if (flags.Is("--data")) { CAIRN_ASSIGN_OR_RETURN(dir, flags.Value()); }
//     else if (flags.IsHelp()) return HelpRequested();
//     else return flags.Unknown();
//   }
//
// Not thread-safe; it borrows `args`, which must outlive it.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace cairn {

class FlagCursor {
 public:
  explicit FlagCursor(const std::vector<std::string>& args) : args_(args) {}

  // Moves to the next argument (the first on the first call); false when
  // none is left. An argument "--name=value" is split at the first '='.
  bool Next();

  // The current argument as given, and its flag name ("--data" of
  // "--data=x"; the whole argument when it has no inline value).
  const std::string& arg() const { return args_[i_]; }
  const std::string& flag() const { return flag_; }
  bool Is(std::string_view name) const { return flag_ == name; }
  // "-h" or "--help".
  bool IsHelp() const { return flag_ == "-h" || flag_ == "--help"; }
  // Looks like a flag: starts with '-' and is not "-" alone.
  bool IsFlag() const { return flag_.size() > 1 && flag_[0] == '-'; }

  // The flag's value: the text after '=', else the next argument (which is
  // consumed). "--x needs a value" when there is none.
  [[nodiscard]] absl::StatusOr<std::string> Value();
  // For a flag that takes none: "--x takes no value" for "--x=v".
  [[nodiscard]] absl::Status NoValue() const;
  // Value() as a base-10 integer in [min, max].
  [[nodiscard]] absl::StatusOr<int64_t> Integer(
      int64_t min = std::numeric_limits<int64_t>::min(),
      int64_t max = std::numeric_limits<int64_t>::max());
  // Value() as a (fractional) number of seconds: more than zero, or at
  // least zero with `allow_zero`; at most `max`.
  [[nodiscard]] absl::StatusOr<absl::Duration> Seconds(
      bool allow_zero = false, absl::Duration max = absl::InfiniteDuration());

  // "unknown flag '--x'" (or "unexpected argument 'x'" for a non-flag).
  [[nodiscard]] absl::Status Unknown() const;

 private:
  const std::vector<std::string>& args_;
  size_t i_ = 0;
  bool started_ = false;
  std::string flag_;
  std::string inline_value_;
  bool has_inline_ = false;
};

// The status a parser returns for -h/--help, so that its caller prints the
// binary's usage to stdout and exits 0; IsHelpRequested recognises it.
absl::Status HelpRequested();
bool IsHelpRequested(const absl::Status& status);

}  // namespace cairn
