#include "core/async.h"

#include <pwd.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"

namespace cairn {
namespace {

TEST(RunAsyncTest, RunsOnAnotherThread) {
  std::future<int> f = RunAsync([](int a, int b) { return a + b; }, 2, 3);
  EXPECT_EQ(f.get(), 5);
}

// With no thread to be had, std::async throws (which in a gRPC handler is
// std::terminate); RunAsync still delivers the result.
TEST(RunAsyncTest, SurvivesThreadCreationFailure) {
  if (::geteuid() != 0) {
    if (const char* ci = std::getenv("CI"); ci != nullptr && std::string(ci) == "true") {
      FAIL() << "needs root to drop to an unprivileged user with no process quota";
    }
    GTEST_SKIP() << "needs root to drop to an unprivileged user with no process quota";
  }
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // RLIMIT_NPROC binds only unprivileged users.
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(10);
    struct rlimit none = {0, 0};
    if (::setrlimit(RLIMIT_NPROC, &none) != 0) ::_exit(11);
    bool threw = false;
    try {
      std::async(std::launch::async, [] { return 1; }).get();
    } catch (const std::system_error&) {
      threw = true;
    }
    if (!threw) ::_exit(12);  // the limit did not bite: the test would prove nothing
    std::future<int> f = RunAsync([](int a) { return a * 2; }, 21);
    ::_exit(f.get() == 42 ? 0 : 13);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child died: " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace cairn
