// The `cairn` subcommands that act on mounts (the mounter's side of the CLI).
// The dispatcher in cli/main.cc parses global flags and hands the rest here.
//
// Each returns the process exit code: 0 ok, 1 operation failed, 2 usage.
#pragma once

#include <string>
#include <vector>

#include "core/rpc_client.h"

namespace cairn::cli {

// cairn mount VOLUME MOUNTPOINT [--read-only] [--sub-path P]
//   [--commit-interval SECONDS] [-n NS]  (foreground until unmounted)
int RunMount(const ClientOptions& client, const std::vector<std::string>& args);

// cairn volume commit|reload MOUNTPOINT; cairn volume status MOUNTPOINT [--json]
int RunMountControl(const std::string& verb, const std::vector<std::string>& args);

// cairn shell --volume NAME [--volume NAME ...] [-- COMMAND...]
int RunShell(const ClientOptions& client, const std::vector<std::string>& args);

}  // namespace cairn::cli
