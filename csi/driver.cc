#include "csi/driver.h"

#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/strings/strip.h"
#include "core/flags.h"
#include "core/grpc_server.h"
#include "core/log.h"
#include "core/status.h"
#include "csi/mount_pods.h"
#include "operator/kube/config.h"

namespace cairn::csi {
namespace fs = std::filesystem;
namespace v1 = ::csi::v1;

absl::StatusOr<CsiOptions> ParseCsiArgs(const std::vector<std::string>& args,
                                        ClientOptions client) {
  CsiOptions o;
  o.client = std::move(client);
  if (const char* dir = std::getenv("CAIRN_CACHE_DIR"); dir != nullptr && *dir != '\0') {
    o.cache_dir = dir;
  }
  FlagCursor flags(args);
  while (flags.Next()) {
    if (flags.Is("--endpoint")) {
      CAIRN_ASSIGN_OR_RETURN(o.endpoint, flags.Value());
    } else if (flags.Is("--node-id")) {
      CAIRN_ASSIGN_OR_RETURN(o.node_id, flags.Value());
    } else if (flags.Is("--server")) {
      CAIRN_ASSIGN_OR_RETURN(o.client.server, flags.Value());
    } else if (flags.Is("--token-file")) {
      CAIRN_ASSIGN_OR_RETURN(o.token_file, flags.Value());
      std::ifstream in(o.token_file);
      if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read --token-file ", o.token_file));
      std::string token((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      o.client.token = std::string(absl::StripAsciiWhitespace(token));
    } else if (flags.Is("--mode")) {
      CAIRN_ASSIGN_OR_RETURN(std::string v, flags.Value());
      if (v == "controller") {
        o.mode = Mode::kController;
      } else if (v == "node") {
        o.mode = Mode::kNode;
      } else if (v == "all") {
        o.mode = Mode::kAll;
      } else {
        return absl::InvalidArgumentError(absl::StrCat("--mode must be controller, node or all, not ", v));
      }
    } else if (flags.Is("--state-dir")) {
      CAIRN_ASSIGN_OR_RETURN(std::string v, flags.Value());
      o.state_dir = fs::absolute(v);
    } else if (flags.Is("--kubelet-dir")) {
      CAIRN_ASSIGN_OR_RETURN(std::string v, flags.Value());
      o.kubelet_dir = fs::absolute(v).lexically_normal();
    } else if (flags.Is("--registration-dir")) {
      CAIRN_ASSIGN_OR_RETURN(std::string v, flags.Value());
      o.registration_dir = fs::absolute(v);
    } else if (flags.Is("--kubelet-registration-path")) {
      CAIRN_ASSIGN_OR_RETURN(std::string v, flags.Value());
      if (!fs::path(v).is_absolute()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--kubelet-registration-path must be an absolute path, not ", v));
      }
      o.registration_path = fs::path(v).lexically_normal();
    } else if (flags.Is("--mounter")) {
      CAIRN_ASSIGN_OR_RETURN(std::string v, flags.Value());
      o.mounter = v;
    } else if (flags.Is("--cache-dir")) {
      CAIRN_ASSIGN_OR_RETURN(std::string v, flags.Value());
      o.cache_dir = fs::absolute(v);
    } else if (flags.Is("--mounter-cgroup-root")) {
      CAIRN_ASSIGN_OR_RETURN(std::string v, flags.Value());
      o.mounter_cgroup_root = fs::absolute(v);
    } else if (flags.Is("--mounter-cgroup")) {
      CAIRN_ASSIGN_OR_RETURN(o.mounter_cgroup, flags.Value());
      if (o.mounter_cgroup.empty() || o.mounter_cgroup == "." || o.mounter_cgroup == ".." ||
          o.mounter_cgroup.find('/') != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--mounter-cgroup must be one path component, not \"", o.mounter_cgroup, "\""));
      }
    } else if (flags.Is("--mounter-mode")) {
      CAIRN_ASSIGN_OR_RETURN(std::string v, flags.Value());
      if (v != "process" && v != "pod") {
        return absl::InvalidArgumentError(
            absl::StrCat("--mounter-mode must be process or pod, not ", v));
      }
      o.mount_pods = v == "pod";
    } else if (flags.Is("--mount-pod-template")) {
      CAIRN_ASSIGN_OR_RETURN(std::string v, flags.Value());
      o.mount_pod_template = fs::absolute(v);
    } else if (flags.Is("--mount-timeout")) {
      CAIRN_ASSIGN_OR_RETURN(o.mount_timeout, flags.Seconds());
    } else if (flags.Is("--final-commit-timeout")) {
      CAIRN_ASSIGN_OR_RETURN(o.final_commit_timeout, flags.Seconds());
    } else if (flags.IsHelp()) {
      return HelpRequested();
    } else {
      return flags.Unknown();
    }
  }
  if (!IsUnixAddress(o.endpoint)) {
    return absl::InvalidArgumentError(absl::StrCat("--endpoint must be unix:///PATH, not ", o.endpoint));
  }
  if (o.mode != Mode::kController && o.node_id.empty()) {
    return absl::InvalidArgumentError("--node-id is required for --mode node and all");
  }
  if (o.mount_pods && o.mount_pod_template.empty()) {
    return absl::InvalidArgumentError("--mounter-mode pod needs --mount-pod-template");
  }
  return o;
}

// ---- VolumeApi --------------------------------------------------------------

absl::StatusOr<std::unique_ptr<VolumeApi>> VolumeApi::Connect(const ClientOptions& options) {
  std::unique_ptr<VolumeApi> api(new VolumeApi());
  api->options_ = options;
  CAIRN_ASSIGN_OR_RETURN(api->channel_, Dial(options));
  api->stub_ = api::VolumeService::NewStub(api->channel_);
  return api;
}

std::unique_ptr<grpc::ClientContext> VolumeApi::Context(absl::Duration timeout) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  Authorize(*ctx, options_);
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout)));
  return ctx;
}

