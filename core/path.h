// Validation of names and paths (C9). Everything a user types goes through
// here before it touches a store.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cairn {

inline constexpr size_t kMaxNameLength = 64;        // volume names
inline constexpr size_t kMaxComponentLength = 255;  // one path component, bytes
inline constexpr size_t kMaxPathLength = 4096;

// 1–64 characters of [A-Za-z0-9._-], not "." or "..". InvalidArgument with
// a message naming the rule that failed.
[[nodiscard]] absl::Status ValidateVolumeName(std::string_view name);
// Same rules for namespaces (empty is allowed and means "default").
[[nodiscard]] absl::Status ValidateNamespace(std::string_view ns);
std::string NamespaceOrDefault(std::string_view ns);

// A volume ID as minted by the engine: "vo-" followed by 1–64 characters of
// [A-Za-z0-9]. Stores use IDs as path components and object-key prefixes, so
// anything else (traversal, separators, NUL) is InvalidArgument.
[[nodiscard]] absl::Status ValidateVolumeId(std::string_view id);

// Normalises a volume path: leading and repeated '/' and "." components are
// dropped, the result has no leading or trailing '/'; "" is the root.
// InvalidArgument for "..", NUL bytes, a component over 255 bytes or a path
// over 4096 bytes (errno ENAMETOOLONG attached for the length cases).
[[nodiscard]] absl::StatusOr<std::string> NormalizePath(std::string_view path);

// One path component as stored in a directory object: 1–255 bytes, no '/'
// or NUL, not "." or "..".
bool IsValidComponent(std::string_view name);

// Components of a normalised path; empty for the root.
std::vector<std::string_view> SplitPath(std::string_view normalized);

// "a/b/c" -> {"a/b", "c"}; "c" -> {"", "c"}.
std::pair<std::string_view, std::string_view> SplitParent(std::string_view normalized);

std::string JoinPath(std::string_view dir, std::string_view name);

}  // namespace cairn
