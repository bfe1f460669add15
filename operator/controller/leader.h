// LeaderElector: leader election over a coordination.k8s.io/v1 Lease, with
// client-go's rules (leaderelection.LeaderElector):
//  - a candidate takes the lease when it is free or when its holder has not
//    renewed it for lease_duration, measured on the candidate's own clock
//    from when it last saw the record change (no clock-skew assumptions);
//  - every write is a PUT with the read resourceVersion, so of two
//    candidates only one wins a takeover (the other gets a Conflict);
//  - the leader renews every retry_period and steps down if it could not
//    renew for renew_deadline (< lease_duration), so it stops acting before
//    anyone else may start;
//  - Stop() while leading releases the lease (holder cleared), so a planned
//    restart hands over at once instead of after lease_duration.
//
// Thread-safe. IsLeader() is cheap (an atomic); callbacks run on the
// elector's thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "operator/kube/client.h"

namespace cairn::controller {

struct LeaderOptions {
  std::string ns = "default";
  std::string name = "cairn-operator";
  std::string identity;  // unique per replica; empty: hostname_pid_random
  std::chrono::milliseconds lease_duration{15000};
  std::chrono::milliseconds renew_deadline{10000};
  std::chrono::milliseconds retry_period{2000};
};

class LeaderElector {
 public:
  // InvalidArgument unless retry_period < renew_deadline < lease_duration.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<LeaderElector>> Start(
      kube::Client* kube, LeaderOptions options, std::function<void(bool leading)> on_change);
  ~LeaderElector();
  LeaderElector(const LeaderElector&) = delete;
  LeaderElector& operator=(const LeaderElector&) = delete;

  bool IsLeader() const { return leading_.load(); }
  // OK once the lease has been read or written within lease_duration
  // (we know who leads); Unavailable otherwise. For /readyz.
  [[nodiscard]] absl::Status LeaseState() const;
  const std::string& identity() const { return options_.identity; }
  // Releases the lease if held and stops the loop. Idempotent.
  void Stop();

 private:
  LeaderElector(kube::Client* kube, LeaderOptions options, std::function<void(bool)> on_change);
  void Loop();
  // One acquire-or-renew attempt: true if we hold the lease afterwards.
  absl::StatusOr<bool> TryAcquireOrRenew();
  void SetLeading(bool leading);
  void Release();

  kube::Client* const kube_;
  LeaderOptions options_;
  const std::function<void(bool)> on_change_;
  std::atomic<bool> leading_{false};
  std::thread thread_;

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // What we last saw in the lease, and when (our steady clock) it changed.
  std::string observed_record_ ABSL_GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point observed_at_ ABSL_GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point last_contact_ ABSL_GUARDED_BY(mu_);
  bool contacted_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace cairn::controller
