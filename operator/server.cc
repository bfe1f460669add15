#include "operator/server.h"

#include <arpa/inet.h>

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
#include "operator/web_ui.h"

namespace cairn::operator_ {
namespace {

// Commits of large trees (10,000+ entries with inline data) are big.
constexpr int kMaxReceiveBytes = 1 << 30;

}  // namespace

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

absl::StatusOr<std::unique_ptr<DataDir>> OpenBackend(const std::filesystem::path& data_dir,
                                                     MasterKeySource* keys,
                                                     const std::string& meta_url,
                                                     const std::string& blobs_url) {
  if (data_dir.empty()) return absl::InvalidArgumentError("--data DIR is required");
  return DataDir::Open(data_dir, DataDirOptions{.keys = keys, .blobs_url = blobs_url,
                                                .meta_url = meta_url});
}

struct Server::Impl {
  std::unique_ptr<DataDir> data;
  std::unique_ptr<ServiceMetrics> metrics;
  std::unique_ptr<VolumeServiceImpl> service;
  std::unique_ptr<GrpcServer> grpc;
  std::unique_ptr<WebUi> ui;  // null when the HTTP side does not serve it
};

Server::Server() : impl_(std::make_unique<Impl>()) {}

Server::~Server() { Shutdown(); }

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options,
                                                      MasterKeySource* keys) {
  if (options.data_dir.empty()) return absl::InvalidArgumentError("--data DIR is required");
  CAIRN_RETURN_IF_ERROR(ValidateListenAddress(options.listen));
  if (options.token.empty() && !IsLoopbackAddress(options.listen)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "refusing to listen on ", options.listen,
        " without a token: anyone who can reach it could read every volume. Pass --token-file "
        "FILE (or set CAIRN_TOKEN), or listen on 127.0.0.1"));
  }
  const bool metrics_off_loopback =
      !options.metrics_listen.empty() && !IsLoopbackAddress(options.metrics_listen);
  if (metrics_off_loopback) CAIRN_RETURN_IF_ERROR(ValidateListenAddress(options.metrics_listen));
  if (metrics_off_loopback && options.token.empty() && !options.metrics_public) {
    return absl::FailedPreconditionError(absl::StrCat(
        "refusing to serve metrics on ", options.metrics_listen,
        " without a token: they name every namespace and volume. Pass --token-file FILE "
        "(scrapers then send it as a bearer token), --metrics-public to publish them anyway, "
        "or listen on 127.0.0.1"));
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key must be given together");
  }

  std::unique_ptr<Server> server(new Server());
  server->options_ = options;
  Impl& impl = *server->impl_;
  std::optional<FixedMasterKeySource> given_key;
  if (keys == nullptr && options.master_key.has_value()) {
    given_key.emplace(*options.master_key);
    keys = &*given_key;
  }
  CAIRN_ASSIGN_OR_RETURN(impl.data,
                         OpenBackend(options.data_dir, keys, options.meta_url, options.blobs));
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
    HttpEndpoints::Options http_options;
    http_options.listen = options.metrics_listen;
    // A token protects /metrics wherever it listens, unless published.
    if (!options.metrics_public) http_options.token = options.token;
    // The file browser shows volume data: always behind the API's token,
    // and without one only on loopback (as the Volume API itself).
    if (!options.token.empty() || IsLoopbackAddress(options.metrics_listen)) {
      impl.ui = std::make_unique<WebUi>(&impl.data->engine(), WebUi::Options{options.token});
      WebUi* ui = impl.ui.get();
      http_options.add_routes = [ui](httplib::Server& http) { ui->Register(http); };
    } else {
      CAIRN_LOG_WARNING("the file browser (/ui) is off: %s is not loopback and there is no token",
                        options.metrics_listen);
    }
    absl::StatusOr<std::unique_ptr<HttpEndpoints>> http =
        HttpEndpoints::Start(http_options, &server->registry_);
    if (!http.ok()) {
      server->Shutdown();
      return http.status();
    }
    server->http_ = std::move(*http);
    server->metrics_port_ = server->http_->port();
    // Ready means the store answers, not just that the process started: a
    // cheap check that the metadata database is still the one on disk and
    // reads, or that PostgreSQL answers and takes writes
    // (MetaStore::CheckHealth).
    MetaStore* meta = &impl.data->meta();
    server->http_->AddReadinessCheck("store", [meta] { return meta->CheckHealth(); });
    if (options.readiness_check) {
      server->http_->AddReadinessCheck("kubernetes", options.readiness_check);
    }
  }
  Engine* engine = &impl.data->engine();
  ServiceMetrics* metrics = impl.metrics.get();
  const std::chrono::seconds grace = options.gc_grace;
  server->runner_.Add("garbage collection", absl::Seconds(options.gc_interval.count()),
                      [engine, metrics, grace]() -> absl::Status {
                        CAIRN_ASSIGN_OR_RETURN(GcStats stats, engine->CollectGarbage(grace));
                        metrics->gc_runs.WithLabels({}).Increment();
                        metrics->gc_blobs_deleted.WithLabels({}).Increment(stats.blobs_deleted);
                        if (stats.blobs_deleted > 0 || stats.volumes_purged > 0) {
                          CAIRN_LOG_INFO("gc: %d blobs (%d bytes) deleted, %d deleted volumes purged",
                                         stats.blobs_deleted, stats.bytes_freed,
                                         stats.volumes_purged);
                        }
                        return absl::OkStatus();
                      });
  // Ephemeral volumes: deleted (key destroyed, C8) once no holder renewed
  // the lease; their blobs then go with garbage collection.
  server->runner_.Add("ephemeral volume sweep",
                      absl::Seconds(options.lease_sweep_interval.count()),
                      [engine]() -> absl::Status {
                        CAIRN_ASSIGN_OR_RETURN(uint64_t n, engine->CollectExpiredVolumes());
                        if (n > 0) CAIRN_LOG_INFO("deleted %d ephemeral volumes whose lease lapsed", n);
                        return absl::OkStatus();
                      });
  CAIRN_LOG_INFO("cairn server: data %s%s%s, Volume API on %s (port %d)%s, metrics on %s",
                 options.data_dir.string(),
                 options.meta_url.empty() ? "" : ", metadata in PostgreSQL",
                 options.blobs.empty() ? "" : ", blobs in S3", options.listen, server->port_,
                 options.tls_cert_file.empty() ? "" : " with TLS",
                 options.metrics_listen.empty() ? "(off)" : options.metrics_listen);
  return server;
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
  if (http_) http_->Stop();
  runner_.Stop();
  impl_->grpc.reset();
  impl_->service.reset();
  impl_->data.reset();  // releases the data directory lock
  stopped_.Notify();
}

void Server::Wait() { stopped_.WaitForNotification(); }

Engine& Server::engine() { return impl_->data->engine(); }

absl::Status RunServer(const ServerOptions& options, const std::function<void()>& wait_for_stop,
                       const AttachFn& attach) {
  CAIRN_ASSIGN_OR_RETURN(std::unique_ptr<Server> server, Server::Start(options));
  std::function<void()> stop_attached;
  if (attach) {
    absl::StatusOr<std::function<void()>> stopper = attach(*server);
    if (!stopper.ok()) {
      server->Shutdown();
      return stopper.status();
    }
    stop_attached = *std::move(stopper);
  }
  wait_for_stop();
  if (stop_attached) stop_attached();
  server->Shutdown();
  CAIRN_LOG_INFO("stopped");
  return absl::OkStatus();
}

}  // namespace cairn::operator_
