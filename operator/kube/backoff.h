// Exponential backoff with jitter (client-go's wait.Backoff): each Next()
// doubles the delay up to `max`, then spreads it by ±jitter so that many
// clients retrying the same failure do not arrive together. Reset() after a
// success. Not thread-safe; one per retry loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

namespace cairn::kube {

class Backoff {
 public:
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max,
          double jitter = 0.2, uint64_t seed = std::random_device{}());
  std::chrono::milliseconds Next();
  void Reset();
  int attempts() const { return attempts_; }

 private:
  const std::chrono::milliseconds initial_;
  const std::chrono::milliseconds max_;
  const double jitter_;
  std::chrono::milliseconds current_;
  int attempts_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace cairn::kube
