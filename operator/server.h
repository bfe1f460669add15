// Server: the standalone control plane, composed of parts other components
// reuse:
//   - the backend: a DataDir (SQLite + local blob store), its master key
//     from a MasterKeySource (core/master_key_source.h; a file by default);
//   - the Volume API on a GrpcServer (core/grpc_server.h);
//   - HttpEndpoints: /metrics, /healthz, /readyz with pluggable readiness
//     checks (the store's is registered here as "store");
//   - a PeriodicRunner (garbage collection is one task).
// The operator adds its controller with http().AddReadinessCheck(...) and
// runner().Add(...).
//
// Start() returns once both listeners are bound (so a caller can connect at
// once); Shutdown() stops accepting, lets in-flight calls finish (bounded),
// stops the periodic tasks and the HTTP server, and is idempotent. Wait()
// blocks until Shutdown() has completed. Thread-safe. Signals and allocator
// tuning are the mains' business.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "core/data_dir.h"
#include "core/master_key_source.h"
#include "core/metrics.h"
#include "operator/http_endpoints.h"
#include "operator/periodic_runner.h"

namespace cairn::operator_ {

inline constexpr char kDefaultListen[] = "127.0.0.1:7420";
inline constexpr char kDefaultMetricsListen[] = "127.0.0.1:7421";

struct ServerOptions {
  std::filesystem::path data_dir;
  // A PostgreSQL URL: metadata there, shared with other replicas (D37);
  // empty: DIR/meta.db.
  std::string meta_url;
  // Empty: blobs in DATA_DIR/blobs; else an s3:// URL (--blobs, D40).
  std::string blobs;
  std::string listen = kDefaultListen;                 // HOST:PORT; port 0 picks one
  std::string metrics_listen = kDefaultMetricsListen;  // empty: no HTTP endpoint
  // Off loopback, /metrics needs the token unless this is set (the metrics
  // name namespaces and volumes); without a token, listening there is
  // refused unless this is set.
  bool metrics_public = false;
  std::string token;                                   // empty: loopback only
  std::string tls_cert_file;                           // both or neither
  std::string tls_key_file;
  std::chrono::seconds gc_interval{600};  // 0: no periodic GC
  std::chrono::seconds gc_grace{3600};
  // How often ephemeral volumes whose lease lapsed are deleted; 0: never.
  std::chrono::seconds lease_sweep_interval{5};
  // An extra /readyz condition (the Kubernetes controller's); while it is
  // not OK, /readyz answers 503 with its message. May be called from the
  // HTTP thread at any time, before and after the server has started.
  std::function<absl::Status()> readiness_check;
  // Set: the master key comes from here (a Kubernetes Secret), not from
  // DIR/master.key (see DataDir::Open).
  std::optional<MasterKey> master_key;
};

// Fills `token` from --token-file, or CAIRN_TOKEN / CAIRN_TOKEN_FILE when
// no file is given. A token file that cannot be read, or an empty token, is
// an error.
[[nodiscard]] absl::StatusOr<std::string> LoadServerToken(const std::string& token_file);

struct HostPort {
  std::string host;
  int port = 0;
};
// "HOST:PORT" or "[V6]:PORT"; InvalidArgument otherwise.
[[nodiscard]] absl::StatusOr<HostPort> SplitHostPort(const std::string& address);
// True for 127.0.0.0/8, ::1 and "localhost".
bool IsLoopbackAddress(const std::string& host_port);
// InvalidArgument unless `host_port` is HOST:PORT (or [V6]:PORT).
[[nodiscard]] absl::Status ValidateListenAddress(const std::string& host_port);

// The backend factory: the data directory and its engine, with metadata in
// PostgreSQL when `meta_url` is set and blobs in
// `blobs_url` when set (an s3:// URL). `keys` null: the key file in the
// data directory.
[[nodiscard]] absl::StatusOr<std::unique_ptr<DataDir>> OpenBackend(
    const std::filesystem::path& data_dir, MasterKeySource* keys = nullptr,
    const std::string& meta_url = "", const std::string& blobs_url = "");

class Server {
 public:
  // `keys`: where the master key comes from (null: DIR/master.key); used
  // only during Start.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Server>> Start(
      const ServerOptions& options, MasterKeySource* keys = nullptr);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void Shutdown();
  void Wait();

  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  metrics::Registry& registry() { return registry_; }
  // The store's engine, valid until Shutdown().
  Engine& engine();
  // Null when metrics_listen is empty.
  HttpEndpoints* http() { return http_.get(); }
  PeriodicRunner& runner() { return runner_; }

 private:
  struct Impl;
  Server();

  ServerOptions options_;
  metrics::Registry registry_;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<HttpEndpoints> http_;
  PeriodicRunner runner_;
  int port_ = 0;
  int metrics_port_ = 0;
  absl::Mutex mu_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  absl::Notification stopped_;
};

// Starts a Server, runs `attach` (if given: more work on the running
// server, such as the Kubernetes controller; it returns what stops it),
// then `wait_for_stop` (the main's signal wait), then stops the attached
// work and shuts the server down gracefully. Used by both `cairn server`
// and `cairn-operator`. An error from `attach` stops the server and is
// returned.
using AttachFn = std::function<absl::StatusOr<std::function<void()>>(Server&)>;
[[nodiscard]] absl::Status RunServer(const ServerOptions& options,
                                     const std::function<void()>& wait_for_stop,
                                     const AttachFn& attach = nullptr);

}  // namespace cairn::operator_
