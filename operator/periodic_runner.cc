#include "operator/periodic_runner.h"

#include "core/log.h"

namespace cairn::operator_ {

PeriodicRunner::~PeriodicRunner() { Stop(); }

void PeriodicRunner::Add(std::string name, absl::Duration interval,
                         std::function<absl::Status()> task) {
  if (interval <= absl::ZeroDuration()) return;
  absl::MutexLock lock(&mu_);
  if (stop_) return;
  threads_.emplace_back([this, name = std::move(name), interval, task = std::move(task)] {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        auto stopped = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
        mu_.AwaitWithTimeout(absl::Condition(&stopped), interval);
        if (stop_) return;
      }
      if (absl::Status s = task(); !s.ok()) {
        CAIRN_LOG_WARNING("%s failed (next run in %s): %s", name, absl::FormatDuration(interval),
                          s.ToString());
      }
    }
  });
}

void PeriodicRunner::Stop() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    threads.swap(threads_);
  }
  for (std::thread& t : threads) t.join();
}

}  // namespace cairn::operator_
