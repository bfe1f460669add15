// Byte sizes as people type them: "4096", "64K", "1M", "10GiB", "1T"
// (binary multiples; a trailing "B" or "iB" is optional), and as people
// read them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace cairn {

// InvalidArgument naming the text for anything else, including overflow.
[[nodiscard]] absl::StatusOr<uint64_t> ParseSize(std::string_view text);

// "512 B", "1.5 GiB": one decimal, binary units.
std::string HumanBytes(uint64_t bytes);

}  // namespace cairn
