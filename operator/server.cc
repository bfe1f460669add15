#include "operator/server.h"

#include <httplib.h>
#include <malloc.h>
#include <pthread.h>
#include <arpa/inet.h>
#include <signal.h>

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/log.h"
#include "core/status.h"
#include "core/grpc_server.h"
#include "core/rpc_client.h"
#include "operator/service_metrics.h"
#include "operator/volume_service.h"

namespace cairn::operator_ {
namespace {

// Commits of large trees (10,000+ entries with inline data) are big.
constexpr int kMaxReceiveBytes = 1 << 30;


struct HostPort {
  std::string host;
  int port = 0;
};

absl::StatusOr<HostPort> SplitHostPort(const std::string& address) {
  HostPort hp;
  std::string port;
  if (!address.empty() && address[0] == '[') {
    size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      return absl::InvalidArgumentError(absl::StrCat("bad address '", address, "' (want HOST:PORT)"));
    }
    hp.host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    size_t colon = address.rfind(':');
    if (colon == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("bad address '", address, "' (want HOST:PORT)"));
    }
    hp.host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  if (!absl::SimpleAtoi(port, &hp.port) || hp.port < 0 || hp.port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("bad port in '", address, "'"));
  }
  return hp;
}

}  // namespace

absl::StatusOr<std::string> LoadServerToken(const std::string& token_file) {
  if (!token_file.empty()) return ReadTokenFile(token_file);
  if (const char* env = std::getenv("CAIRN_TOKEN"); env != nullptr && *env != '\0') {
    std::string token(absl::StripAsciiWhitespace(env));
    if (token.empty()) return absl::InvalidArgumentError("token from CAIRN_TOKEN is empty");
    return token;
  }
  if (const char* f = std::getenv("CAIRN_TOKEN_FILE"); f != nullptr && *f != '\0') {
    return ReadTokenFile(f);
  }
  return std::string();
}

bool IsLoopbackAddress(const std::string& host_port) {
  absl::StatusOr<HostPort> hp = SplitHostPort(host_port);
  if (!hp.ok()) return false;
  const std::string& h = hp->host;
  if (h == "localhost") return true;
  // Only a literal address: a DNS name such as "127.example.com" may
  // resolve to any interface.
  in_addr v4;
  if (::inet_pton(AF_INET, h.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  return ::inet_pton(AF_INET6, h.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

absl::Status ValidateListenAddress(const std::string& host_port) {
  return SplitHostPort(host_port).status();
}

struct Server::Impl {
  std::unique_ptr<DataDir> data;
  std::unique_ptr<ServiceMetrics> metrics;
  std::unique_ptr<VolumeServiceImpl> service;
  std::unique_ptr<GrpcServer> grpc;
  std::unique_ptr<httplib::Server> http;
  absl::Notification ready;
  absl::Mutex gc_mu;
  bool gc_stop ABSL_GUARDED_BY(gc_mu) = false;
};

Server::Server() : impl_(std::make_unique<Impl>()) {}

Server::~Server() {
  Shutdown();
}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options) {
  if (options.data_dir.empty()) return absl::InvalidArgumentError("--data DIR is required");
  CAIRN_ASSIGN_OR_RETURN(HostPort listen, SplitHostPort(options.listen));
  if (options.token.empty() && !IsLoopbackAddress(options.listen)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "refusing to listen on ", options.listen,
        " without a token: anyone who can reach it could read every volume. Pass --token-file "
        "FILE (or set CAIRN_TOKEN), or listen on 127.0.0.1"));
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key must be given together");
  }

  std::unique_ptr<Server> server(new Server());
  server->options_ = options;
  Impl& impl = *server->impl_;
  CAIRN_ASSIGN_OR_RETURN(impl.data, DataDir::Open(options.data_dir));
  impl.metrics = std::make_unique<ServiceMetrics>(server->registry_);
  impl.service =
      std::make_unique<VolumeServiceImpl>(&impl.data->engine(), impl.metrics.get(), options.token);
  if (absl::Status s = impl.service->RefreshVolumeGauges(); !s.ok()) {
    CAIRN_LOG_WARNING("reading volume sizes for metrics: %s", s.ToString());
  }

  GrpcServerOptions grpc_options;
  grpc_options.address = options.listen;
  grpc_options.tls_cert_file = options.tls_cert_file;
  grpc_options.tls_key_file = options.tls_key_file;
  grpc_options.max_message_bytes = kMaxReceiveBytes;
  CAIRN_ASSIGN_OR_RETURN(impl.grpc, GrpcServer::Start(grpc_options, {impl.service.get()}));
  server->port_ = impl.grpc->port();

  if (!options.metrics_listen.empty()) {
    CAIRN_ASSIGN_OR_RETURN(HostPort http, SplitHostPort(options.metrics_listen));
    impl.http = std::make_unique<httplib::Server>();
    metrics::Registry* registry = &server->registry_;
    Impl* impl_ptr = server->impl_.get();
    impl.http->Get("/metrics", [registry](const httplib::Request&, httplib::Response& res) {
      res.set_content(registry->Render(), "text/plain; version=0.0.4; charset=utf-8");
    });
    impl.http->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("ok\n", "text/plain");
    });
    impl.http->Get("/readyz", [impl_ptr](const httplib::Request&, httplib::Response& res) {
      if (impl_ptr->ready.HasBeenNotified()) {
        res.set_content("ok\n", "text/plain");
      } else {
        res.status = 503;
        res.set_content("not ready\n", "text/plain");
      }
    });
    int bound = http.port == 0 ? impl.http->bind_to_any_port(http.host)
                               : (impl.http->bind_to_port(http.host, http.port) ? http.port : -1);
    if (bound <= 0) {
      server->Shutdown();
      return absl::UnavailableError(
          absl::StrCat("cannot listen for metrics on ", options.metrics_listen));
    }
    server->metrics_port_ = bound;
    httplib::Server* http_server = impl.http.get();
    server->http_thread_ = std::thread([http_server] { http_server->listen_after_bind(); });
  }
  if (options.gc_interval.count() > 0) {
    server->gc_thread_ = std::thread([s = server.get()] { s->GcLoop(); });
  }
  impl.ready.Notify();
  CAIRN_LOG_INFO("cairn server: data %s, Volume API on %s (port %d)%s, metrics on %s",
                 options.data_dir.string(), options.listen, server->port_,
                 options.tls_cert_file.empty() ? "" : " with TLS",
                 options.metrics_listen.empty() ? "(off)" : options.metrics_listen);
  return server;
}

