// The one adapter between nlohmann::json (which throws) and the rest of the
// operator (which does not): parsing and field access that return defaults
// or a Status instead of throwing. Anything reading API objects goes
// through these helpers.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace cairn::kube {

using Json = nlohmann::json;

// A discarded value (is_discarded()) if `text` is not JSON.
Json ParseJson(std::string_view text);
// InvalidArgument naming `what` unless `text` is a JSON object.
[[nodiscard]] absl::StatusOr<Json> ParseObject(std::string_view text, std::string_view what);
// Serialises; never throws (invalid UTF-8 is replaced).
std::string Dump(const Json& j);

// The value at a path of object keys, or nullptr if any step is missing or
// not an object.
const Json* Find(const Json& j, std::initializer_list<std::string_view> path);
// Typed reads: the default when missing or of another type.
std::string GetString(const Json& j, std::string_view key, std::string_view def = "");
std::string GetStringAt(const Json& j, std::initializer_list<std::string_view> path,
                        std::string_view def = "");
int64_t GetIntAt(const Json& j, std::initializer_list<std::string_view> path, int64_t def = 0);
bool IsIntegerAt(const Json& j, std::initializer_list<std::string_view> path);

}  // namespace cairn::kube