namespace {
// Every control-plane error keeps its code; the message says where it came
// from, and an unreachable server says which address.
absl::Status FromApi(const grpc::Status& s, const std::string& server) {
  if (s.ok()) return absl::OkStatus();
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
      s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return absl::UnavailableError(absl::StrCat("the Cairn control plane at ", server,
                                               " is not answering: ", s.error_message()));
  }
  return FromGrpc(s);
}
}  // namespace

absl::StatusOr<api::Volume> VolumeApi::Get(const api::VolumeRef& ref) {
  api::GetVolumeRequest req;
  *req.mutable_volume() = ref;
  api::Volume v;
  CAIRN_RETURN_IF_ERROR(FromApi(stub_->GetVolume(Context(absl::Seconds(10)).get(), req, &v),
                                options_.server));
  return v;
}

absl::StatusOr<api::Volume> VolumeApi::Create(const api::CreateVolumeRequest& request) {
  api::Volume v;
  CAIRN_RETURN_IF_ERROR(FromApi(stub_->CreateVolume(Context(absl::Seconds(20)).get(), request, &v),
                                options_.server));
  return v;
}

absl::Status VolumeApi::Delete(const std::string& volume_id) {
  api::DeleteVolumeRequest req;
  req.mutable_volume()->set_id(volume_id);
  req.set_allow_missing(true);
  api::DeleteVolumeResponse resp;
  return FromApi(stub_->DeleteVolume(Context(absl::Seconds(20)).get(), req, &resp),
                 options_.server);
}

absl::StatusOr<api::Volume> VolumeApi::Clone(const std::string& source_id, const std::string& ns,
                                             const std::string& name) {
  api::CloneVolumeRequest req;
  req.mutable_source()->set_id(source_id);
  req.set_namespace_(ns);
  req.set_name(name);
  api::Volume v;
  CAIRN_RETURN_IF_ERROR(FromApi(stub_->CloneVolume(Context(absl::Seconds(120)).get(), req, &v),
                                options_.server));
  return v;
}

absl::Status VolumeApi::Ping() {
  api::ListVolumesRequest req;
  req.set_namespace_("default");
  api::ListVolumesResponse resp;
  grpc::Status s = stub_->ListVolumes(Context(absl::Seconds(3)).get(), req, &resp);
  // Any answer (even PERMISSION_DENIED) means the control plane is up;
  // only transport failures make it unavailable.
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
      s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return FromApi(s, options_.server);
  }
  if (s.error_code() == grpc::StatusCode::UNAUTHENTICATED) return FromGrpc(s);
  return absl::OkStatus();
}

// ---- Identity ---------------------------------------------------------------

grpc::Status IdentityService::GetPluginInfo(grpc::ServerContext*, const v1::GetPluginInfoRequest*,
                                            v1::GetPluginInfoResponse* resp) {
  resp->set_name(kDriverName);
  resp->set_vendor_version(version_);
  return grpc::Status::OK;
}

grpc::Status IdentityService::GetPluginCapabilities(grpc::ServerContext*,
                                                    const v1::GetPluginCapabilitiesRequest*,
                                                    v1::GetPluginCapabilitiesResponse* resp) {
  if (controller_) {
    resp->add_capabilities()->mutable_service()->set_type(
        v1::PluginCapability::Service::CONTROLLER_SERVICE);
  }
  return grpc::Status::OK;
}

