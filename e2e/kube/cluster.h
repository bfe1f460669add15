// A real Kubernetes control plane on loopback for the kube tests: etcd and
// kube-apiserver (pinned, built by scripts/go-tools.sh), self-signed TLS
// made with openssl, a static admin token in system:masters, RBAC on, and a
// kubeconfig for kubectl and cairn-operator. Plus OperatorProcess, the real
// cairn-operator binary against it.
//
// Tools that cannot be had (no Go, no openssl, a failed build) make
// Start() return FailedPrecondition; the tests FAIL on that when CI=true
// and skip otherwise (ToolsMissing()).
//
// Test-only; not thread-safe. Processes are killed on destruction.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "e2e/harness.h"
#include "operator/kube/client.h"

namespace cairn::e2e {

struct KubeTools {
  std::filesystem::path etcd, apiserver, kubectl;
};
// Builds or finds the pinned tools (scripts/go-tools.sh).
[[nodiscard]] absl::StatusOr<KubeTools> GetKubeTools();

class KubeCluster {
 public:
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<KubeCluster>> Start(
      const std::filesystem::path& dir);
  ~KubeCluster();

  // Stops kube-apiserver (SIGTERM) and starts it again on the same port and
  // etcd; returns once /readyz answers.
  [[nodiscard]] absl::Status RestartApiServer();
  void StopApiServer();
  [[nodiscard]] absl::Status StartApiServer();

  const std::filesystem::path& kubeconfig() const { return kubeconfig_; }  // token, CA file
  // The same cluster with a client certificate and CA as inline data.
  const std::filesystem::path& cert_kubeconfig() const { return cert_kubeconfig_; }
  const KubeTools& tools() const { return tools_; }
  // kubectl with our kubeconfig.
  RunResult Kubectl(const std::vector<std::string>& args, const std::string& stdin_data = "") const;
  // A client as the admin, for test set-up and checks.
  kube::Client& client() { return *client_; }
  std::string server_url() const;

 private:
  KubeCluster() = default;
  [[nodiscard]] absl::Status WaitReady(std::chrono::seconds timeout);

  std::filesystem::path dir_;
  KubeTools tools_;
  std::filesystem::path kubeconfig_;
  std::filesystem::path cert_kubeconfig_;
  int etcd_port_ = 0, etcd_peer_port_ = 0, api_port_ = 0;
  std::unique_ptr<Child> etcd_, apiserver_;
  std::unique_ptr<kube::Client> client_;
};

// A cairn-operator process with --kubeconfig on free loopback ports.
class OperatorProcess {
 public:
  struct Options {
    std::filesystem::path data_dir;
    std::filesystem::path kubeconfig;
    std::vector<std::string> extra_args;
    bool wait_ready = true;  // wait for /readyz (API server reachable, lease known)
  };
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<OperatorProcess>> Start(const Options& o);
  ~OperatorProcess();

  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  std::vector<std::string> ClientEnv(const std::string& ns) const;
  void Kill(int sig);
  int Wait();
  bool Exited() { return child_->Exited(); }
  std::string Log() const;
  std::pair<int, std::string> HttpGet(const std::string& path) const;
  // The value of an unlabelled (or fully labelled, as written) series in
  // /metrics, or -1.
  double Metric(const std::string& series) const;

 private:
  OperatorProcess() = default;
  std::unique_ptr<Child> child_;
  std::filesystem::path log_;
  int port_ = 0, metrics_port_ = 0;
};

// Runs the cairn CLI against `op` in namespace `ns`.
RunResult Cairn(const OperatorProcess& op, const std::string& ns,
                const std::vector<std::string>& args);

// One pinned tool from scripts/go-tools.sh (builds it on first use);
// FailedPrecondition naming go-tools.sh when it cannot be had.
[[nodiscard]] absl::StatusOr<std::filesystem::path> GoTool(const std::string& name);

// True when the tools are missing and the test may skip (CI unset).
bool MaySkipForMissingTools();

}  // namespace cairn::e2e
