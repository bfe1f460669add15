// Server flags shared by `cairn server` and `cairn-operator`, so both
// binaries accept (and document) exactly the same options.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/flags.h"
#include "operator/server.h"

namespace cairn::operator_ {

// Help text for the flags ParseServerFlags accepts.
std::string ServerFlagsHelp();

// The backend flags, in one place (--data DIR, --meta URL, --meta-file
// FILE, --blobs URL): if the cursor's flag is one, consumes it into
// `options` and returns true; false for any other flag. InvalidArgument for
// a --meta that is not a postgres:// URL, a --meta-file that cannot be read,
// or a --blobs that is not a valid s3:// URL with credentials.
[[nodiscard]] absl::StatusOr<bool> ParseBackendFlag(FlagCursor& flags, ServerOptions& options);

// Parses the backend flags (above; CAIRN_META_URL when neither --meta nor
// --meta-file is given), --listen, --metrics-listen, --metrics-public,
// --token-file, --tls-cert, --tls-key, --gc-interval SECONDS, --gc-grace
// SECONDS, --lease-sweep-interval SECONDS (each also as --flag=value).
// InvalidArgument naming the offending argument otherwise.
[[nodiscard]] absl::StatusOr<ServerOptions> ParseServerFlags(const std::vector<std::string>& args);

}  // namespace cairn::operator_
