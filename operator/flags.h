// Server flags shared by `cairn server` and `cairn-operator`, so both
// binaries accept (and document) exactly the same options.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "operator/server.h"

namespace cairn::operator_ {

// Help text for the flags ParseServerFlags accepts.
std::string ServerFlagsHelp();

// Parses --data DIR, --listen, --metrics-listen, --metrics-public, --token-file, --tls-cert,
// --tls-key, --gc-interval SECONDS, --gc-grace SECONDS, --lease-sweep-interval SECONDS (each also as
// --flag=value). InvalidArgument naming the offending argument otherwise.
[[nodiscard]] absl::StatusOr<ServerOptions> ParseServerFlags(const std::vector<std::string>& args);

}  // namespace cairn::operator_
