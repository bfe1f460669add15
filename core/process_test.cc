#include "core/process.h"

#include <signal.h>

#include <thread>

#include "gtest/gtest.h"

namespace cairn {
namespace {

// The CLI and the server asked for a 64 MiB mmap threshold, which glibc
// rejects on 64-bit (its maximum is 32 MiB), so chunk buffers were mmapped
// after all.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CAIRN_SANITIZER_ALLOCATOR 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CAIRN_SANITIZER_ALLOCATOR 1
#endif
#endif

TEST(ProcessTest, EveryAllocatorSettingIsAccepted) {
#ifdef CAIRN_SANITIZER_ALLOCATOR
  GTEST_SKIP() << "the sanitizer's allocator replaces glibc's, and with it mallopt";
#else
  EXPECT_TRUE(TuneAllocatorForChunks());
#endif
}

TEST(ProcessTest, ABlockedTerminationSignalIsWaitedFor) {
  BlockTerminationSignals();
  std::thread sender([] { ::kill(::getpid(), SIGTERM); });
  EXPECT_EQ(WaitForTerminationSignal(), SIGTERM);
  sender.join();
}

}  // namespace
}  // namespace cairn
