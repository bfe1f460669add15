// cairn-operator: the control plane. Standalone on a data directory (the
// embedded default); with a kubeconfig, or inside a pod, it also runs the
// Kubernetes controller for Volume resources (docs/operator.md).
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <signal.h>

#include "absl/synchronization/mutex.h"
#include "core/process.h"
#include "core/version.h"
#include "operator/controller/run.h"
#include "operator/flags.h"
#include "operator/server.h"

namespace {

// The controller starts after the server (it needs the open store) but
// /readyz may ask about it from the first request on.
struct ControllerSlot {
  absl::Mutex mu;
  std::unique_ptr<cairn::controller::KubeController> controller ABSL_GUARDED_BY(mu);
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (cairn::PrintVersionIfAsked("cairn-operator", args)) return 0;
  for (const std::string& a : args) {
    if (a == "-h" || a == "--help") {
      std::printf("Usage: cairn-operator --data DIR [--kubeconfig FILE] [options]\n\nThe Cairn "
                  "control plane (Volume API, metrics, garbage collection) and, with\nKubernetes, "
                  "the controller for Volume resources.\n\nOptions:\n"
                  "  --version               print the version and exit (as the first argument)\n"
                  "%s%s",
                  cairn::operator_::ServerFlagsHelp().c_str(),
                  cairn::controller::KubeFlagsHelp().c_str());
      return 0;
    }
  }
  absl::StatusOr<std::optional<cairn::controller::KubeOptions>> kube =
      cairn::controller::TakeKubeFlags(args);
  if (!kube.ok()) {
    std::fprintf(stderr, "cairn-operator: %s\n", std::string(kube.status().message()).c_str());
    return 2;
  }
  absl::StatusOr<cairn::operator_::ServerOptions> options =
      cairn::operator_::ParseServerFlags(args);
  if (!options.ok()) {
    std::fprintf(stderr, "cairn-operator: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  if (kube->has_value() && !(*kube)->master_key_secret.empty()) {
    absl::StatusOr<cairn::MasterKey> key =
        cairn::controller::LoadMasterKey(**kube, options->data_dir);
    if (!key.ok()) {
      std::fprintf(stderr, "cairn-operator: error: %s\n", std::string(key.status().message()).c_str());
      return 1;
    }
    options->master_key = *std::move(key);
  }
  auto slot = std::make_shared<ControllerSlot>();
  cairn::operator_::AttachFn attach;
  if (kube->has_value()) {
    options->readiness_check = [slot]() -> absl::Status {
      absl::MutexLock lock(&slot->mu);
      if (slot->controller == nullptr) {
        return absl::UnavailableError("Kubernetes controller not started");
      }
      return slot->controller->Ready();
    };
    attach = [slot, k = **kube](cairn::operator_::Server& server)
        -> absl::StatusOr<std::function<void()>> {
      absl::StatusOr<std::unique_ptr<cairn::controller::KubeController>> c =
          cairn::controller::KubeController::Start(k, &server.engine(), &server.registry());
      if (!c.ok()) return c.status();
      absl::MutexLock lock(&slot->mu);
      slot->controller = *std::move(c);
      return std::function<void()>([slot] {
        std::unique_ptr<cairn::controller::KubeController> stopping;
        {
          absl::MutexLock lock(&slot->mu);
          stopping = std::move(slot->controller);
        }
        if (stopping) stopping->Stop();
      });
    };
  }
  // Before any thread starts: only the wait below takes the signals.
  cairn::BlockTerminationSignals();
  cairn::TuneAllocatorForChunks();
  absl::Status status = cairn::operator_::RunServer(*options, [] {
    int sig = cairn::WaitForTerminationSignal();
    std::fprintf(stderr, "cairn-operator: %s received, shutting down\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
  }, attach);
  if (!status.ok()) {
    std::fprintf(stderr, "cairn-operator: error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
