#include "csi/mount_pods.h"

#include <signal.h>

#include <set>
#include <system_error>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/crypto.h"
#include "core/digest.h"
#include "core/log.h"
#include "core/status.h"

namespace cairn::csi {
namespace fs = std::filesystem;

namespace {

const kube::Resource kPods{"", "v1", "pods"};

// DNS-1123 label characters: lower-case letters and digits.
std::string RandomSuffix() {
  static constexpr char kChars[] = "bcdfghjklmnpqrstvwxz0123456789";
  absl::BitGen gen;
  std::string s;
  for (int i = 0; i < 6; ++i) s += kChars[absl::Uniform<size_t>(gen, 0, sizeof kChars - 1)];
  return s;
}

}  // namespace

std::string TargetHash(const fs::path& target) {
  return Sha256(target.lexically_normal().string()).ToHex().substr(0, 16);
}

absl::StatusOr<kube::Json> BuildMounterPod(const MountPodOptions& options, const std::string& name,
                                           const LaunchSpec& spec) {
  kube::Json pod = options.pod_template.is_object() ? options.pod_template : kube::Json::object();
  const kube::Json* containers = kube::Find(pod, {"spec", "containers"});
  if (containers == nullptr || !containers->is_array() || containers->empty() ||
      !(*containers)[0].is_object()) {
    return absl::InvalidArgumentError(
        "the mounter pod template has no container (spec.containers[0] runs cairn-mount)");
  }
  pod["apiVersion"] = "v1";
  pod["kind"] = "Pod";
  kube::Json& meta = pod["metadata"];
  if (!meta.is_object()) meta = kube::Json::object();
  meta.erase("generateName");
  meta["name"] = name;
  meta["namespace"] = options.ns;
  kube::Json& labels = meta["labels"];
  if (!labels.is_object()) labels = kube::Json::object();
  labels[kMounterComponentLabel] = kMounterComponent;
  labels[kVolumeLabel] = spec.volume_id;
  labels[kTargetHashLabel] = TargetHash(spec.target);
  labels[kNodeLabel] = options.node;
  kube::Json& annotations = meta["annotations"];
  if (!annotations.is_object()) annotations = kube::Json::object();
  annotations[kTargetAnnotation] = spec.target.string();

  kube::Json& pod_spec = pod["spec"];
  pod_spec["nodeName"] = options.node;
  if (!pod_spec.contains("restartPolicy")) pod_spec["restartPolicy"] = "OnFailure";
  kube::Json& c = pod_spec["containers"][0];
  if (!c.contains("name")) c["name"] = "mounter";
  if (!c.contains("command")) c["command"] = kube::Json::array({spec.binary.string()});
  kube::Json args = kube::Json::array();
  for (const auto& a : spec.args) {
    if (a != "--handover") args.push_back(a);
  }
  args.push_back("--handover-connect");
  args.push_back((options.socket_dir / (TargetHash(spec.target) + ".sock")).string());
  c["args"] = std::move(args);
  kube::Json& env = c["env"];
  if (!env.is_array()) env = kube::Json::array();
  for (const auto& kv : spec.env) {
    size_t eq = kv.find('=');
    env.push_back({{"name", kv.substr(0, eq)},
                   {"value", eq == std::string::npos ? "" : kv.substr(eq + 1)}});
  }
  return pod;
}

fs::path PodLauncher::Socket(const fs::path& target) const {
  return options_.socket_dir / (TargetHash(target) + ".sock");
}

absl::StatusOr<std::string> PodLauncher::CreatePod(const LaunchSpec& spec) {
  std::string name = absl::StrCat("cairn-mount-", TargetHash(spec.target), "-", RandomSuffix());
  CAIRN_ASSIGN_OR_RETURN(kube::Json pod, BuildMounterPod(options_, name, spec));
  auto created = kube_->Create(kube::ResourcePath(kPods, options_.ns), pod);
  if (!created.ok()) {
    return absl::Status(created.status().code(),
                        absl::StrCat("creating mounter pod ", options_.ns, "/", name, ": ",
                                     created.status().message()));
  }
  return name;
}

absl::Status PodLauncher::DeletePod(const std::string& name) {
  absl::Status st = kube_->Delete(kube::ResourcePath(kPods, options_.ns, name));
  if (st.ok() || kube::IsNotFound(st)) return absl::OkStatus();
  return st;
}

// "Pending (ContainerCreating: …)"-style summary for error messages.
std::string PodLauncher::PodState(const std::string& name) {
  auto pod = kube_->Get(kube::ResourcePath(kPods, options_.ns, name));
  if (!pod.ok()) return std::string(pod.status().message());
  std::string out = kube::GetStringAt(*pod, {"status", "phase"}, "no phase");
  if (const kube::Json* statuses = kube::Find(*pod, {"status", "containerStatuses"});
      statuses != nullptr && statuses->is_array()) {
    for (const auto& s : *statuses) {
      for (const char* k : {"waiting", "terminated"}) {
        std::string reason = kube::GetStringAt(s, {"state", k, "reason"});
        if (reason.empty()) continue;
        absl::StrAppend(&out, " (", reason, ": ", kube::GetStringAt(s, {"state", k, "message"}),
                        ")");
      }
    }
  }
  return out;
}

absl::StatusOr<MounterId> PodLauncher::Launch(const LaunchSpec& spec, absl::Duration timeout) {
  std::error_code ec;
  fs::create_directories(options_.socket_dir, ec);
  if (ec) {
    return ErrnoToStatus(ec.value(), absl::StrCat("create ", options_.socket_dir.string()));
  }
  LaunchSpec holder = spec;
  holder.args.insert(holder.args.end(), {"--handover-listen", Socket(spec.target).string()});
  CAIRN_ASSIGN_OR_RETURN(MounterId id, holders_->Start(holder));
  auto kill_holder = [&] {
    if (IsAlive(id)) ::kill(id.pid, SIGKILL);
    for (int i = 0; i < 100 && IsAlive(id); ++i) absl::SleepFor(absl::Milliseconds(20));
  };
  auto pod = CreatePod(spec);
  if (!pod.ok()) {
    kill_holder();
    return pod.status();
  }
  id.pod = *pod;
  absl::Status ready = WaitMountReady(spec.target, id, timeout);
  if (ready.ok()) return id;
  std::string state = PodState(id.pod);
  kill_holder();
  (void)DeletePod(id.pod);
  (void)LazyUnmount(spec.target);
  std::string tail = FileTail(spec.log_file, 800);
  return absl::Status(ready.code(),
                      absl::StrCat(ready.message(), "; mounter pod ", options_.ns, "/", id.pod,
                                   ": ", state, " (kubectl logs -n ", options_.ns, " ", id.pod,
                                   ")", tail.empty() ? "" : "; holder log: ", tail));
}

absl::Status PodLauncher::Stop(const MounterId& id, absl::Duration timeout) {
  absl::Status stopped = holders_->Stop(id, timeout);
  if (id.pod.empty()) return stopped;
  absl::Status deleted = DeletePod(id.pod);
  return stopped.ok() ? deleted : stopped;
}

absl::Status PodLauncher::Upgrade(const MounterId& id) {
  if (id.pod.empty()) return holders_->Upgrade(id);
  if (!IsAlive(id)) {
    return absl::FailedPreconditionError(absl::StrCat("the holder ", id.pid, " is not running"));
  }
  return DeletePod(id.pod);
}

absl::Status PodLauncher::Repair(const LaunchSpec& spec, MounterId* id) {
  if (id->pod.empty()) return absl::OkStatus();
  auto pod = kube_->Get(kube::ResourcePath(kPods, options_.ns, id->pod));
  if (!pod.ok() && !kube::IsNotFound(pod.status())) return pod.status();
  if (pod.ok()) {
    std::string phase = kube::GetStringAt(*pod, {"status", "phase"});
    bool ended = phase == "Succeeded" || phase == "Failed";
    if (kube::Find(*pod, {"metadata", "deletionTimestamp"}) == nullptr && !ended) {
      return absl::OkStatus();
    }
    if (ended) CAIRN_RETURN_IF_ERROR(DeletePod(id->pod));
  }
  CAIRN_ASSIGN_OR_RETURN(std::string name, CreatePod(spec));
  CAIRN_LOG_INFO("mounter pod %s of %s is gone; %s takes the mount over", id->pod,
                 spec.target.string(), name);
  id->pod = std::move(name);
  return absl::OkStatus();
}

absl::Status PodLauncher::CollectGarbage(const std::vector<MounterId>& live) {
  std::set<std::string> keep;
  for (const auto& id : live) keep.insert(id.pod);
  kube::ListOptions list;
  list.label_selector = absl::StrCat(kMounterComponentLabel, "=", kMounterComponent, ",",
                                     kNodeLabel, "=", options_.node);
  CAIRN_ASSIGN_OR_RETURN(kube::ListResult pods,
                         kube_->List(kube::ResourcePath(kPods, options_.ns), list));
  for (const auto& pod : pods.items) {
    std::string name = kube::GetStringAt(pod, {"metadata", "name"});
    if (keep.contains(name) || kube::Find(pod, {"metadata", "deletionTimestamp"}) != nullptr) {
      continue;
    }
    CAIRN_LOG_INFO("deleting mounter pod %s: no publication on this node uses it", name);
    CAIRN_RETURN_IF_ERROR(DeletePod(name));
  }
  return absl::OkStatus();
}

}  // namespace cairn::csi
