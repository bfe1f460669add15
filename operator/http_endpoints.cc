#include "operator/http_endpoints.h"

#include <httplib.h>

#include "absl/strings/str_cat.h"
#include "core/crypto.h"
#include "core/grpc_server.h"
#include "core/status.h"
#include "operator/server.h"

namespace cairn::operator_ {

absl::StatusOr<std::unique_ptr<HttpEndpoints>> HttpEndpoints::Start(const Options& options,
                                                                    metrics::Registry* registry) {
  CAIRN_ASSIGN_OR_RETURN(HostPort where, SplitHostPort(options.listen));
  std::unique_ptr<HttpEndpoints> endpoints(new HttpEndpoints());
  endpoints->http_ = std::make_unique<httplib::Server>();
  HttpEndpoints* self = endpoints.get();
  const std::string expected = options.token.empty() ? "" : absl::StrCat("Bearer ", options.token);
  endpoints->http_->Get("/metrics", [registry, expected](const httplib::Request& req,
                                                         httplib::Response& res) {
    if (!expected.empty() && !SameSecret(req.get_header_value("Authorization"), expected)) {
      res.status = 401;
      res.set_header("WWW-Authenticate", "Bearer");
      res.set_content("unauthenticated: /metrics needs the bearer token\n", "text/plain");
      return;
    }
    res.set_content(registry->Render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  endpoints->http_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  endpoints->http_->Get("/readyz", [self](const httplib::Request&, httplib::Response& res) {
    absl::Status ready = self->Ready();
    if (ready.ok()) {
      res.set_content("ok\n", "text/plain");
    } else {
      res.status = 503;
      res.set_content(absl::StrCat("not ready: ", ready.message(), "\n"), "text/plain");
    }
  });
  if (options.add_routes) options.add_routes(*endpoints->http_);
  const int bound = where.port == 0
                        ? endpoints->http_->bind_to_any_port(where.host)
                        : (endpoints->http_->bind_to_port(where.host, where.port) ? where.port : -1);
  if (bound <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen for metrics on ", options.listen));
  }
  endpoints->port_ = bound;
  httplib::Server* server = endpoints->http_.get();
  endpoints->thread_ = std::thread([server] { server->listen_after_bind(); });
  return endpoints;
}

HttpEndpoints::~HttpEndpoints() { Stop(); }

void HttpEndpoints::AddReadinessCheck(const std::string& name, ReadinessCheck check) {
  absl::MutexLock lock(&mu_);
  for (auto& [n, c] : checks_) {
    if (n == name) {
      c = std::move(check);
      return;
    }
  }
  checks_.emplace_back(name, std::move(check));
}

absl::Status HttpEndpoints::Ready() const {
  std::vector<std::pair<std::string, ReadinessCheck>> checks;
  {
    absl::MutexLock lock(&mu_);
    checks = checks_;
  }
  std::string failed;
  for (const auto& [name, check] : checks) {
    absl::Status s = check();
    if (!s.ok()) absl::StrAppend(&failed, failed.empty() ? "" : "\n", name, ": ", s.message());
  }
  if (failed.empty()) return absl::OkStatus();
  return absl::UnavailableError(failed);
}

void HttpEndpoints::Stop() {
  if (stopped_.exchange(true)) return;
  if (http_) http_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace cairn::operator_
