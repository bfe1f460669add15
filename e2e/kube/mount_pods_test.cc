// Mounter pods against a real kube-apiserver (tier "kube"): the chart's
// pod template (helm template, csi.node.mounter=pod) with what cairn-csi
// adds is accepted by the API server's validation (privileged,
// Bidirectional hostPath, resources), the chart's Role lets the node
// plugin manage pods in its namespace only, and PodLauncher's Repair,
// CollectGarbage and failed Launch act on real pod objects. There is no
// kubelet here: pods stay Pending and deleted ones stay Terminating, which
// is what a node whose kubelet is slow looks like. The cluster tier
// (e2e/cluster) runs mounter pods for real.
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "core/testing/temp_dir.h"
#include "csi/mount_pods.h"
#include "e2e/kube/cluster.h"
#include "gtest/gtest.h"
#include "yaml-cpp/yaml.h"

namespace cairn::e2e {
namespace {

namespace fs = std::filesystem;
using csi::LaunchSpec;
using csi::MounterId;
using csi::MountPodOptions;
using csi::PodLauncher;

constexpr char kNs[] = "cairn-mp";
constexpr char kPlugin[] = "system:serviceaccount:cairn-mp:cairn-csi-node";

class MountPodsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new cairn::testing::TempDir();
    error_ = new std::string(Boot());
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }
  static std::string Boot() {
    auto c = KubeCluster::Start(dir_->path() / "cluster");
    if (!c.ok()) return c.status().ToString();
    cluster_ = c->release();
    auto helm = GoTool("helm");
    if (!helm.ok()) return helm.status().ToString();
    RunResult ns = cluster_->Kubectl({"create", "namespace", kNs});
    if (ns.exit_code != 0) return "create namespace: " + ns.err;
    // The chart's mount-pod objects (Role, RoleBinding, ConfigMap) plus
    // the node plugin's service account from csi-node.yaml.
    RunResult t = RunProcess({helm->string(), "template", "cairn",
                              (fs::path(CAIRN_SOURCE_DIR) / "charts/cairn").string(), "-n", kNs,
                              "--kube-version", "v1.34.4", "--set", "csi.node.mounter=pod",
                              "--show-only", "templates/csi-mount-pods.yaml"});
    if (t.exit_code != 0) return "helm template: " + t.err;
    rendered_ = new std::string(t.out);
    RunResult applied = cluster_->Kubectl(
        {"apply", "-f", "-"},
        t.out + "\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: cairn-csi-node, "
                "namespace: cairn-mp}\n"
                // No controller-manager here makes the namespace's default account.
                "---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: default, "
                "namespace: cairn-mp}\n");
    if (applied.exit_code != 0) return "kubectl apply: " + applied.err;
    return "";
  }

  void SetUp() override {
    if (error_->empty()) return;
    if (MaySkipForMissingTools() && absl::StrContains(*error_, "go-tools.sh")) {
      GTEST_SKIP() << "Kubernetes tools unavailable (CI unset): " << *error_;
    }
    FAIL() << *error_;
  }

  // The chart's pod template: the ConfigMap's pod.json.
  static kube::Json Template() {
    for (const YAML::Node& doc : YAML::LoadAll(*rendered_)) {
      if (doc["kind"] && doc["kind"].as<std::string>() == "ConfigMap") {
        return kube::ParseJson(doc["data"]["pod.json"].as<std::string>());
      }
    }
    ADD_FAILURE() << "no ConfigMap in\n" << *rendered_;
    return kube::Json::object();
  }

  static MountPodOptions Options() {
    MountPodOptions o;
    o.ns = kNs;
    o.node = "n1";
    o.pod_template = Template();
    o.socket_dir = dir_->path() / "handover";
    return o;
  }

  static LaunchSpec Spec(const std::string& target) {
    LaunchSpec spec;
    spec.binary = BuiltBinary("mounter/cairn-mount");
    spec.target = target;
    spec.volume_id = "vo-0123456789abcdef";
    spec.args = {spec.volume_id, target, "--namespace", "default", "--handover"};
    spec.env = {"CAIRN_TOKEN_FILE=/etc/cairn/api-token/token"};
    spec.log_file = dir_->path() / "holder.log";
    return spec;
  }

  static std::string PodPath(const std::string& name = "") {
    return kube::ResourcePath({"", "v1", "pods"}, kNs, name);
  }

