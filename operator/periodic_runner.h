// PeriodicRunner: runs named tasks every `interval` on their own threads
// (garbage collection, and whatever other components add with one call:
// runner.Add("resync", absl::Minutes(1), [&] { return ...; })). A failing
// run is logged and the task runs again at the next interval.
//
// Thread-safe. Stop (idempotent, also from the destructor) wakes every task
// thread and joins it; a run in progress finishes first. Add after Stop is
// ignored.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace cairn::operator_ {

class PeriodicRunner {
 public:
  PeriodicRunner() = default;
  ~PeriodicRunner();
  PeriodicRunner(const PeriodicRunner&) = delete;
  PeriodicRunner& operator=(const PeriodicRunner&) = delete;

  // First run one interval from now. A non-positive interval is ignored.
  void Add(std::string name, absl::Duration interval, std::function<absl::Status()> task);
  void Stop();

 private:
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace cairn::operator_
