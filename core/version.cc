#include "core/version.h"

#include <cstdio>

#include "absl/strings/str_cat.h"

// Set for this file only (core/CMakeLists.txt), so a new revision
// recompiles one file.
#ifndef CAIRN_VERSION
#error "CAIRN_VERSION must be defined by the build"
#endif
#ifndef CAIRN_SOURCE_REVISION
#define CAIRN_SOURCE_REVISION "unknown"
#endif

namespace cairn {

std::string_view Version() { return CAIRN_VERSION; }

std::string_view SourceRevision() { return CAIRN_SOURCE_REVISION; }

std::string VersionLine(std::string_view binary) {
  return absl::StrCat(std::string(binary), " ", std::string(Version()), " (git ",
                      std::string(SourceRevision()), ")");
}

bool PrintVersionIfAsked(std::string_view binary, const std::vector<std::string>& args) {
  if (args.empty() || args[0] != "--version") return false;
  std::printf("%s\n", VersionLine(binary).c_str());
  return true;
}

}  // namespace cairn
