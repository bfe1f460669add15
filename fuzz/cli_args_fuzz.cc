// The command-line parsers: the `cairn` subcommands' (cli/args.h) and the
// binaries' flag reader (core/flags.h). argv is whatever a user or a script
// types. The input describes a flag table (up to 6 flags) and an argv
// (NUL-separated).
//
// Checks: only declared flags come back; a value flag's value is the text
// after '=' or the next argument; "--" ends flags; a failure is a usage
// error (exit code 2) with a message; --flag=value splitting round-trips.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "cli/args.h"
#include "core/flags.h"
#include "core/size.h"

namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "property violated: %s\n", what);
    abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using cairn::cli::Args;
  using cairn::cli::FlagSpec;
  FuzzedDataProvider in(data, size);
  std::vector<FlagSpec> specs;
  const int nspecs = in.ConsumeIntegralInRange<int>(0, 6);
  for (int i = 0; i < nspecs; ++i) {
    FlagSpec s;
    s.name = "--" + in.ConsumeRandomLengthString(12);
    if (in.ConsumeBool()) s.short_name = "-" + in.ConsumeBytesAsString(1);
    s.takes_value = in.ConsumeBool();
    // A command's flag table is written by hand with distinct names; two
    // entries with one name are a programming error, not user input.
    bool taken = false;
    for (const FlagSpec& t : specs) {
      taken |= t.name == s.name || (!s.short_name.empty() && t.short_name == s.short_name);
    }
    if (!taken) specs.push_back(std::move(s));
  }
  std::vector<std::string> argv;
  std::string rest = in.ConsumeRemainingBytesAsString();
  for (size_t pos = 0; pos <= rest.size() && argv.size() < 64;) {
    size_t end = rest.find('\0', pos);
    if (end == std::string::npos) end = rest.size();
    argv.push_back(rest.substr(pos, end - pos));
    pos = end + 1;
  }

  for (const std::string& a : argv) {
    auto split = cairn::cli::SplitFlag(a);
    if (split.inline_value) {
      Check(split.name + "=" + split.value == a, "--flag=value splits at the first '='");
    } else {
      Check(split.name == a && split.value.empty(), "other arguments stay whole");
    }
  }

  // The binaries' flag reader (core/flags.h) over the same arguments, with
  // the same table: every argument is visited once or taken as a value, and
  // a refusal is InvalidArgument naming the flag.
  {
    cairn::FlagCursor flags(argv);
    size_t visited = 0, values = 0, n = 0;
    while (flags.Next()) {
      ++visited;
      Check(visited + values <= argv.size(), "the cursor stays within the arguments");
      const FlagSpec* spec = nullptr;
      for (const FlagSpec& s : specs) {
        if (flags.Is(s.name) || (!s.short_name.empty() && flags.Is(s.short_name))) spec = &s;
      }
      absl::Status st;
      if (spec == nullptr) {
        st = flags.Unknown();
        Check(!st.ok(), "an unknown argument is refused");
      } else if (!spec->takes_value) {
        st = flags.NoValue();
      } else {
        bool inline_value = flags.arg() != flags.flag();
        absl::Status got;
        switch (n++ % 3) {
          case 0: got = flags.Value().status(); break;
          case 1: got = flags.Integer(-5, 1000).status(); break;
          default: got = flags.Seconds(false, absl::Hours(1)).status(); break;
        }
        // A separate value is consumed even when it does not parse.
        if (!inline_value && got.message() != flags.flag() + " needs a value") {
          ++values;
        }
        st = got;
      }
      if (!st.ok()) {
        Check(st.code() == absl::StatusCode::kInvalidArgument, "flag errors are InvalidArgument");
        Check(st.message().find(flags.flag()) != std::string::npos ||
                  st.message().find(flags.arg()) != std::string::npos,
              "a flag error names the flag");
      }
    }
    Check(visited + values == argv.size(), "every argument is visited or taken as a value");
  }

  absl::StatusOr<Args> parsed = Args::Parse(argv, specs);
  if (!parsed.ok()) {
    Check(cairn::cli::IsUsageError(parsed.status()), "parse errors are usage errors");
    Check(!parsed.status().message().empty(), "parse errors say why");
    return 0;
  }
  Check(parsed->positional().size() <= argv.size(), "no more positionals than arguments");
  bool any_flag = parsed->help();
  for (const FlagSpec& s : specs) {
    if (!parsed->Has(s.name)) continue;
    any_flag = true;
    // Two fallbacks: a present flag's stored value wins over both (any one
    // sentinel could be typed as a value, and libFuzzer would find it).
    std::string value = parsed->Get(s.name, "a");
    Check(value == parsed->Get(s.name, "b"), "a present flag has a value");
    if (!s.takes_value) Check(value.empty(), "a switch has no value");
    (void)cairn::ParseSize(value);  // sizes are the most common value type
  }
  // Arguments that do not look like flags are positional, in order.
  std::vector<std::string> plain;
  bool only_plain = true;
  for (const std::string& a : argv) {
    if (a.size() >= 2 && a[0] == '-') only_plain = false;
    plain.push_back(a);
  }
  if (only_plain) Check(parsed->positional() == plain && !any_flag, "plain arguments stay");
  return 0;
}
