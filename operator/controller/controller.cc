#include "operator/controller/controller.h"

#include "absl/strings/str_cat.h"
#include "core/log.h"
#include "operator/kube/errors.h"

namespace cairn::controller {
namespace {

using Clock = std::chrono::steady_clock;

std::pair<std::string, std::string> SplitKey(const std::string& key) {
  size_t slash = key.find('/');
  return {key.substr(0, slash), key.substr(slash + 1)};
}

}  // namespace

VolumeController::VolumeController(kube::Client* kube, Engine* engine, ControllerMetrics* metrics,
                                   ControllerOptions options, std::function<bool()> may_act)
    : kube_(kube),
      engine_(engine),
      metrics_(metrics),
      options_(options),
      may_act_(std::move(may_act)),
      reconciler_(kube, engine, metrics) {}

VolumeController::~VolumeController() { Stop(); }

void VolumeController::Start() {
  threads_.emplace_back([this] { InformerLoop(); });
  threads_.emplace_back([this] { TickLoop(); });
  for (int i = 0; i < options_.workers; ++i) threads_.emplace_back([this] { WorkerLoop(); });
}

void VolumeController::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return;
    stop_ = true;
  }
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

bool VolumeController::Stopping() const {
  absl::MutexLock lock(&mu_);
  return stop_;
}

absl::Status VolumeController::ApiState() const {
  absl::MutexLock lock(&mu_);
  if (api_ok_) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat("Kubernetes API server: ", api_error_));
}

void VolumeController::SetApiOk(bool ok, const absl::Status& why) {
  absl::MutexLock lock(&mu_);
  api_ok_ = ok;
  if (!ok) api_error_ = std::string(why.message());
}

void VolumeController::Enqueue(const std::string& key, std::chrono::milliseconds after) {
  absl::MutexLock lock(&mu_);
  Clock::time_point due = Clock::now() + after;
  if (active_.count(key) > 0) {
    dirty_.insert(key);
    return;
  }
  auto it = queue_.find(key);
  if (it == queue_.end() || it->second.due > due) queue_[key] = Item{due};
}

void VolumeController::RequeueAll() {
  std::set<std::string> keys;
  {
    absl::MutexLock lock(&mu_);
    keys = known_;
  }
  for (const std::string& k : keys) Enqueue(k);
}

void VolumeController::Observe(const kube::Json& obj, bool deleted) {
  std::string key = absl::StrCat(kube::GetStringAt(obj, {"metadata", "namespace"}), "/",
                                 kube::GetStringAt(obj, {"metadata", "name"}));
  {
    absl::MutexLock lock(&mu_);
    if (deleted) {
      known_.erase(key);
    } else {
      known_.insert(key);
    }
  }
  Enqueue(key);
}

void VolumeController::InformerLoop() {
  const std::string path = kube::ResourcePath(VolumeResource(), "");
  kube::Backoff backoff(options_.backoff_initial, options_.watch_backoff_max);
  std::string rv;  // empty: list first
  while (!Stopping()) {
    if (rv.empty()) {
      absl::StatusOr<kube::ListResult> list = kube_->List(path);
      if (!list.ok()) {
        SetApiOk(false, list.status());
        if (list.status().code() == absl::StatusCode::kCancelled) return;
        CAIRN_LOG_WARNING("listing Volumes: %s", list.status().ToString());
        auto wait = backoff.Next();
        absl::MutexLock lock(&mu_);
        auto stopped = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
        mu_.AwaitWithTimeout(absl::Condition(&stopped), absl::FromChrono(wait));
        continue;
      }
      SetApiOk(true);
      std::set<std::string> listed;
      for (const kube::Json& item : list->items) {
        listed.insert(absl::StrCat(kube::GetStringAt(item, {"metadata", "namespace"}), "/",
                                   kube::GetStringAt(item, {"metadata", "name"})));
      }
      std::set<std::string> vanished;
      {
        absl::MutexLock lock(&mu_);
        for (const std::string& k : known_) {
          if (listed.count(k) == 0) vanished.insert(k);
        }
        known_ = listed;
      }
      // Deleted while we were not watching: a reconcile drops their gauges.
      for (const std::string& k : vanished) Enqueue(k);
      for (const std::string& k : listed) Enqueue(k);
      rv = list->resource_version;
    }
    kube::WatchOptions wo;
    wo.resource_version = rv;
    wo.allow_bookmarks = true;
    wo.timeout = options_.watch_timeout;
    bool got_event = false;
    absl::Status s = kube_->Watch(path, wo, [&](const kube::WatchEvent& e) {
      if (!got_event) {
        got_event = true;
        SetApiOk(true);
        backoff.Reset();
      }
      std::string next = kube::GetStringAt(e.object, {"metadata", "resourceVersion"});
      if (!next.empty()) rv = next;
      if (e.type != kube::EventType::kBookmark) {
        Observe(e.object, e.type == kube::EventType::kDeleted);
      }
      return !Stopping();
    });
    if (Stopping() || s.code() == absl::StatusCode::kCancelled) return;
    if (s.ok()) {
      metrics_->watch_restarts.WithLabels({"closed"}).Increment();
      SetApiOk(true);
      continue;
    }
    if (kube::IsGone(s)) {
      CAIRN_LOG_INFO("Volume watch expired (%s); listing again", s.ToString());
      metrics_->watch_restarts.WithLabels({"expired"}).Increment();
      rv.clear();
      continue;
    }
    metrics_->watch_restarts.WithLabels({"error"}).Increment();
    SetApiOk(false, s);
    CAIRN_LOG_WARNING("watching Volumes: %s", s.ToString());
    auto wait = backoff.Next();
    absl::MutexLock lock(&mu_);
    auto stopped = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
    mu_.AwaitWithTimeout(absl::Condition(&stopped), absl::FromChrono(wait));
  }
}

