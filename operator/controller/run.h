// The Kubernetes side of cairn-operator: flags, client set-up, leader
// election and the Volume controller, behind one object that the process
// wiring starts next to the Volume API server.
//
// How it plugs in: the caller owns the Engine and the metrics Registry (the
// server's), calls KubeController::Start() after the store is open, adds
// Ready() to /readyz, and calls Stop() before closing the store.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/engine.h"
#include "core/metrics.h"
#include "operator/controller/controller.h"
#include "operator/controller/leader.h"
#include "operator/controller/metrics.h"
#include "operator/kube/client.h"

namespace cairn::controller {

struct KubeOptions {
  kube::Config config;
  std::string master_key_secret;  // "NS/NAME", or empty: DIR/master.key
  bool leader_elect = true;
  bool lease_namespace_set = false;
  LeaderOptions leader;
  ControllerOptions controller;
};

std::string KubeFlagsHelp();

// Removes the controller's flags from `args` (the rest are the server's):
// --kubeconfig FILE, --kube-context NAME, --no-kubernetes,
// --leader-elect true|false, --leader-election-namespace NS,
// --leader-election-id NAME, --lease-duration S, --renew-deadline S,
// --retry-period S, --resync S (seconds, fractions allowed),
// --master-key-secret NS/NAME (needs Kubernetes).
// Returns nullopt for standalone: no kubeconfig and not in a pod (or
// --no-kubernetes). InvalidArgument naming the flag, or the kubeconfig /
// service-account error.
[[nodiscard]] absl::StatusOr<std::optional<KubeOptions>> TakeKubeFlags(
    std::vector<std::string>& args);

// The master key from options.master_key_secret (created there if absent
// and `data_dir` holds no volumes yet). Call before the store is opened.
[[nodiscard]] absl::StatusOr<MasterKey> LoadMasterKey(const KubeOptions& options,
                                                     const std::filesystem::path& data_dir);

class KubeController {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<KubeController>> Start(
      const KubeOptions& options, Engine* engine, metrics::Registry* registry);
  ~KubeController();
  KubeController(const KubeController&) = delete;
  KubeController& operator=(const KubeController&) = delete;

  // For /readyz: the API server answered the last list/watch, and (with
  // election) the lease state is known. Unavailable with the reason.
  [[nodiscard]] absl::Status Ready() const;
  bool IsLeader() const;
  // Stops reconciling, releases the lease, cancels watches. Idempotent.
  void Stop();

 private:
  KubeController() = default;
  std::unique_ptr<kube::Client> client_;
  std::unique_ptr<ControllerMetrics> metrics_;
  std::unique_ptr<VolumeController> controller_;
  std::unique_ptr<LeaderElector> elector_;
  bool leader_elect_ = false;
};

}  // namespace cairn::controller
