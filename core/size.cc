#include "core/size.h"

#include <limits>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace cairn {

absl::StatusOr<uint64_t> ParseSize(std::string_view text) {
  std::string s = absl::AsciiStrToUpper(std::string(text));
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad size '", std::string(text), "' (use bytes or a K, M, G or T suffix, e.g. 64M)"));
  };
  if (!s.empty() && s.back() == 'B') s.pop_back();
  if (!s.empty() && s.back() == 'I') s.pop_back();
  int shift = 0;
  if (!s.empty()) {
    switch (s.back()) {
      case 'K': shift = 10; break;
      case 'M': shift = 20; break;
      case 'G': shift = 30; break;
      case 'T': shift = 40; break;
      default: break;
    }
    if (shift != 0) s.pop_back();
  }
  uint64_t n = 0;
  if (s.empty() || !absl::SimpleAtoi(s, &n)) return bad();
  if (shift != 0 && n > (std::numeric_limits<uint64_t>::max() >> shift)) return bad();
  return n << shift;
}

std::string HumanBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  double v = static_cast<double>(bytes);
  int unit = 0;
  while (v >= 1024 && unit < 5) {
    v /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", v, kUnits[unit]);
}

}  // namespace cairn
