// Installing Cairn on a cluster (tier "kube"): the chart against a real
// etcd + kube-apiserver (e2e/kube/chart_check.sh), and dynamic provisioning
// and snapshots through the real Kubernetes pieces that drive a CSI driver:
// kube-controller-manager's volume controllers (the PV binder and the
// PV/PVC protection controllers), the external-provisioner, and the
// external-snapshotter's snapshot-controller and csi-snapshotter, all as
// processes, talking to a real cairn-csi controller backed by a real
// `cairn server`. Nothing is faked; the tools come from scripts/go-tools.sh
// and a missing one FAILS the test when CI=true.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/testing/temp_dir.h"
#include "e2e/csi/csi_fixture.h"
#include "e2e/kube/cluster.h"
#include "gtest/gtest.h"
#include "operator/kube/errors.h"

namespace cairn::e2e {
namespace {

namespace fs = std::filesystem;
using kube::Json;
using Clock = std::chrono::steady_clock;


std::string PvcPath(const std::string& ns, const std::string& name = "") {
  return absl::StrCat("/api/v1/namespaces/", ns, "/persistentvolumeclaims",
                      name.empty() ? "" : "/", name);
}
std::string PvPath(const std::string& name) { return "/api/v1/persistentvolumes/" + name; }
std::string SnapshotPath(const std::string& ns, const std::string& name) {
  return absl::StrCat("/apis/snapshot.storage.k8s.io/v1/namespaces/", ns, "/volumesnapshots/", name);
}

class InstallTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new cairn::testing::TempDir();
    error_ = new std::string(Boot());
  }
  static void TearDownTestSuite() {
    // Sidecars first, so nothing acts on a half-torn cluster.
    delete snapshotter_;
    delete snapshot_controller_;
    delete provisioner_;
    delete controller_manager_;
    delete plugin_;
    delete server_;
    delete cluster_;
    delete dir_;
    snapshotter_ = snapshot_controller_ = provisioner_ = controller_manager_ = nullptr;
    plugin_ = nullptr;
    server_ = nullptr;
    cluster_ = nullptr;
  }

  // Starts everything; "" on success, else what failed.
  static std::string Boot() {
    const fs::path d = dir_->path();
    auto c = KubeCluster::Start(d / "cluster");
    if (!c.ok()) return c.status().ToString();
    cluster_ = c->release();
    for (const char* t : {"helm", "kube-controller-manager", "external-provisioner"}) {
      auto p = GoTool(t);
      if (!p.ok()) return p.status().ToString();
      (*tools_)[t] = *p;
    }
    ServerProcess::Options so;
    so.data_dir = d / "server";
    auto s = ServerProcess::Start(so);
    if (!s.ok()) return "cairn server: " + s.status().ToString();
    server_ = s->release();
    fs::create_directories(d / "csi");
    auto p = Plugin::Start(d / "csi", server_->address(), {"--mode", "controller"});
    if (!p.ok()) return "cairn-csi: " + p.status().ToString();
    plugin_ = p->release();

    const std::string kubeconfig = cluster_->kubeconfig().string();
    // Only the volume controllers: they bind claims, set the provisioner
    // annotation the external-provisioner waits for, and lift the
    // protection finalizers on delete.
    auto kcm = Child::Spawn(
        {(*tools_)["kube-controller-manager"].string(), "--kubeconfig", kubeconfig,
         "--leader-elect=false", "--secure-port=0",
         "--controllers=persistentvolume-binder-controller,persistentvolume-protection-controller,"
         "persistentvolumeclaim-protection-controller",
         "--pvclaimbinder-sync-period=2s", "--v=2"},
        {}, d / "kube-controller-manager.log");
    if (!kcm.ok()) return kcm.status().ToString();
    controller_manager_ = kcm->release();
    RunResult r = cluster_->Kubectl({"create", "namespace", kNs});
    if (r.exit_code != 0) return "creating the namespace: " + r.err;
    if (std::string e = SidecarCredentials(); !e.empty()) return e;
    if (std::string e = StartProvisioner(); !e.empty()) return e;
    return "";
  }