void VolumeController::TickLoop() {
  Clock::time_point next_resync = Clock::now() + options_.resync;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto stopped = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
      mu_.AwaitWithTimeout(absl::Condition(&stopped), absl::FromChrono(options_.head_poll));
      if (stop_) return;
    }
    if (!may_act_()) continue;
    if (Clock::now() >= next_resync) {
      next_resync = Clock::now() + options_.resync;
      RequeueAll();
      continue;
    }
    std::map<std::string, std::pair<std::string, uint64_t>> heads;
    {
      absl::MutexLock lock(&mu_);
      heads = heads_;
    }
    for (const auto& [key, id_seq] : heads) {
      absl::StatusOr<SnapshotRecord> head = engine_->Head(id_seq.first);
      // A moved head, or a volume that vanished: reconcile to report it.
      if (!head.ok() || head->seq != id_seq.second) Enqueue(key);
    }
  }
}

void VolumeController::WorkerLoop() {
  while (true) {
    std::string key;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        if (stop_) return true;
        for (const auto& [k, item] : queue_) {
          if (item.due <= Clock::now()) return true;
        }
        return false;
      };
      // Due times pass without a signal; wake up now and then to look.
      mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(100));
      if (stop_) return;
      if (!may_act_()) continue;
      for (auto it = queue_.begin(); it != queue_.end(); ++it) {
        if (it->second.due <= Clock::now()) {
          key = it->first;
          queue_.erase(it);
          break;
        }
      }
      if (key.empty()) continue;
      active_.insert(key);
    }
    auto [ns, name] = SplitKey(key);
    Clock::time_point start = Clock::now();
    absl::StatusOr<ReconcileResult> r = reconciler_.Reconcile(ns, name);
    metrics_->reconcile_duration.WithLabels({}).Observe(
        std::chrono::duration<double>(Clock::now() - start).count());
    metrics_->reconciles.WithLabels({r.ok() ? "success" : "error"}).Increment();
    std::chrono::milliseconds retry{0};
    bool requeue = false;
    {
      absl::MutexLock lock(&mu_);
      active_.erase(key);
      if (r.ok()) {
        backoff_.erase(key);
        if (r->gone) {
          heads_.erase(key);
          known_.erase(key);
        } else if (r->volume_id.has_value()) {
          heads_[key] = {*r->volume_id, r->head_seq};
        } else {
          heads_.erase(key);
        }
      } else {
        auto it = backoff_.try_emplace(key, options_.backoff_initial, options_.backoff_max).first;
        retry = it->second.Next();
        requeue = true;
      }
      if (dirty_.erase(key) > 0) requeue = true;
    }
    if (!r.ok()) {
      CAIRN_LOG_WARNING("reconciling volume %s (retry in %d ms): %s", key, retry.count(),
                        r.status().ToString());
    }
    if (requeue) Enqueue(key, retry);
  }
}

}  // namespace cairn::controller
