// The version every Cairn binary reports with --version: the CMake project
// version (the one number the image tag and the Helm chart's appVersion
// carry; CMake refuses to configure when charts/cairn/Chart.yaml says
// otherwise) and the source revision `git describe` named at configure time.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace cairn {

// "0.1.0".
std::string_view Version();
// "9b00cff" or "9b00cff-dirty"; "unknown" outside a git checkout.
std::string_view SourceRevision();
// "NAME 0.1.0 (git 9b00cff)".
std::string VersionLine(std::string_view binary);

// If the first argument is "--version", prints VersionLine(binary) to
// stdout and returns true (the caller exits 0).
bool PrintVersionIfAsked(std::string_view binary, const std::vector<std::string>& args);

}  // namespace cairn