  // The sidecars run as the chart's CSI controller ServiceAccount with the
  // chart's RBAC (snapshots on), not as an admin: what they need and the
  // chart grants must agree. A kubeconfig with a token for that account.
  // Release "sidecars", so the cluster-wide names do not collide with the
  // chart check's release "cairn".
  static std::string SidecarCredentials() {
    const std::string sa = "sidecars-cairn-csi-controller";
    RunResult r = cluster_->Kubectl({"create", "serviceaccount", sa, "-n", kNs});
    if (r.exit_code != 0) return "creating the ServiceAccount: " + r.err;
    RunResult rbac = RunProcess({Helm(), "template", "sidecars",
                                 (fs::path(CAIRN_SOURCE_DIR) / "charts/cairn").string(), "--namespace",
                                 kNs, "--kube-version", "1.34.4", "-s", "templates/rbac.yaml",
                                 "--set", "snapshots.enabled=true"});
    if (rbac.exit_code != 0) return "helm template rbac.yaml: " + rbac.err;
    r = cluster_->Kubectl({"apply", "-f", "-"}, rbac.out);
    if (r.exit_code != 0) return "applying the chart's RBAC: " + r.err;
    r = cluster_->Kubectl({"create", "token", sa, "-n", kNs, "--duration=4h"});
    std::string token(absl::StripAsciiWhitespace(r.out));
    if (r.exit_code != 0 || token.empty()) return "a token for " + sa + ": " + r.err;
    *sidecar_kubeconfig_ = dir_->path() / "csi-controller.kubeconfig";
    WriteWholeFile(*sidecar_kubeconfig_,
                   absl::StrCat("apiVersion: v1\nkind: Config\ncurrent-context: sa\n"
                                "clusters:\n- name: e2e\n  cluster:\n    server: ",
                                cluster_->server_url(), "\n    certificate-authority: ",
                                (dir_->path() / "cluster/pki/ca.crt").string(),
                                "\ncontexts:\n- name: sa\n  context: {cluster: e2e, user: sa}\n"
                                "users:\n- name: sa\n  user:\n    token: ",
                                token, "\n"));
    return "";
  }

  // The snapshot pieces, started by the snapshot test only: "" or what failed.
  static std::string BootSnapshots() {
    const fs::path d = dir_->path();
    auto crds = GoTool("snapshot-crds");
    if (!crds.ok()) return crds.status().ToString();
    for (const char* crd : {"snapshot.storage.k8s.io_volumesnapshotclasses.yaml",
                            "snapshot.storage.k8s.io_volumesnapshotcontents.yaml",
                            "snapshot.storage.k8s.io_volumesnapshots.yaml"}) {
      RunResult r = cluster_->Kubectl({"apply", "-f", (*crds / crd).string()});
      if (r.exit_code != 0) return absl::StrCat("applying ", crd, ": ", r.err);
    }
    RunResult r = cluster_->Kubectl({"wait", "--for", "condition=established", "--timeout=60s",
                                     "crd/volumesnapshots.snapshot.storage.k8s.io",
                                     "crd/volumesnapshotcontents.snapshot.storage.k8s.io",
                                     "crd/volumesnapshotclasses.snapshot.storage.k8s.io"});
    if (r.exit_code != 0) return "snapshot CRDs not established: " + r.err;
    for (const char* t : {"snapshot-controller", "csi-snapshotter"}) {
      auto p = GoTool(t);
      if (!p.ok()) return p.status().ToString();
      (*tools_)[t] = *p;
    }
    const std::string kubeconfig = cluster_->kubeconfig().string();
    auto sc = Child::Spawn({(*tools_)["snapshot-controller"].string(), "--kubeconfig", kubeconfig,
                            "--leader-election=false", "--v=3"},
                           {}, d / "snapshot-controller.log");
    if (!sc.ok()) return sc.status().ToString();
    snapshot_controller_ = sc->release();
    return StartSnapshotter();
  }

