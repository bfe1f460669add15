#include "operator/kube/backoff.h"

#include <algorithm>

namespace cairn::kube {

Backoff::Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max, double jitter,
                 uint64_t seed)
    : initial_(initial), max_(std::max(max, initial)), jitter_(jitter), current_(initial),
      rng_(seed) {}

std::chrono::milliseconds Backoff::Next() {
  std::chrono::milliseconds base = current_;
  current_ = std::min(max_, current_ * 2);
  ++attempts_;
  std::uniform_real_distribution<double> spread(1.0 - jitter_, 1.0 + jitter_);
  auto ms = static_cast<int64_t>(static_cast<double>(base.count()) * spread(rng_));
  return std::chrono::milliseconds(std::max<int64_t>(1, ms));
}

void Backoff::Reset() {
  current_ = initial_;
  attempts_ = 0;
}

}  // namespace cairn::kube
