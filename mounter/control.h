// The in-band controls of a mount: extended attributes on its root
// (docs/mounter.md "In-band controls") that any process can use without a
// Cairn binary, shared by the mounter that answers them and the CLI and the
// CSI plugin that send them. Setting `commit` or `reload` (any value)
// runs it and returns its errno; getting `status` returns the status JSON.
// The bare names ("cairn.commit" …) are accepted too, for tools that do not
// prefix the user namespace.
#pragma once

#include <string_view>

namespace cairn::mounter {

inline constexpr char kCommitAttr[] = "user.cairn.commit";
inline constexpr char kReloadAttr[] = "user.cairn.reload";
inline constexpr char kStatusAttr[] = "user.cairn.status";

// True if `name` is `attr` or `attr` without its "user." prefix.
inline bool IsControl(std::string_view name, std::string_view attr) {
  constexpr std::string_view kUser = "user.";
  return name == attr || (attr.starts_with(kUser) && name == attr.substr(kUser.size()));
}

}  // namespace cairn::mounter
