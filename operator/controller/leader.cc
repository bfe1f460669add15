#include "operator/controller/leader.h"

#include <unistd.h>

#include <random>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/log.h"
#include "core/status.h"
#include "operator/kube/errors.h"

namespace cairn::controller {
namespace {

using kube::Json;
using Clock = std::chrono::steady_clock;

const kube::Resource kLease{"coordination.k8s.io", "v1", "leases"};

std::string MicroTime(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E6SZ", t, absl::UTCTimeZone());
}

std::string DefaultIdentity() {
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  std::random_device rd;
  return absl::StrCat(host, "_", ::getpid(), "_", absl::Hex(rd(), absl::kZeroPad8));
}

}  // namespace

LeaderElector::LeaderElector(kube::Client* kube, LeaderOptions options,
                             std::function<void(bool)> on_change)
    : kube_(kube), options_(std::move(options)), on_change_(std::move(on_change)) {}

absl::StatusOr<std::unique_ptr<LeaderElector>> LeaderElector::Start(
    kube::Client* kube, LeaderOptions options, std::function<void(bool)> on_change) {
  if (!(options.retry_period < options.renew_deadline &&
        options.renew_deadline < options.lease_duration)) {
    return absl::InvalidArgumentError(
        "leader election needs retry period < renew deadline < lease duration");
  }
  if (options.identity.empty()) options.identity = DefaultIdentity();
  std::unique_ptr<LeaderElector> e(new LeaderElector(kube, std::move(options), std::move(on_change)));
  e->thread_ = std::thread([p = e.get()] { p->Loop(); });
  return e;
}

LeaderElector::~LeaderElector() { Stop(); }

absl::Status LeaderElector::LeaseState() const {
  absl::MutexLock lock(&mu_);
  if (!contacted_) return absl::UnavailableError("leader lease not read yet");
  if (Clock::now() - last_contact_ > options_.lease_duration) {
    return absl::UnavailableError("leader lease not reachable for longer than the lease duration");
  }
  return absl::OkStatus();
}

void LeaderElector::SetLeading(bool leading) {
  if (leading_.exchange(leading) == leading) return;
  CAIRN_LOG_INFO("leader election: %s %s lease %s/%s", options_.identity,
                 leading ? "acquired" : "lost", options_.ns, options_.name);
  if (on_change_) on_change_(leading);
}

absl::StatusOr<bool> LeaderElector::TryAcquireOrRenew() {
  const std::string path = kube::ResourcePath(kLease, options_.ns, options_.name);
  const int64_t duration_s = std::max<int64_t>(
      1, std::chrono::duration_cast<std::chrono::seconds>(options_.lease_duration).count());
  const std::string now = MicroTime(absl::Now());
  absl::StatusOr<Json> got = kube_->Get(path);
  if (kube::IsNotFound(got.status())) {
    Json lease = {{"apiVersion", "coordination.k8s.io/v1"},
                  {"kind", "Lease"},
                  {"metadata", {{"name", options_.name}, {"namespace", options_.ns}}},
                  {"spec",
                   {{"holderIdentity", options_.identity},
                    {"leaseDurationSeconds", duration_s},
                    {"acquireTime", now},
                    {"renewTime", now},
                    {"leaseTransitions", 0}}}};
    absl::Status s = kube_->Create(kube::ResourcePath(kLease, options_.ns), lease).status();
    if (kube::IsAlreadyExists(s)) return false;  // someone was faster
    if (!s.ok()) return s;
    absl::MutexLock lock(&mu_);
    contacted_ = true;
    last_contact_ = Clock::now();
    return true;
  }
  if (!got.ok()) return got.status();
  Json lease = *std::move(got);
  std::string holder = kube::GetStringAt(lease, {"spec", "holderIdentity"});
  std::string record = absl::StrCat(holder, "|", kube::GetStringAt(lease, {"spec", "renewTime"}));
  int64_t held_for_s = kube::GetIntAt(lease, {"spec", "leaseDurationSeconds"}, duration_s);
  bool expired;
  {
    absl::MutexLock lock(&mu_);
    contacted_ = true;
    last_contact_ = Clock::now();
    if (record != observed_record_) {
      observed_record_ = record;
      observed_at_ = Clock::now();
    }
    expired = Clock::now() - observed_at_ > std::chrono::seconds(held_for_s);
  }
  bool mine = holder == options_.identity;
  if (!holder.empty() && !mine && !expired) return false;
  Json& spec = lease["spec"];
  if (!mine) {
    spec["acquireTime"] = now;
    spec["leaseTransitions"] = kube::GetIntAt(lease, {"spec", "leaseTransitions"}) + 1;
  }
  spec["holderIdentity"] = options_.identity;
  spec["leaseDurationSeconds"] = duration_s;
  spec["renewTime"] = now;
  absl::StatusOr<Json> updated = kube_->Update(path, lease);
  if (kube::IsConflict(updated.status())) return false;
  if (!updated.ok()) return updated.status();
  absl::MutexLock lock(&mu_);
  observed_record_ = absl::StrCat(options_.identity, "|", now);
  observed_at_ = Clock::now();
  return true;
}

void LeaderElector::Loop() {
  Clock::time_point last_renew{};
  while (true) {
    absl::StatusOr<bool> held = TryAcquireOrRenew();
    if (!held.ok()) {
      CAIRN_LOG_WARNING("leader election: %s", held.status().ToString());
    }
    if (held.ok() && *held) {
      last_renew = Clock::now();
      SetLeading(true);
    } else if (IsLeader() && Clock::now() - last_renew > options_.renew_deadline) {
      SetLeading(false);  // could not renew in time: stop acting now
    } else if (held.ok() && !*held) {
      SetLeading(false);
    }
    absl::MutexLock lock(&mu_);
    auto stopped = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
    mu_.AwaitWithTimeout(absl::Condition(&stopped), absl::FromChrono(options_.retry_period));
    if (stop_) return;
  }
}

void LeaderElector::Release() {
  const std::string path = kube::ResourcePath(kLease, options_.ns, options_.name);
  absl::StatusOr<Json> got = kube_->Get(path);
  if (!got.ok() || kube::GetStringAt(*got, {"spec", "holderIdentity"}) != options_.identity) return;
  Json lease = *std::move(got);
  lease["spec"]["holderIdentity"] = "";
  lease["spec"]["leaseDurationSeconds"] = 1;
  lease["spec"]["renewTime"] = MicroTime(absl::Now());
  absl::Status s = kube_->Update(path, lease).status();
  if (!s.ok()) CAIRN_LOG_WARNING("leader election: releasing the lease: %s", s.ToString());
}

void LeaderElector::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return;
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
  if (IsLeader()) {
    SetLeading(false);
    Release();
  }
}

}  // namespace cairn::controller
