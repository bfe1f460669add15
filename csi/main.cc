// cairn-csi: flags -> CsiOptions -> RunPlugin (csi/driver.h).
#include <cstdio>
#include <string>
#include <vector>

#include "core/flags.h"
#include "core/rpc_client.h"
#include "core/version.h"
#include "csi/driver.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (cairn::PrintVersionIfAsked("cairn-csi", args)) return 0;
  auto client = cairn::ClientOptionsFromEnv();
  if (!client.ok()) {
    std::fprintf(stderr, "cairn-csi: %s\n", std::string(client.status().message()).c_str());
    return 1;
  }
  auto options = cairn::csi::ParseCsiArgs(args, *client);
  if (cairn::IsHelpRequested(options.status())) {
    std::fputs(cairn::csi::kCsiUsage, stdout);
    return 0;
  }
  if (!options.ok()) {
    std::fprintf(stderr, "cairn-csi: %s\n%s", std::string(options.status().message()).c_str(),
                 cairn::csi::kCsiUsage);
    return 2;
  }
  return cairn::csi::RunPlugin(*options);
}