grpc::Status IdentityService::Probe(grpc::ServerContext*, const v1::ProbeRequest*,
                                    v1::ProbeResponse* resp) {
  absl::Status st = api_->Ping();
  if (st.code() == absl::StatusCode::kUnauthenticated) {
    // A wrong token does not heal by waiting: the plugin is unhealthy.
    return ToGrpc(absl::FailedPreconditionError(
        absl::StrCat("the control plane refuses our token: ", st.message())));
  }
  if (!st.ok()) CAIRN_LOG_WARNING("probe: %s", st.ToString());
  resp->mutable_ready()->set_value(st.ok());
  return grpc::Status::OK;
}

// ---- Registration -------------------------------------------------------------

grpc::Status RegistrationService::GetInfo(grpc::ServerContext*,
                                          const ::pluginregistration::InfoRequest*,
                                          ::pluginregistration::PluginInfo* resp) {
  resp->set_type("CSIPlugin");
  resp->set_name(kDriverName);
  resp->set_endpoint(csi_socket_);
  resp->add_supported_versions("1.0.0");
  return grpc::Status::OK;
}

grpc::Status RegistrationService::NotifyRegistrationStatus(
    grpc::ServerContext*, const ::pluginregistration::RegistrationStatus* req,
    ::pluginregistration::RegistrationStatusResponse*) {
  absl::MutexLock lock(&mu_);
  registered_ = req->plugin_registered();
  if (registered_) {
    CAIRN_LOG_INFO("registered with the kubelet");
  } else {
    CAIRN_LOG_ERROR("the kubelet refused the registration: %s", req->error());
  }
  return grpc::Status::OK;
}

bool RegistrationService::registered() const {
  absl::MutexLock lock(&mu_);
  return registered_;
}

// ---- Shared ---------------------------------------------------------------------

absl::Status CheckCapability(const v1::VolumeCapability& cap) {
  if (cap.has_block()) {
    return absl::InvalidArgumentError("block volumes are not supported: Cairn volumes are file systems");
  }
  if (!cap.has_mount()) {
    return absl::InvalidArgumentError("the volume capability must ask for mount access");
  }
  const std::string& fs_type = cap.mount().fs_type();
  if (!fs_type.empty() && fs_type != "cairn" && fs_type != "fuse.cairn") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown fsType \"", fs_type, "\": Cairn volumes are \"cairn\" (or empty)"));
  }
  switch (cap.access_mode().mode()) {
    case v1::VolumeCapability::AccessMode::SINGLE_NODE_WRITER:
    case v1::VolumeCapability::AccessMode::SINGLE_NODE_READER_ONLY:
    case v1::VolumeCapability::AccessMode::MULTI_NODE_READER_ONLY:
    case v1::VolumeCapability::AccessMode::MULTI_NODE_SINGLE_WRITER:
    case v1::VolumeCapability::AccessMode::MULTI_NODE_MULTI_WRITER:
    case v1::VolumeCapability::AccessMode::SINGLE_NODE_SINGLE_WRITER:
    case v1::VolumeCapability::AccessMode::SINGLE_NODE_MULTI_WRITER:
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError("the volume capability needs an access mode");
  }
}

// ---- Run --------------------------------------------------------------------------

