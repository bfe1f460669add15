// cairn-operator: the control plane. Today it runs standalone on a data
// directory (the embedded default); flags are shared with `cairn server`.
#include <cstdio>
#include <string>
#include <vector>

#include <signal.h>

#include "core/process.h"
#include "operator/flags.h"
#include "operator/server.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const std::string& a : args) {
    if (a == "-h" || a == "--help") {
      std::printf("Usage: cairn-operator --data DIR [options]\n\nThe Cairn control plane "
                  "(Volume API, metrics, garbage collection).\n\nOptions:\n%s",
                  cairn::operator_::ServerFlagsHelp().c_str());
      return 0;
    }
  }
  absl::StatusOr<cairn::operator_::ServerOptions> options =
      cairn::operator_::ParseServerFlags(args);
  if (!options.ok()) {
    std::fprintf(stderr, "cairn-operator: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  // Before any thread starts: only the wait below takes the signals.
  cairn::BlockTerminationSignals();
  cairn::TuneAllocatorForChunks();
  absl::Status status = cairn::operator_::RunServer(*options, [] {
    int sig = cairn::WaitForTerminationSignal();
    std::fprintf(stderr, "cairn-operator: %s received, shutting down\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
  });
  if (!status.ok()) {
    std::fprintf(stderr, "cairn-operator: error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