  static inline cairn::testing::TempDir* dir_ = nullptr;
  static inline KubeCluster* cluster_ = nullptr;
  static inline std::string* error_ = nullptr;
  static inline std::string* rendered_ = nullptr;
};

// What cairn-csi creates passes the API server's validation with every
// field the mount needs.
TEST_F(MountPodsTest, TheChartsTemplateMakesAValidPrivilegedMounterPod) {
  LaunchSpec spec = Spec("/var/lib/kubelet/pods/p1/volumes/kubernetes.io~csi/v/mount");
  auto pod = csi::BuildMounterPod(Options(), "cairn-mount-spec-test", spec);
  ASSERT_TRUE(pod.ok()) << pod.status();
  auto created = cluster_->client().Create(PodPath(), *pod);
  ASSERT_TRUE(created.ok()) << created.status();
  auto got = cluster_->client().Get(PodPath("cairn-mount-spec-test"));
  ASSERT_TRUE(got.ok()) << got.status();
  const kube::Json& j = *got;
  EXPECT_EQ(j["spec"]["nodeName"], "n1");
  EXPECT_EQ(j["spec"]["hostNetwork"], true);
  EXPECT_EQ(j["spec"]["restartPolicy"], "OnFailure");
  EXPECT_EQ(j["spec"]["priorityClassName"], "system-node-critical");
  const kube::Json& labels = j["metadata"]["labels"];
  EXPECT_EQ(labels[csi::kMounterComponentLabel], "mounter");
  EXPECT_EQ(labels[csi::kVolumeLabel], "vo-0123456789abcdef");
  EXPECT_EQ(labels[csi::kNodeLabel], "n1");
  EXPECT_EQ(labels[csi::kTargetHashLabel], csi::TargetHash(spec.target));
  const kube::Json& c = j["spec"]["containers"][0];
  EXPECT_EQ(c["securityContext"]["privileged"], true);
  EXPECT_EQ(c["resources"]["limits"]["memory"], "1Gi");
  EXPECT_EQ(c["resources"]["requests"]["cpu"], "20m");
  bool bidirectional = false;
  for (const auto& m : c["volumeMounts"]) {
    if (m["mountPath"] == "/var/lib/kubelet") {
      bidirectional = m["mountPropagation"] == "Bidirectional";
    }
  }
  EXPECT_TRUE(bidirectional) << c.dump(2);
  std::string args = c["args"].dump();
  EXPECT_TRUE(absl::StrContains(args, "--handover-connect")) << args;
  EXPECT_FALSE(absl::StrContains(args, "\"--handover\"")) << args;
  ASSERT_TRUE(cluster_->client().Delete(PodPath("cairn-mount-spec-test")).ok());
}

// The node plugin's account may manage pods in its namespace, and only there.
TEST_F(MountPodsTest, TheNodePluginsRoleCoversPodsInItsNamespaceOnly) {
  for (const char* verb : {"create", "get", "delete", "list", "watch"}) {
    RunResult r = cluster_->Kubectl({"auth", "can-i", verb, "pods", "-n", kNs, "--as", kPlugin});
    EXPECT_EQ(absl::StripAsciiWhitespace(r.out), "yes") << verb << ": " << r.err;
  }
  RunResult other = cluster_->Kubectl({"auth", "can-i", "create", "pods", "-n", "default", "--as",
                                       kPlugin});
  EXPECT_EQ(absl::StripAsciiWhitespace(other.out), "no") << other.err;
  RunResult secrets =
      cluster_->Kubectl({"auth", "can-i", "get", "secrets", "-n", kNs, "--as", kPlugin});
  EXPECT_EQ(absl::StripAsciiWhitespace(secrets.out), "no") << secrets.err;
}

