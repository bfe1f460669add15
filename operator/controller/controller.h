// VolumeController: drives VolumeReconciler from the API server.
//
//  - An informer thread lists Volumes in every namespace, then watches from
//    the list's resourceVersion with bookmarks; a watch the server ends is
//    resumed from the last resourceVersion seen, a 410 Gone re-lists, and
//    other failures retry with exponential backoff and jitter. Every
//    Volume seen is queued.
//  - A work queue holds each key (namespace/name) at most once; a key is
//    never reconciled by two workers at once. A failed reconcile re-queues
//    the key after its own backoff; success resets it.
//  - A resync re-queues every known key each `resync`, and a commit poller
//    re-queues a key soon (`head_poll`) after its volume's head moves, so
//    status counts follow commits without waiting for a resync.
//  - Workers only reconcile while `may_act()` is true (the leader lease, or
//    always without election); the informer keeps its cache warm anyway so
//    a new leader starts at once. A reconcile already running when the
//    lease is lost finishes; the elector steps down at its renew deadline,
//    before the lease expires for others, which bounds that overlap.
//
// Thread-safe. Stop() joins every thread; the client, engine and metrics
// must outlive the controller.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "operator/controller/metrics.h"
#include "operator/controller/volume_reconciler.h"
#include "operator/kube/backoff.h"
#include "operator/kube/client.h"

namespace cairn::controller {

struct ControllerOptions {
  int workers = 2;
  std::chrono::milliseconds resync{30000};
  std::chrono::milliseconds head_poll{1000};
  std::chrono::milliseconds backoff_initial{200};
  std::chrono::milliseconds backoff_max{30000};  // per-key reconcile retries
  // List/watch retries: capped low, so an API server that comes back is
  // seen within seconds (a list of Volumes is cheap).
  std::chrono::milliseconds watch_backoff_max{5000};
  std::chrono::seconds watch_timeout{300};
};

class VolumeController {
 public:
  VolumeController(kube::Client* kube, Engine* engine, ControllerMetrics* metrics,
                   ControllerOptions options, std::function<bool()> may_act);
  ~VolumeController();
  VolumeController(const VolumeController&) = delete;
  VolumeController& operator=(const VolumeController&) = delete;

  void Start();
  void Stop();
  // Wakes workers (e.g. on becoming leader) and re-queues every known key.
  void RequeueAll();
  // OK while the last list or watch call reached the API server.
  [[nodiscard]] absl::Status ApiState() const;

 private:
  struct Item {
    std::chrono::steady_clock::time_point due;
  };
  void InformerLoop();
  void WorkerLoop();
  void TickLoop();
  void Enqueue(const std::string& key, std::chrono::milliseconds after = {});
  void Observe(const kube::Json& obj, bool deleted);
  void SetApiOk(bool ok, const absl::Status& why = absl::OkStatus());
  bool Stopping() const;

  kube::Client* const kube_;
  Engine* const engine_;
  ControllerMetrics* const metrics_;
  const ControllerOptions options_;
  const std::function<bool()> may_act_;
  VolumeReconciler reconciler_;

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool api_ok_ ABSL_GUARDED_BY(mu_) = false;
  std::string api_error_ ABSL_GUARDED_BY(mu_) = "not connected yet";
  std::map<std::string, Item> queue_ ABSL_GUARDED_BY(mu_);  // key -> due time
  std::set<std::string> active_ ABSL_GUARDED_BY(mu_);       // being reconciled
  std::set<std::string> dirty_ ABSL_GUARDED_BY(mu_);        // queued while active
  std::set<std::string> known_ ABSL_GUARDED_BY(mu_);        // every Volume seen
  // For the commit poller: the head seq each key's status reports.
  std::map<std::string, std::pair<std::string, uint64_t>> heads_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, kube::Backoff> backoff_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

}  // namespace cairn::controller
