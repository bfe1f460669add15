// JSON through nlohmann-json, behind one adapter so its exceptions never
// leave it: parsing returns a Status, quoting cannot fail.
// Thread-safe (stateless).
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace cairn {

// InvalidArgument (with nlohmann's position and reason) for text that is
// not JSON.
[[nodiscard]] absl::StatusOr<nlohmann::json> ParseJson(std::string_view text);

// `s` as a JSON string literal, quotes included. Bytes that are not UTF-8
// are replaced (U+FFFD) rather than failing.
std::string JsonQuote(std::string_view s);

// The string member `key` of a JSON object; empty when absent or not a string.
std::string JsonStringField(const nlohmann::json& object, std::string_view key);

}  // namespace cairn
