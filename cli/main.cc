// cairn: the command line (see cli/commands.h).
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/process.h"

int main(int argc, char** argv) {
  // Transfers, `cairn mount` and `cairn server` all move 4 MiB chunks.
  cairn::TuneAllocatorForChunks();
  return cairn::cli::Main(std::vector<std::string>(argv + 1, argv + argc));
}
