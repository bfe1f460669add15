#include "core/process.h"

#include <signal.h>

#include <thread>

#include "gtest/gtest.h"

namespace cairn {
namespace {

// The CLI and the server asked for a 64 MiB mmap threshold, which glibc
// rejects on 64-bit (its maximum is 32 MiB), so chunk buffers were mmapped
// after all.
TEST(ProcessTest, EveryAllocatorSettingIsAccepted) { EXPECT_TRUE(TuneAllocatorForChunks()); }

TEST(ProcessTest, ABlockedTerminationSignalIsWaitedFor) {
  BlockTerminationSignals();
  std::thread sender([] { ::kill(::getpid(), SIGTERM); });
  EXPECT_EQ(WaitForTerminationSignal(), SIGTERM);
  sender.join();
}

}  // namespace
}  // namespace cairn
