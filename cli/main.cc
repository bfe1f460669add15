// cairn: the command line (see cli/commands.h).
#include <string>
#include <vector>

#include "cli/commands.h"

int main(int argc, char** argv) {
  return cairn::cli::Main(std::vector<std::string>(argv + 1, argv + argc));
}