int RunPlugin(const CsiOptions& given) {
  CsiOptions options = given;
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);
  auto fail = [](std::string_view what, const absl::Status& st) {
    CAIRN_LOG_ERROR("%s: %s", what, st.ToString());
    return 1;
  };
  if (options.mounter.is_relative() && options.mounter.has_parent_path() == false) {
    std::error_code ec;
    fs::path self = fs::read_symlink("/proc/self/exe", ec);
    fs::path sibling = self.parent_path() / options.mounter;
    if (!ec && fs::exists(sibling)) options.mounter = sibling;
  }
  options.mounter = fs::absolute(options.mounter);
  auto api = VolumeApi::Connect(options.client);
  if (!api.ok()) return fail("control plane", api.status());
  StateFile state(options.state_dir / "state.json");
  std::vector<fs::path> mounter_cgroups;
  if (!options.mounter_cgroup_root.empty() && options.mode != Mode::kController) {
    auto cgroups = PrepareMounterCgroups(options.mounter_cgroup_root, options.mounter_cgroup);
    if (!cgroups.ok()) return fail("mounter cgroups", cgroups.status());
    mounter_cgroups = std::move(*cgroups);
  }
  ProcessLauncher launcher(std::move(mounter_cgroups));
  bool controller = options.mode != Mode::kNode;
  bool node = options.mode != Mode::kController;
  MounterLauncher* mounters = &launcher;
  std::unique_ptr<kube::Client> kube_client;
  std::unique_ptr<PodLauncher> pod_launcher;
  if (node && options.mount_pods) {
    std::ifstream in(options.mount_pod_template);
    if (!in) {
      return fail("mount pods", absl::NotFoundError(absl::StrCat(
                                    "cannot read ", options.mount_pod_template.string())));
    }
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto tmpl = kube::ParseObject(text, options.mount_pod_template.string());
    if (!tmpl.ok()) return fail("mount pod template", tmpl.status());
    auto config = kube::InClusterConfig();
    if (!config.ok()) return fail("mount pods need the Kubernetes API", config.status());
    MountPodOptions pods;
    pods.ns = config->ns;
    pods.node = options.node_id;
    pods.pod_template = *std::move(tmpl);
    pods.socket_dir = options.state_dir / "handover";
    auto client = kube::Client::Create(*std::move(config));
    if (!client.ok()) return fail("Kubernetes client", client.status());
    kube_client = *std::move(client);
    CAIRN_LOG_INFO("mounters run in mounter pods in namespace %s", pods.ns);
    pod_launcher = std::make_unique<PodLauncher>(&launcher, kube_client.get(), std::move(pods));
    mounters = pod_launcher.get();
  }
  // The controller's records and the node's share one file format but not
  // one file, so that a node plugin and a controller on the same host
  // (mode all uses one process) never race on it.
  StateFile controller_state(options.state_dir / "controller.json");
  IdentityService identity(api->get(), controller, options.version);
  ControllerService controller_service(api->get(), &controller_state);
  NodeService node_service(options, api->get(), &state, mounters);
  std::vector<grpc::Service*> services = {&identity};
  if (controller) {
    if (auto st = controller_service.Init(); !st.ok()) return fail("controller state", st);
    services.push_back(&controller_service);
  }
  if (node) {
    if (auto st = node_service.Init(); !st.ok()) return fail("node state", st);
    services.push_back(&node_service);
  }
  GrpcServerOptions server_options;
  server_options.address = options.endpoint;
  auto server = GrpcServer::Start(server_options, services);
  if (!server.ok()) return fail("listen", server.status());
  std::unique_ptr<RegistrationService> registration;
  std::unique_ptr<GrpcServer> registration_server;
  if (!options.registration_dir.empty()) {
    std::string socket;
    IsUnixAddress(options.endpoint, &socket);
    // The kubelet dials what GetInfo names, in its own mount namespace.
    if (!options.registration_path.empty()) socket = options.registration_path.string();
    registration = std::make_unique<RegistrationService>(socket);
    GrpcServerOptions reg;
    reg.address = absl::StrCat("unix://",
                               (options.registration_dir / absl::StrCat(kDriverName, "-reg.sock")).string());
    auto started = GrpcServer::Start(reg, {registration.get()});
    if (!started.ok()) return fail("registration socket", started.status());
    registration_server = std::move(*started);
  }
  // Pod mode: mounter pods that were deleted or ended are replaced, and
  // orphans removed, every few seconds.
  absl::Notification stop_repair;
  std::thread repair;
  if (pod_launcher) {
    repair = std::thread([&] {
      do {
        node_service.RepairMounters();
      } while (!stop_repair.WaitForNotificationWithTimeout(absl::Seconds(2)));
    });
  }
  CAIRN_LOG_INFO("cairn-csi %s serving %s on %s", options.version,
                 controller && node ? "controller+node" : (controller ? "controller" : "node"),
                 options.endpoint);
  int sig = 0;
  for (;;) {
    if (sigwait(&sigs, &sig) != 0) continue;
    if (sig != SIGUSR2) break;
    if (!node) {
      CAIRN_LOG_WARNING("SIGUSR2: no node service here, so no mounters to upgrade");
      continue;
    }
    CAIRN_LOG_INFO("SIGUSR2: upgrading mounters to %s", options.mounter.string());
    size_t asked = node_service.UpgradeMounters();
    CAIRN_LOG_INFO("asked %d mounters to hand over", asked);
  }
  CAIRN_LOG_INFO("signal %d: stopping; mounts keep serving", sig);
  if (registration_server) registration_server->Shutdown(absl::Seconds(2));
  (*server)->Shutdown(absl::Seconds(10));
  if (repair.joinable()) {
    stop_repair.Notify();
    repair.join();
  }
  return 0;
}

}  // namespace cairn::csi