void Server::GcLoop() {
  while (true) {
    {
      absl::MutexLock lock(&impl_->gc_mu);
      auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(impl_->gc_mu) { return impl_->gc_stop; };
      impl_->gc_mu.AwaitWithTimeout(absl::Condition(&stop),
                                    absl::Seconds(options_.gc_interval.count()));
      if (impl_->gc_stop) return;
    }
    absl::StatusOr<GcStats> stats = impl_->data->engine().CollectGarbage(options_.gc_grace);
    if (!stats.ok()) {
      CAIRN_LOG_WARNING("garbage collection failed: %s", stats.status().ToString());
      continue;
    }
    impl_->metrics->gc_runs.WithLabels({}).Increment();
    impl_->metrics->gc_blobs_deleted.WithLabels({}).Increment(stats->blobs_deleted);
    if (stats->blobs_deleted > 0 || stats->volumes_purged > 0) {
      CAIRN_LOG_INFO("gc: %d blobs (%d bytes) deleted, %d deleted volumes purged",
                     stats->blobs_deleted, stats->bytes_freed, stats->volumes_purged);
    }
  }
}

void Server::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return;
    shutting_down_ = true;
  }
  if (impl_->grpc) {
    // In-flight calls get a few seconds to finish; then they are cancelled.
    impl_->grpc->Shutdown(absl::Seconds(5));
  }
  if (impl_->http) impl_->http->stop();
  if (http_thread_.joinable()) http_thread_.join();
  {
    absl::MutexLock lock(&impl_->gc_mu);
    impl_->gc_stop = true;
  }
  if (gc_thread_.joinable()) gc_thread_.join();
  impl_->grpc.reset();
  impl_->service.reset();
  impl_->data.reset();  // releases the data directory lock
  stopped_.Notify();
}

void Server::Wait() { stopped_.WaitForNotification(); }

absl::Status RunUntilSignal(const ServerOptions& options) {
  // Blocked before any thread starts, so every thread inherits the mask and
  // only sigwait below receives them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // Blobs are read and written as 4 MiB buffers; keep them off per-call
  // mmap (see cli/commands.cc Main for the measurement).
  ::mallopt(M_MMAP_THRESHOLD, 64 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 256 << 20);
  ::mallopt(M_TOP_PAD, 64 << 20);
  CAIRN_ASSIGN_OR_RETURN(std::unique_ptr<Server> server, Server::Start(options));
  int sig = 0;
  sigwait(&set, &sig);
  CAIRN_LOG_INFO("%s received, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
  server->Shutdown();
  CAIRN_LOG_INFO("stopped");
  return absl::OkStatus();
}

}  // namespace cairn::operator_
