// Byte sizes as people type them: "4096", "64K", "1M", "10GiB", "1T"
// (binary multiples; a trailing "B" or "iB" is optional).
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace cairn {

// InvalidArgument naming the text for anything else, including overflow.
[[nodiscard]] absl::StatusOr<uint64_t> ParseSize(std::string_view text);

}  // namespace cairn
