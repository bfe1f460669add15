// Server: the standalone control plane. Owns a DataDir (embedded SQLite +
// local blob store), serves the Volume API over gRPC, /metrics /healthz
// /readyz over HTTP, and runs garbage collection periodically.
//
// Start() returns once both listeners are bound (so a caller can connect at
// once); Shutdown() stops accepting, lets in-flight calls finish (bounded),
// stops GC and the HTTP server, and is idempotent. Wait() blocks until
// Shutdown() has completed. Thread-safe.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "core/data_dir.h"
#include "core/metrics.h"

namespace grpc {
class Server;
}
namespace httplib {
class Server;
}

namespace cairn::operator_ {

inline constexpr char kDefaultListen[] = "127.0.0.1:7420";
inline constexpr char kDefaultMetricsListen[] = "127.0.0.1:7421";

struct ServerOptions {
  std::filesystem::path data_dir;
  std::string listen = kDefaultListen;                 // HOST:PORT; port 0 picks one
  std::string metrics_listen = kDefaultMetricsListen;  // empty: no HTTP endpoint
  std::string token;                                   // empty: loopback only
  std::string tls_cert_file;                           // both or neither
  std::string tls_key_file;
  std::chrono::seconds gc_interval{600};  // 0: no periodic GC
  std::chrono::seconds gc_grace{3600};
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

// True for 127.0.0.0/8, ::1 and "localhost".
bool IsLoopbackAddress(const std::string& host_port);
// InvalidArgument unless `host_port` is HOST:PORT (or [V6]:PORT).
[[nodiscard]] absl::Status ValidateListenAddress(const std::string& host_port);

class Server {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options);
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

 private:
  struct Impl;
  Server();
  void GcLoop();

  ServerOptions options_;
  metrics::Registry registry_;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
  int metrics_port_ = 0;
  std::thread http_thread_;
  std::thread gc_thread_;
  absl::Mutex mu_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  absl::Notification stopped_;
};

// Starts a Server and runs it until SIGINT or SIGTERM, then shuts it down
// gracefully. Used by both `cairn server` and `cairn-operator`. `attach`,
// if given, starts more work on the running server (the Kubernetes
// controller) and returns what stops it; it runs before the signal wait and
// its stopper before the server shuts down. An error from `attach` stops
// the server and is returned.
using AttachFn = std::function<absl::StatusOr<std::function<void()>>(Server&)>;
[[nodiscard]] absl::Status RunUntilSignal(const ServerOptions& options,
                                          const AttachFn& attach = nullptr);

}  // namespace cairn::operator_