// A deleted mounter pod is replaced under a new name; orphans of this node
// are deleted, other nodes' pods are left alone.
TEST_F(MountPodsTest, RepairReplacesADeletedPodAndGarbageGoes) {
  csi::ProcessLauncher holders;
  PodLauncher launcher(&holders, &cluster_->client(), Options());
  LaunchSpec spec = Spec("/var/lib/kubelet/pods/p2/volumes/kubernetes.io~csi/v/mount");
  auto first = csi::BuildMounterPod(Options(), "cairn-mount-repair-a", spec);
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(cluster_->client().Create(PodPath(), *first).ok());
  MounterId id{::getpid(), 0, "cairn-mount-repair-a"};
  ASSERT_TRUE(launcher.Repair(spec, &id).ok());
  EXPECT_EQ(id.pod, "cairn-mount-repair-a");  // there and not ending: kept
  ASSERT_TRUE(cluster_->client().Delete(PodPath("cairn-mount-repair-a")).ok());
  ASSERT_TRUE(launcher.Repair(spec, &id).ok());
  ASSERT_NE(id.pod, "cairn-mount-repair-a");
  EXPECT_TRUE(absl::StartsWith(id.pod, "cairn-mount-" + csi::TargetHash(spec.target) + "-"))
      << id.pod;
  auto replacement = cluster_->client().Get(PodPath(id.pod));
  ASSERT_TRUE(replacement.ok()) << replacement.status();
  EXPECT_EQ((*replacement)["metadata"]["labels"][csi::kTargetHashLabel],
            csi::TargetHash(spec.target));

  // An orphan on this node, and a mounter pod of another node.
  LaunchSpec orphan_spec = Spec("/var/lib/kubelet/pods/gone/volumes/kubernetes.io~csi/v/mount");
  auto orphan = csi::BuildMounterPod(Options(), "cairn-mount-orphan", orphan_spec);
  MountPodOptions n2 = Options();
  n2.node = "n2";
  auto elsewhere = csi::BuildMounterPod(n2, "cairn-mount-n2", orphan_spec);
  ASSERT_TRUE(orphan.ok() && elsewhere.ok());
  ASSERT_TRUE(cluster_->client().Create(PodPath(), *orphan).ok());
  ASSERT_TRUE(cluster_->client().Create(PodPath(), *elsewhere).ok());
  ASSERT_TRUE(launcher.CollectGarbage({id}).ok());
  auto gone = cluster_->client().Get(PodPath("cairn-mount-orphan"));
  // Deleted: gone, or Terminating for want of a kubelet.
  EXPECT_TRUE(!gone.ok() || kube::Find(*gone, {"metadata", "deletionTimestamp"}) != nullptr);
  auto kept = cluster_->client().Get(PodPath(id.pod));
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kube::Find(*kept, {"metadata", "deletionTimestamp"}), nullptr);
  auto other = cluster_->client().Get(PodPath("cairn-mount-n2"));
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(kube::Find(*other, {"metadata", "deletionTimestamp"}), nullptr);
}

// A mounter pod that never serves (no kubelet runs it): Launch fails with
// the pod's state, and leaves no holder, no pod and no socket behind.
TEST_F(MountPodsTest, ALaunchThatNeverServesLeavesNothingBehind) {
  csi::ProcessLauncher holders;
  PodLauncher launcher(&holders, &cluster_->client(), Options());
  fs::path target = dir_->path() / "target";
  fs::create_directories(target);
  LaunchSpec spec = Spec(target.string());
  spec.env.clear();  // no API token file here; the holder needs none
  auto id = launcher.Launch(spec, absl::Seconds(3));
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), absl::StatusCode::kDeadlineExceeded) << id.status();
  EXPECT_TRUE(absl::StrContains(id.status().message(), "Pending")) << id.status();
  EXPECT_TRUE(absl::StrContains(id.status().message(), "kubectl logs")) << id.status();
  kube::ListOptions list;
  list.label_selector = absl::StrCat(csi::kTargetHashLabel, "=", csi::TargetHash(target));
  auto pods = cluster_->client().List(PodPath(), list);
  ASSERT_TRUE(pods.ok());
  for (const auto& p : pods->items) {
    EXPECT_NE(kube::Find(p, {"metadata", "deletionTimestamp"}), nullptr) << p.dump();
  }
  EXPECT_FALSE(csi::IsCairnMounted(target));
  // No holder process for the socket is left.
  std::string sock = (dir_->path() / "handover" / (csi::TargetHash(target) + ".sock")).string();
  for (const auto& e : fs::directory_iterator("/proc")) {
    std::string cmdline = ReadWholeFile(e.path() / "cmdline");
    if (!absl::StrContains(cmdline, sock)) continue;
    std::string stat = ReadWholeFile(e.path() / "stat");
    EXPECT_TRUE(absl::StrContains(stat, ") Z ")) << "holder still running: " << e.path();
  }
}

}  // namespace
}  // namespace cairn::e2e