  // The sidecars exit when they lose the driver's socket (in a pod, the
  // kubelet restarts them); these start one again, appending to its log.
  static std::string StartProvisioner() {
    delete provisioner_;
    provisioner_ = nullptr;
    auto prov = Child::Spawn({(*tools_)["external-provisioner"].string(), "--kubeconfig",
                              sidecar_kubeconfig_->string(), "--csi-address",
                              plugin_->socket().string(), "--extra-create-metadata",
                              "--timeout=60s", "--v=3"},
                             {}, dir_->path() / "external-provisioner.log");
    if (!prov.ok()) return prov.status().ToString();
    provisioner_ = prov->release();
    return "";
  }
  static std::string StartSnapshotter() {
    delete snapshotter_;
    snapshotter_ = nullptr;
    auto ss = Child::Spawn({(*tools_)["csi-snapshotter"].string(), "--kubeconfig",
                            sidecar_kubeconfig_->string(), "--csi-address",
                            plugin_->socket().string(), "--extra-create-metadata",
                            "--leader-election=false", "--timeout=60s", "--v=3"},
                           {}, dir_->path() / "csi-snapshotter.log");
    if (!ss.ok()) return ss.status().ToString();
    snapshotter_ = ss->release();
    return "";
  }

  void SetUp() override {
    if (error_->empty()) return;
    if (MaySkipForMissingTools() && absl::StrContains(*error_, "go-tools.sh")) {
      GTEST_SKIP() << "Kubernetes tools unavailable (CI unset): " << *error_;
    }
    FAIL() << *error_;
  }

  void TearDown() override {
    if (cluster_ != nullptr) DeleteClasses();
    // The chart's RBAC must cover everything the sidecars tried.
    for (const char* log : {"external-provisioner.log", "csi-snapshotter.log"}) {
      std::string text = ReadWholeFile(dir_->path() / log);
      size_t at = text.find("forbidden");
      EXPECT_EQ(at, std::string::npos)
          << log << ": " << text.substr(at == std::string::npos ? 0 : (at > 300 ? at - 300 : 0), 600);
    }
    if (HasFailure() && cluster_ != nullptr) {
      for (const char* log : {"kube-controller-manager.log", "external-provisioner.log",
                              "snapshot-controller.log", "csi-snapshotter.log"}) {
        std::string text = ReadWholeFile(dir_->path() / log);
        if (text.size() > 6000) text = text.substr(text.size() - 6000);
        if (!text.empty()) std::fprintf(stderr, "--- %s (tail)\n%s\n", log, text.c_str());
      }
      if (plugin_ != nullptr) std::fprintf(stderr, "--- cairn-csi\n%s\n", plugin_->Log().c_str());
    }
  }

  static std::string Helm() { return (*tools_)["helm"].string(); }

  // The chart's own StorageClass (or VolumeSnapshotClass) as `helm template`
  // renders it with `sets`, applied to the cluster.
  void ApplyFromChart(const std::string& template_file, const std::vector<std::string>& sets) {
    std::vector<std::string> argv = {Helm(), "template", "cairn",
                                     (fs::path(CAIRN_SOURCE_DIR) / "charts/cairn").string(),
                                     "--namespace", kNs, "--kube-version", "1.34.4",
                                     "-s", template_file};
    for (const std::string& s : sets) {
      argv.push_back("--set");
      argv.push_back(s);
    }
    RunResult r = RunProcess(argv);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    RunResult a = cluster_->Kubectl({"apply", "-f", "-"}, r.out);
    ASSERT_EQ(a.exit_code, 0) << a.err << "\n" << r.out;
  }
  // A StorageClass `name` rendered from the chart with extra values.
  void StorageClass(const std::string& name, std::vector<std::string> sets) {
    sets.push_back("storageClass.name=" + name);
    ApplyFromChart("templates/storageclass.yaml", sets);
    classes_.push_back(name);
  }
  void DeleteClasses() {
    for (const std::string& c : classes_) (void)cluster_->Kubectl({"delete", "storageclass", c});
    classes_.clear();
  }

