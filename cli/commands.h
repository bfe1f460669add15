// The `cairn` command line: dispatch, help text and the volume, server and
// fsck subcommands. main.cc only calls Main().
//
// Exit codes: 0 ok, 1 operation failed ("cairn: error: ..." on stderr),
// 2 usage error.
#pragma once

#include <string>
#include <vector>

namespace cairn::cli {

// `args` excludes argv[0].
int Main(const std::vector<std::string>& args);

}  // namespace cairn::cli
