#include "operator/controller/run.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "core/flags.h"
#include "core/log.h"
#include "core/status.h"
#include "operator/controller/master_key.h"
#include "operator/kube/config.h"

namespace cairn::controller {

std::string KubeFlagsHelp() {
  return "  --kubeconfig FILE       Kubernetes credentials; without it, the in-cluster service\n"
         "                          account when running in a pod, else standalone\n"
         "  --kube-context NAME     kubeconfig context (default: current-context)\n"
         "  --no-kubernetes         standalone even inside a pod\n"
         "  --leader-elect true|false\n"
         "                          take a Lease before reconciling (default true)\n"
         "  --leader-election-namespace NS\n"
         "                          the Lease's namespace (default: the kubeconfig's or pod's)\n"
         "  --leader-election-id NAME  the Lease's name (default cairn-operator)\n"
         "  --lease-duration S      seconds a leader's lease lasts (default 15)\n"
         "  --renew-deadline S      a leader steps down after S seconds without renewal (10)\n"
         "  --retry-period S        seconds between lease attempts (default 2)\n"
         "  --resync S              seconds between full reconciles of every Volume (30)\n"
         "  --master-key-secret NS/NAME\n"
         "                          take the master key from this Secret (created with a new key\n"
         "                          if absent and the data directory is empty) instead of\n"
         "                          DIR/master.key\n";
}

absl::StatusOr<std::optional<KubeOptions>> TakeKubeFlags(std::vector<std::string>& args) {
  KubeOptions o;
  std::string kubeconfig, context;
  bool no_kube = false;
  std::vector<std::string> rest;
  FlagCursor flags(args);
  auto seconds = [&]() -> absl::StatusOr<std::chrono::milliseconds> {
    CAIRN_ASSIGN_OR_RETURN(absl::Duration d,
                           flags.Seconds(/*allow_zero=*/false, absl::Seconds(86400)));
    return std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
  };
  while (flags.Next()) {
    if (flags.Is("--kubeconfig")) {
      CAIRN_ASSIGN_OR_RETURN(kubeconfig, flags.Value());
    } else if (flags.Is("--kube-context")) {
      CAIRN_ASSIGN_OR_RETURN(context, flags.Value());
    } else if (flags.Is("--no-kubernetes")) {
      CAIRN_RETURN_IF_ERROR(flags.NoValue());
      no_kube = true;
    } else if (flags.Is("--leader-elect")) {
      CAIRN_ASSIGN_OR_RETURN(std::string v, flags.Value());
      if (v != "true" && v != "false") {
        return absl::InvalidArgumentError("--leader-elect must be true or false");
      }
      o.leader_elect = v == "true";
    } else if (flags.Is("--leader-election-namespace")) {
      CAIRN_ASSIGN_OR_RETURN(o.leader.ns, flags.Value());
      o.lease_namespace_set = true;
    } else if (flags.Is("--leader-election-id")) {
      CAIRN_ASSIGN_OR_RETURN(o.leader.name, flags.Value());
    } else if (flags.Is("--lease-duration")) {
      CAIRN_ASSIGN_OR_RETURN(o.leader.lease_duration, seconds());
    } else if (flags.Is("--renew-deadline")) {
      CAIRN_ASSIGN_OR_RETURN(o.leader.renew_deadline, seconds());
    } else if (flags.Is("--retry-period")) {
      CAIRN_ASSIGN_OR_RETURN(o.leader.retry_period, seconds());
    } else if (flags.Is("--master-key-secret")) {
      CAIRN_ASSIGN_OR_RETURN(o.master_key_secret, flags.Value());
      CAIRN_RETURN_IF_ERROR(ParseSecretRef(o.master_key_secret).status());
    } else if (flags.Is("--resync")) {
      CAIRN_ASSIGN_OR_RETURN(o.controller.resync, seconds());
    } else {
      rest.push_back(flags.arg());
    }
  }
  args = rest;
  if (!(o.leader.retry_period < o.leader.renew_deadline &&
        o.leader.renew_deadline < o.leader.lease_duration)) {
    return absl::InvalidArgumentError(
        "need --retry-period < --renew-deadline < --lease-duration");
  }
  auto standalone = [&]() -> absl::StatusOr<std::optional<KubeOptions>> {
    if (!o.master_key_secret.empty()) {
      return absl::InvalidArgumentError(
          "--master-key-secret needs Kubernetes (--kubeconfig, or run in a pod)");
    }
    return std::optional<KubeOptions>();
  };
  if (no_kube) {
    if (!kubeconfig.empty()) {
      return absl::InvalidArgumentError("--no-kubernetes and --kubeconfig contradict each other");
    }
    return standalone();
  }
  if (!kubeconfig.empty()) {
    CAIRN_ASSIGN_OR_RETURN(o.config, kube::LoadKubeconfig(kubeconfig, context));
  } else if (const char* h = std::getenv("KUBERNETES_SERVICE_HOST"); h != nullptr && *h != '\0') {
    CAIRN_ASSIGN_OR_RETURN(o.config, kube::InClusterConfig());
  } else {
    return standalone();
  }
  if (!o.lease_namespace_set) o.leader.ns = o.config.ns;
  return std::optional<KubeOptions>(std::move(o));
}

absl::StatusOr<MasterKey> LoadMasterKey(const KubeOptions& options,
                                        const std::filesystem::path& data_dir) {
  CAIRN_ASSIGN_OR_RETURN(auto ref, ParseSecretRef(options.master_key_secret));
  // A fresh key may be minted only for a directory without volumes (a new
  // key cannot open old ones). SQLite is safe to open next to a later
  // owner; the data directory lock is taken afterwards by the server.
  bool empty = true;
  if (std::filesystem::exists(data_dir / "meta.db")) {
    CAIRN_ASSIGN_OR_RETURN(std::unique_ptr<MetaStore> meta,
                           OpenSqliteMetaStore(data_dir / "meta.db"));
    CAIRN_ASSIGN_OR_RETURN(std::vector<VolumeRecord> volumes, meta->ListVolumes(""));
    empty = volumes.empty();
  }
  CAIRN_ASSIGN_OR_RETURN(std::unique_ptr<kube::Client> client,
                         kube::Client::Create(options.config));
  return LoadOrCreateMasterKeySecret(*client, ref.first, ref.second, empty);
}

absl::StatusOr<std::unique_ptr<KubeController>> KubeController::Start(const KubeOptions& options,
                                                                      Engine* engine,
                                                                      metrics::Registry* registry) {
  std::unique_ptr<KubeController> k(new KubeController());
  CAIRN_ASSIGN_OR_RETURN(k->client_, kube::Client::Create(options.config));
  k->metrics_ = std::make_unique<ControllerMetrics>(*registry);
  k->leader_elect_ = options.leader_elect;
  KubeController* self = k.get();
  k->controller_ = std::make_unique<VolumeController>(
      k->client_.get(), engine, k->metrics_.get(), options.controller,
      [self] { return self->IsLeader(); });
  // The elector exists before any worker asks IsLeader().
  if (options.leader_elect) {
    k->metrics_->leader.WithLabels({}).Set(0);
    CAIRN_ASSIGN_OR_RETURN(
        k->elector_,
        LeaderElector::Start(k->client_.get(), options.leader, [self](bool leading) {
          self->metrics_->leader.WithLabels({}).Set(leading ? 1 : 0);
          if (leading) self->controller_->RequeueAll();
        }));
  } else {
    k->metrics_->leader.WithLabels({}).Set(1);
  }
  k->controller_->Start();
  CAIRN_LOG_INFO("Kubernetes controller: API server %s, leader election %s", options.config.server,
                 options.leader_elect
                     ? absl::StrCat("on (lease ", options.leader.ns, "/", options.leader.name,
                                    ", identity ", k->elector_->identity(), ")")
                     : std::string("off"));
  return k;
}

KubeController::~KubeController() { Stop(); }

bool KubeController::IsLeader() const {
  if (!leader_elect_) return true;
  return elector_ != nullptr && elector_->IsLeader();
}

absl::Status KubeController::Ready() const {
  if (controller_ == nullptr) return absl::UnavailableError("Kubernetes controller stopped");
  CAIRN_RETURN_IF_ERROR(controller_->ApiState());
  if (leader_elect_) {
    if (elector_ == nullptr) return absl::UnavailableError("leader election not started");
    CAIRN_RETURN_IF_ERROR(elector_->LeaseState());
  }
  return absl::OkStatus();
}

void KubeController::Stop() {
  // Stop acting first (election off → workers idle), then the watches.
  if (elector_) elector_->Stop();
  if (client_) client_->Shutdown();
  if (controller_) controller_->Stop();
}

}  // namespace cairn::controller
