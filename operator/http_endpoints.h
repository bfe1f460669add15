// HttpEndpoints: the control plane's HTTP side — /metrics (Prometheus text
// from a Registry), /healthz (the process answers) and /readyz (every
// registered readiness check passes). Components plug in their own checks
// with one call: AddReadinessCheck("store", [&] { return ...; }).
//
// /readyz runs the checks on each request (they must be cheap and
// bounded) and answers 200 "ok", or 503 with one line per failing check
// ("NAME: message"). With no checks registered it answers 200.
//
// Access: when `token` is set, /metrics requires "Authorization: Bearer
// <token>" (it names namespaces and volumes); /healthz and /readyz stay
// open for probes and reveal nothing.
//
// Other parts of the control plane (the file browser, operator/web_ui.h)
// add their own routes through Options::add_routes, and protect them
// themselves.
//
// Thread-safe. Start returns once the port is bound; Stop (idempotent, also
// from the destructor) joins the serving thread. `registry` must outlive it.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/metrics.h"

namespace httplib {
class Server;
}

namespace cairn::operator_ {

using ReadinessCheck = std::function<absl::Status()>;

class HttpEndpoints {
 public:
  struct Options {
    std::string listen;  // HOST:PORT; port 0 picks one
    std::string token;   // empty: /metrics open
    // Called once, before the port is bound, to add more routes.
    std::function<void(httplib::Server&)> add_routes;
  };
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<HttpEndpoints>> Start(
      const Options& options, metrics::Registry* registry);
  ~HttpEndpoints();
  HttpEndpoints(const HttpEndpoints&) = delete;
  HttpEndpoints& operator=(const HttpEndpoints&) = delete;

  // Adds a named check to /readyz (a later one with the same name replaces it).
  void AddReadinessCheck(const std::string& name, ReadinessCheck check);
  // The checks' verdict, as /readyz serves it.
  [[nodiscard]] absl::Status Ready() const;

  void Stop();
  int port() const { return port_; }

 private:
  HttpEndpoints() = default;
  mutable absl::Mutex mu_;
  std::vector<std::pair<std::string, ReadinessCheck>> checks_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<bool> stopped_{false};
};

}  // namespace cairn::operator_
