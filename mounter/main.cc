// cairn-mount: flags → MountOptions → RunMounter (mounter/mounter.h).
#include <cstdio>
#include <string>
#include <vector>

#include "core/process.h"
#include "core/rpc_client.h"
#include "core/version.h"
#include "mounter/mounter.h"

int main(int argc, char** argv) {
  cairn::TuneAllocatorForChunks();
  std::vector<std::string> args(argv + 1, argv + argc);
  if (cairn::PrintVersionIfAsked("cairn-mount", args)) return 0;
  auto client = cairn::ClientOptionsFromEnv();
  if (!client.ok()) {
    std::fprintf(stderr, "cairn-mount: %s\n", std::string(client.status().message()).c_str());
    return 1;
  }
  auto options = cairn::mounter::ParseMountArgs(args, *client);
  if (!options.ok()) {
    std::fprintf(stderr, "cairn-mount: %s\n%s", std::string(options.status().message()).c_str(),
                 cairn::mounter::kMountUsage);
    return 2;
  }
  return cairn::mounter::RunMounter(*options);
}
