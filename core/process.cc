#include "core/process.h"

#include <malloc.h>
#include <pthread.h>
#include <signal.h>

namespace cairn {
namespace {

sigset_t TerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

bool TuneAllocatorForChunks() {
  bool ok = ::mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1;
  ok = ::mallopt(M_TRIM_THRESHOLD, 256 << 20) == 1 && ok;
  ok = ::mallopt(M_TOP_PAD, 64 << 20) == 1 && ok;
  return ok;
}

void BlockTerminationSignals() {
  sigset_t set = TerminationSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

int WaitForTerminationSignal() {
  sigset_t set = TerminationSignals();
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

}  // namespace cairn
