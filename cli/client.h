// The CLI's view of the Volume API: the shared core client plus the advice
// a person at a terminal needs when it fails (an unreachable server names
// the address and how to start one).
#pragma once

#include "absl/status/status.h"
#include "core/volume_api_client.h"

namespace cairn::cli {

using Client = VolumeApiClient;

// client.Explain(status), and for UNAVAILABLE how to start or point at a
// server.
[[nodiscard]] absl::Status ForPerson(const Client& client, absl::Status status);

}  // namespace cairn::cli