  // examples/FILE as shipped, moved from namespace default to the test's.
  void ApplyExample(const std::string& file) {
    std::string yaml = ReadWholeFile(fs::path(CAIRN_SOURCE_DIR) / "examples" / file);
    ASSERT_TRUE(absl::StrContains(yaml, "namespace: default")) << file;
    absl::StrReplaceAll({{"namespace: default", absl::StrCat("namespace: ", kNs)}}, &yaml);
    RunResult r = cluster_->Kubectl({"apply", "-f", "-"}, yaml);
    ASSERT_EQ(r.exit_code, 0) << file << ": " << r.err;
  }

  void CreatePvc(const std::string& name, const std::string& storage_class,
                 const std::string& extra_spec = "") {
    RunResult r = cluster_->Kubectl(
        {"apply", "-f", "-"},
        absl::StrCat("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: ", name,
                     "\n  namespace: ", kNs, "\nspec:\n  storageClassName: ", storage_class,
                     "\n  accessModes: [ReadWriteMany]\n  resources:\n    requests:\n"
                     "      storage: 1Gi\n",
                     extra_spec));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  // Waits for the claim to be Bound; returns it (or the last seen).
  Json WaitBound(const std::string& name, std::chrono::seconds timeout = std::chrono::seconds(90)) {
    const auto deadline = Clock::now() + timeout;
    Json last;
    while (Clock::now() < deadline) {
      auto pvc = cluster_->client().Get(PvcPath(kNs, name));
      if (pvc.ok()) {
        last = *pvc;
        if (kube::GetStringAt(last, {"status", "phase"}) == "Bound") return last;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "claim " << name << " not Bound in " << timeout.count()
                  << " s: " << kube::Dump(last);
    return last;
  }
  // The bound claim's PV.
  Json PvOf(const Json& pvc) {
    std::string pv = kube::GetStringAt(pvc, {"spec", "volumeName"});
    auto got = cluster_->client().Get(PvPath(pv));
    EXPECT_TRUE(got.ok()) << pv << ": " << got.status();
    return got.ok() ? *got : Json();
  }
  static std::string HandleOf(const Json& pv) {
    return kube::GetStringAt(pv, {"spec", "csi", "volumeHandle"});
  }

  // Cairn volumes in the namespace, as the real CLI lists them: name -> ID.
  std::map<std::string, std::string> CairnVolumes() {
    RunResult r = RunCli(*server_, {"-n", kNs, "volume", "list", "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::map<std::string, std::string> out;
    Json j = kube::ParseJson(r.out);
    if (j.is_array()) {
      for (const Json& v : j) out[kube::GetString(v, "name")] = kube::GetString(v, "id");
    }
    return out;
  }
  bool HasCairnVolumeId(const std::string& id) {
    auto vols = CairnVolumes();
    return std::any_of(vols.begin(), vols.end(), [&](const auto& e) { return e.second == id; });
  }

  void DeletePvc(const std::string& name) {
    RunResult r = cluster_->Kubectl({"delete", "pvc", "-n", kNs, name, "--timeout=60s"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  // Polls `pred` for up to `timeout`.
  static bool Eventually(const std::function<bool()>& pred,
                         std::chrono::seconds timeout = std::chrono::seconds(60)) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return pred();
  }
  bool PvGone(const std::string& pv) {
    return kube::IsNotFound(cluster_->client().Get(PvPath(pv)).status());
  }
  std::string PvPhase(const std::string& pv) {
    auto got = cluster_->client().Get(PvPath(pv));
    return got.ok() ? kube::GetStringAt(*got, {"status", "phase"}) : "";
  }

  static constexpr char kNs[] = "cairn-install-test";
  static cairn::testing::TempDir* dir_;
  static std::string* error_;
  static std::map<std::string, fs::path>* tools_;
  static fs::path* sidecar_kubeconfig_;
  static KubeCluster* cluster_;
  static ServerProcess* server_;
  static Plugin* plugin_;
  static Child *controller_manager_, *provisioner_, *snapshot_controller_, *snapshotter_;
  std::vector<std::string> classes_;
};

cairn::testing::TempDir* InstallTest::dir_ = nullptr;
std::string* InstallTest::error_ = nullptr;
std::map<std::string, fs::path>* InstallTest::tools_ = new std::map<std::string, fs::path>();
KubeCluster* InstallTest::cluster_ = nullptr;
fs::path* InstallTest::sidecar_kubeconfig_ = new fs::path();
ServerProcess* InstallTest::server_ = nullptr;
Plugin* InstallTest::plugin_ = nullptr;
Child* InstallTest::controller_manager_ = nullptr;
Child* InstallTest::provisioner_ = nullptr;
Child* InstallTest::snapshot_controller_ = nullptr;
Child* InstallTest::snapshotter_ = nullptr;

// helm template passes a server-side dry run, helm install/upgrade/uninstall
// keep what must be kept (the script's own checks; it names the failure).
TEST_F(InstallTest, ChartCheckAgainstTheRealApiServer) {
  RunOptions o;
  o.timeout = std::chrono::seconds(900);
  o.env = {"HELM=" + Helm(), "KUBECTL=" + cluster_->tools().kubectl.string()};
  RunResult r = RunProcess({"/bin/bash",
                            (fs::path(CAIRN_SOURCE_DIR) / "e2e/kube/chart_check.sh").string(),
                            cluster_->kubeconfig().string()},
                           o);
  std::fprintf(stderr, "%s", r.out.c_str());
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "chart_check: ")) << r.out;
}

// A claim of the chart's StorageClass `cairn` (defaults: PV reclaim Delete,
// Cairn deletionPolicy Retain) binds to a new Cairn volume named after the
// claim; deleting the claim removes the PV and keeps the volume's data.
TEST_F(InstallTest, ClaimOfClassCairnBindsToANewCairnVolume) {
  StorageClass("cairn", {});
  const auto start = Clock::now();
  CreatePvc("data", "cairn");
  Json pvc = WaitBound("data");
  const double bound_s = std::chrono::duration<double>(Clock::now() - start).count();
  std::fprintf(stderr, "PVC bound in %.1f s\n", bound_s);
  ::testing::Test::RecordProperty("pvc_bound_seconds", absl::StrCat(bound_s));
  Json pv = PvOf(pvc);
  const std::string handle = HandleOf(pv);
  ASSERT_TRUE(handle.starts_with("vo-")) << kube::Dump(pv);
  EXPECT_EQ(kube::GetStringAt(pv, {"spec", "csi", "driver"}), "csi.cairn.dev");
  auto vols = CairnVolumes();
  ASSERT_EQ(vols.count("data"), 1u) << "no Cairn volume named after the claim";
  EXPECT_EQ(vols["data"], handle);

  // Data written through the control plane stays when the claim goes.
  WriteWholeFile(dir_->path() / "kept.txt", "kept across the claim\n");
  RunResult put = RunCli(*server_, {"-n", kNs, "volume", "put", "data",
                                    (dir_->path() / "kept.txt").string(), "/kept.txt"});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  const std::string pv_name = kube::GetStringAt(pv, {"metadata", "name"});
  DeletePvc("data");
  EXPECT_TRUE(Eventually([&] { return PvGone(pv_name); })) << "PV " << pv_name << " stays";
  EXPECT_TRUE(HasCairnVolumeId(handle)) << "deletionPolicy Retain lost the volume";
  RunResult get = RunCli(*server_, {"-n", kNs, "volume", "get", "data", "/kept.txt", "-"});
  EXPECT_EQ(get.out, "kept across the claim\n") << get.err;
  DeleteClasses();
}

// deletionPolicy Delete: the Cairn volume goes with the claim's PV.
TEST_F(InstallTest, DeletionPolicyDeleteRemovesTheCairnVolume) {
  StorageClass("cairn-delete", {"storageClass.parameters.deletionPolicy=Delete"});
  CreatePvc("scratch", "cairn-delete");
  Json pv = PvOf(WaitBound("scratch"));
  const std::string handle = HandleOf(pv);
  ASSERT_TRUE(HasCairnVolumeId(handle)) << handle;
  DeletePvc("scratch");
  const std::string pv_name = kube::GetStringAt(pv, {"metadata", "name"});
  EXPECT_TRUE(Eventually([&] { return PvGone(pv_name); })) << "PV " << pv_name << " stays";
  EXPECT_TRUE(Eventually([&] { return !HasCairnVolumeId(handle); }))
      << "the Cairn volume " << handle << " outlived its claim under deletionPolicy Delete";
  DeleteClasses();
}

// PV reclaimPolicy Retain: the PV stays Released, DeleteVolume is never
// called, and the Cairn volume stays even with deletionPolicy Delete.
TEST_F(InstallTest, ReclaimPolicyRetainKeepsPvAndVolume) {
  StorageClass("cairn-retain", {"storageClass.reclaimPolicy=Retain",
                                "storageClass.parameters.deletionPolicy=Delete"});
  CreatePvc("keep", "cairn-retain");
  Json pv = PvOf(WaitBound("keep"));
  const std::string handle = HandleOf(pv);
  const std::string pv_name = kube::GetStringAt(pv, {"metadata", "name"});
  EXPECT_EQ(kube::GetStringAt(pv, {"spec", "persistentVolumeReclaimPolicy"}), "Retain");
  DeletePvc("keep");
  EXPECT_TRUE(Eventually([&] { return PvPhase(pv_name) == "Released"; })) << PvPhase(pv_name);
  // Give a wrong DeleteVolume time to happen before checking it did not.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_EQ(PvPhase(pv_name), "Released");
  EXPECT_TRUE(HasCairnVolumeId(handle));
  EXPECT_FALSE(absl::StrContains(plugin_->Log(), "DeleteVolume " + handle));
  (void)cluster_->Kubectl({"delete", "pv", pv_name});
  DeleteClasses();
}

// Claims of a class with a volumeName share that one Cairn volume. The
// external-provisioner may repeat DeleteVolume for one PV, which cannot be
// told from the other claim's (same volume ID), so even under deletionPolicy
// Delete a shared volume stays until it is deleted through the Volume API.
TEST_F(InstallTest, ClaimsWithOneVolumeNameShareOneVolume) {
  StorageClass("cairn-shared", {"storageClass.parameters.volumeName=shared",
                                "storageClass.parameters.deletionPolicy=Delete"});
  CreatePvc("writer", "cairn-shared");
  CreatePvc("reader", "cairn-shared");
  Json pv1 = PvOf(WaitBound("writer"));
  Json pv2 = PvOf(WaitBound("reader"));
  const std::string handle = HandleOf(pv1);
  ASSERT_TRUE(handle.starts_with("vo-")) << kube::Dump(pv1);
  EXPECT_EQ(HandleOf(pv2), handle) << "two PVs, two volumes";
  EXPECT_NE(kube::GetStringAt(pv1, {"metadata", "name"}), kube::GetStringAt(pv2, {"metadata", "name"}));
  auto vols = CairnVolumes();
  EXPECT_EQ(vols["shared"], handle);
  EXPECT_EQ(vols.count("writer") + vols.count("reader"), 0u) << "a volume per claim was made";

  DeletePvc("writer");
  const std::string pv1_name = kube::GetStringAt(pv1, {"metadata", "name"});
  EXPECT_TRUE(Eventually([&] { return PvGone(pv1_name); }));
  EXPECT_TRUE(HasCairnVolumeId(handle)) << "deleting one claim removed the shared volume";
  DeletePvc("reader");
  const std::string pv2_name = kube::GetStringAt(pv2, {"metadata", "name"});
  EXPECT_TRUE(Eventually([&] { return PvGone(pv2_name); }));
  EXPECT_TRUE(HasCairnVolumeId(handle)) << "a shared volume was deleted by DeleteVolume";
  RunResult del = RunCli(*server_, {"-n", kNs, "volume", "delete", "shared", "-y"});
  EXPECT_EQ(del.exit_code, 0) << del.err;
  DeleteClasses();
}

// examples/pvc-dynamic.yaml, volumesnapshot.yaml and pvc-from-snapshot.yaml
// as a user applies them (moved to the test's namespace), with the chart's
// StorageClass and VolumeSnapshotClass and the real snapshot-controller and
// csi-snapshotter: the restored claim holds the snapshot's files, and later
// writes to the source do not reach it.
TEST_F(InstallTest, SnapshotOfABoundClaimRestoresIntoANewClaim) {
  std::string err = BootSnapshots();
  if (!err.empty()) {
    if (MaySkipForMissingTools() && absl::StrContains(err, "go-tools.sh")) {
      GTEST_SKIP() << "snapshot tools unavailable (CI unset): " << err;
    }
    FAIL() << err;
  }
  StorageClass("cairn", {"storageClass.parameters.deletionPolicy=Delete"});
  ApplyFromChart("templates/storageclass.yaml",
                 {"storageClass.create=false", "snapshots.enabled=true"});
  ApplyExample("pvc-dynamic.yaml");
  Json pv = PvOf(WaitBound("models"));
  const std::string handle = HandleOf(pv);
  WriteWholeFile(dir_->path() / "v1.txt", "as snapshotted\n");
  ASSERT_EQ(RunCli(*server_, {"-n", kNs, "volume", "put", "models",
                              (dir_->path() / "v1.txt").string(), "/f.txt"})
                .exit_code,
            0);

  ApplyExample("volumesnapshot.yaml");
  Json snap;
  ASSERT_TRUE(Eventually(
      [&] {
        auto got = cluster_->client().Get(SnapshotPath(kNs, "models-snapshot"));
        if (!got.ok()) return false;
        snap = *got;
        const Json* ready = kube::Find(snap, {"status", "readyToUse"});
        return ready != nullptr && ready->is_boolean() && ready->get<bool>();
      },
      std::chrono::seconds(90)))
      << kube::Dump(snap);
  const std::string content = kube::GetStringAt(snap, {"status", "boundVolumeSnapshotContentName"});
  ASSERT_FALSE(content.empty()) << kube::Dump(snap);
  // The snapshot is a volume of the plugin's own namespace (D17).
  auto snapshot_volumes = [&] {
    RunResult l = RunCli(*server_, {"-n", "cairn-csi-snapshots", "volume", "list", "--json"});
    Json j = kube::ParseJson(l.out);
    return j.is_array() ? j.size() : 0u;
  };
  EXPECT_EQ(snapshot_volumes(), 1u);

  // The source moves on; the snapshot must not.
  WriteWholeFile(dir_->path() / "v2.txt", "after the snapshot\n");
  ASSERT_EQ(RunCli(*server_, {"-n", kNs, "volume", "put", "models",
                              (dir_->path() / "v2.txt").string(), "/f.txt", "-f"})
                .exit_code,
            0);

  ApplyExample("pvc-from-snapshot.yaml");
  Json rpv = PvOf(WaitBound("models-restored"));
  const std::string rhandle = HandleOf(rpv);
  ASSERT_TRUE(rhandle.starts_with("vo-")) << kube::Dump(rpv);
  EXPECT_NE(rhandle, handle);
  RunResult got = RunCli(*server_, {"-n", kNs, "volume", "get", "models-restored", "/f.txt", "-"});
  EXPECT_EQ(got.out, "as snapshotted\n") << got.err;
  got = RunCli(*server_, {"-n", kNs, "volume", "get", "models", "/f.txt", "-"});
  EXPECT_EQ(got.out, "after the snapshot\n") << got.err;

  // The class's deletionPolicy Delete: the snapshot's content and its Cairn
  // volume go with it, and the restored claim keeps its data.
  RunResult r =
      cluster_->Kubectl({"delete", "volumesnapshot", "-n", kNs, "models-snapshot", "--timeout=60s"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Eventually([&] {
    return kube::IsNotFound(
        cluster_->client()
            .Get("/apis/snapshot.storage.k8s.io/v1/volumesnapshotcontents/" + content)
            .status());
  })) << "VolumeSnapshotContent " << content << " stays";
  EXPECT_TRUE(Eventually([&] { return snapshot_volumes() == 0; }))
      << "the snapshot's Cairn volume outlived its VolumeSnapshot (deletionPolicy Delete)";
  got = RunCli(*server_, {"-n", kNs, "volume", "get", "models-restored", "/f.txt", "-"});
  EXPECT_EQ(got.out, "as snapshotted\n") << got.err;
  DeletePvc("models-restored");
  DeletePvc("models");
  EXPECT_TRUE(Eventually([&] { return !HasCairnVolumeId(rhandle) && !HasCairnVolumeId(handle); }));
  (void)cluster_->Kubectl({"delete", "volumesnapshotclass", "cairn"});
}

// SIGKILL of the cairn-csi controller while claims are being provisioned:
// after it restarts on the same state directory (as a restarted container
// does), every claim binds to its own volume, no stray volume is left, and
// deletionPolicy Delete still removes each one with its claim.
TEST_F(InstallTest, SigkillOfTheControllerWhileProvisioningConverges) {
  StorageClass("cairn-kill", {"storageClass.parameters.deletionPolicy=Delete"});
  constexpr int kClaims = 6;
  std::vector<std::string> names;
  for (int i = 0; i < kClaims; ++i) {
    names.push_back(absl::StrCat("burst-", i));
    CreatePvc(names.back(), "cairn-kill");
  }
  // Let some CreateVolume calls be in flight, then kill mid-way.
  Eventually([&] { return absl::StrContains(plugin_->Log(), "CreateVolume"); },
             std::chrono::seconds(30));
  plugin_->child().Signal(SIGKILL);
  plugin_->child().Wait();
  const std::string old_log = plugin_->Log();
  size_t done = 0;
  const std::string mark = absl::StrCat("-> ", kNs, "/burst-");
  for (size_t at = old_log.find(mark); at != std::string::npos; at = old_log.find(mark, at + 1)) {
    ++done;
  }
  std::fprintf(stderr, "cairn-csi killed after %zu of %d volumes were provisioned\n", done, kClaims);
  delete plugin_;
  plugin_ = nullptr;
  auto p = Plugin::Start(dir_->path() / "csi", server_->address(), {"--mode", "controller"});
  ASSERT_TRUE(p.ok()) << p.status();
  plugin_ = p->release();
  // The provisioner exits once it notices the lost connection (or carries
  // on if it reconnects); give it the time to notice, restart it if it went.
  (void)Eventually([&] { return provisioner_->Exited(); }, std::chrono::seconds(10));
  if (provisioner_->Exited()) {
    ASSERT_EQ(StartProvisioner(), "");
  }
  if (snapshotter_ != nullptr && snapshotter_->Exited()) {
    ASSERT_EQ(StartSnapshotter(), "");
  }

  std::set<std::string> handles;
  std::map<std::string, std::string> pv_of;
  for (const std::string& n : names) {
    Json pv = PvOf(WaitBound(n, std::chrono::seconds(120)));
    handles.insert(HandleOf(pv));
    pv_of[n] = kube::GetStringAt(pv, {"metadata", "name"});
  }
  EXPECT_EQ(handles.size(), static_cast<size_t>(kClaims)) << "two claims share a volume";
  auto vols = CairnVolumes();
  for (const std::string& n : names) {
    ASSERT_EQ(vols.count(n), 1u) << n;
    EXPECT_TRUE(handles.contains(vols[n])) << n << " -> " << vols[n];
  }
  size_t burst = std::count_if(vols.begin(), vols.end(),
                               [](const auto& e) { return e.first.starts_with("burst-"); });
  EXPECT_EQ(burst, static_cast<size_t>(kClaims)) << "stray volumes after the kill";

  for (const std::string& n : names) DeletePvc(n);
  EXPECT_TRUE(Eventually([&] {
    auto now = CairnVolumes();
    return std::none_of(now.begin(), now.end(),
                        [](const auto& e) { return e.first.starts_with("burst-"); });
  })) << "volumes created across the kill outlived their claims under deletionPolicy Delete; "
         "controller log before the kill:\n"
      << old_log;
}

}  // namespace
}  // namespace cairn::e2e
