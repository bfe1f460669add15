// cairn-operator against a real etcd + kube-apiserver on loopback, driven
// with the real kubectl and cairn CLI (DESIGN.md §6, tier "kube").
#include <httplib.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/testing/temp_dir.h"
#include "e2e/kube/cluster.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operator/kube/config.h"
#include "operator/kube/errors.h"

namespace cairn::e2e {
namespace {

namespace fs = std::filesystem;
using kube::Json;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

const kube::Resource kVolumes{"cairn.dev", "v1alpha1", "volumes"};

class KubeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new cairn::testing::TempDir();
    absl::StatusOr<std::unique_ptr<KubeCluster>> c = KubeCluster::Start(dir_->path() / "cluster");
    if (!c.ok()) {
      start_error_ = new std::string(c.status().ToString());
      return;
    }
    cluster_ = c->release();
    RunResult r = cluster_->Kubectl(
        {"apply", "-f", (fs::path(CAIRN_SOURCE_DIR) / "manifests/crds/volumes.cairn.dev.yaml").string()});
    if (r.exit_code != 0) {
      start_error_ = new std::string("applying the CRD: " + r.err);
      return;
    }
    r = cluster_->Kubectl({"wait", "--for", "condition=established", "--timeout=60s",
                           "crd/volumes.cairn.dev"});
    if (r.exit_code != 0) start_error_ = new std::string("CRD not established: " + r.err);
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
    delete dir_;
  }

  void SetUp() override {
    if (start_error_ != nullptr) {
      if (MaySkipForMissingTools() && absl::StrContains(*start_error_, "go-tools.sh")) {
        GTEST_SKIP() << "Kubernetes tools unavailable (CI unset): " << *start_error_;
      }
      FAIL() << *start_error_;
    }
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    ns_ = absl::AsciiStrToLower(std::string(info->name()));
    for (char& ch : ns_) {
      if (!absl::ascii_isalnum(ch)) ch = '-';
    }
    ns_ = ns_.substr(0, 50);
    absl::Status s = cluster_->client()
                         .Create("/api/v1/namespaces",
                                 Json{{"apiVersion", "v1"}, {"kind", "Namespace"},
                                      {"metadata", {{"name", ns_}}}})
                         .status();
    ASSERT_TRUE(s.ok() || kube::IsAlreadyExists(s)) << s;
    data_ = std::make_unique<cairn::testing::TempDir>();
  }

  void TearDown() override {
    if (cluster_ == nullptr) return;
    // Leave nothing for the next test's operator: drop finalizers, delete.
    absl::StatusOr<kube::ListResult> l = cluster_->client().List(kube::ResourcePath(kVolumes, ns_));
    if (!l.ok()) return;
    for (const Json& v : l->items) {
      std::string p = kube::ResourcePath(kVolumes, ns_, kube::GetStringAt(v, {"metadata", "name"}));
      (void)cluster_->client().MergePatch(p, Json{{"metadata", {{"finalizers", nullptr}}}});
      (void)cluster_->client().Delete(p);
    }
  }

  KubeCluster& cluster() { return *cluster_; }

  std::vector<std::string> FastArgs(const std::string& lease_id) {
    return {"--resync", "2", "--lease-duration", "3", "--renew-deadline", "2",
            "--retry-period", "0.5", "--leader-election-id", lease_id,
            "--leader-election-namespace", ns_, "--gc-interval", "0"};
  }

  absl::StatusOr<std::unique_ptr<OperatorProcess>> StartOperator(const std::string& name,
                                                                 bool wait_ready = true) {
    OperatorProcess::Options o;
    o.data_dir = data_->path() / name;
    o.kubeconfig = cluster_->kubeconfig();
    o.extra_args = FastArgs("cairn-operator");
    o.wait_ready = wait_ready;
    return OperatorProcess::Start(o);
  }

  RunResult Apply(const std::string& yaml) { return cluster_->Kubectl({"apply", "-f", "-"}, yaml); }

  static std::string VolumeYaml(const std::string& ns, const std::string& name,
                                const std::string& spec, const std::string& annotations = "") {
    return absl::StrCat("apiVersion: cairn.dev/v1alpha1\nkind: Volume\nmetadata:\n  name: ", name,
                        "\n  namespace: ", ns, "\n", annotations, "spec:\n", spec.empty() ? "  {}\n" : spec);
  }

  absl::StatusOr<Json> GetVolume(const std::string& name) {
    return cluster_->client().Get(kube::ResourcePath(kVolumes, ns_, name));
  }

  // Polls until `pred` holds on the Volume; returns it, or the last seen.
  Json WaitVolume(const std::string& name, const std::function<bool(const Json&)>& pred,
                  std::chrono::seconds timeout = std::chrono::seconds(30)) {
    const auto deadline = Clock::now() + timeout;
    Json last;
    while (Clock::now() < deadline) {
      absl::StatusOr<Json> v = GetVolume(name);
      if (v.ok()) {
        last = *v;
        if (pred(last)) return last;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "timed out waiting on volume " << name << ": " << kube::Dump(last);
    return last;
  }
  static bool IsReady(const Json& v) {
    return kube::GetStringAt(v, {"status", "phase"}) == "Ready" &&
           !kube::GetStringAt(v, {"status", "id"}).empty();
  }
  static std::string ReadyReason(const Json& v) {
    const Json* c = kube::Find(v, {"status", "conditions"});
    if (c == nullptr || !c->is_array() || c->empty()) return "";
    return kube::GetString((*c)[0], "reason");
  }
  bool WaitGone(const std::string& name, std::chrono::seconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (kube::IsNotFound(GetVolume(name).status())) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  // Names of the Cairn volumes in our namespace, as the CLI lists them.
  std::set<std::string> CliVolumes(const OperatorProcess& op) {
    RunResult r = Cairn(op, ns_, {"volume", "list", "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::set<std::string> names;
    Json j = kube::ParseJson(r.out);
    const Json* arr = j.is_array() ? &j : kube::Find(j, {"volumes"});
    if (arr != nullptr && arr->is_array()) {
      for (const Json& v : *arr) names.insert(kube::GetString(v, "name"));
    } else {
      // One JSON object per line.
      std::istringstream in(r.out);
      for (std::string l; std::getline(in, l);) {
        Json o = kube::ParseJson(l);
        if (o.is_object()) names.insert(kube::GetString(o, "name"));
      }
    }
    return names;
  }

  static cairn::testing::TempDir* dir_;
  static KubeCluster* cluster_;
  static std::string* start_error_;
  std::string ns_;
  std::unique_ptr<cairn::testing::TempDir> data_;
};

cairn::testing::TempDir* KubeTest::dir_ = nullptr;
KubeCluster* KubeTest::cluster_ = nullptr;
std::string* KubeTest::start_error_ = nullptr;

TEST_F(KubeTest, AppliedVolumeBecomesReadyAndFollowsCommits) {
  auto op = StartOperator("op");
  ASSERT_TRUE(op.ok()) << op.status();
  auto applied = Clock::now();
  RunResult r = Apply(VolumeYaml(ns_, "models", ""));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto apply_done = Clock::now();
  Json v = WaitVolume("models", IsReady);
  auto ready = Clock::now();
  std::printf("[figure] kubectl apply -> Ready: %.0f ms (kubectl itself %.0f ms)\n",
              std::chrono::duration<double, std::milli>(ready - applied).count(),
              std::chrono::duration<double, std::milli>(apply_done - applied).count());
  ASSERT_TRUE(IsReady(v)) << kube::Dump(v);
  EXPECT_EQ(ReadyReason(v), "Created");
  EXPECT_EQ(kube::GetIntAt(v, {"spec", "version"}), 2);  // schema default
  EXPECT_EQ(kube::GetStringAt(v, {"spec", "deletionPolicy"}), "Retain");
  EXPECT_EQ(kube::GetIntAt(v, {"status", "observedGeneration"}),
            kube::GetIntAt(v, {"metadata", "generation"}));
  std::string id = kube::GetStringAt(v, {"status", "id"});
  EXPECT_TRUE(absl::StartsWith(id, "vo-")) << id;

  // The controller's own latency: created through the API (no kubectl
  // start-up) until Ready.
  std::vector<double> ms;
  for (int i = 0; i < 10; ++i) {
    std::string name = absl::StrCat("direct-", i);
    auto t0 = Clock::now();
    ASSERT_TRUE(cluster().client()
                    .Create(kube::ResourcePath(kVolumes, ns_),
                            Json{{"apiVersion", "cairn.dev/v1alpha1"}, {"kind", "Volume"},
                                 {"metadata", {{"name", name}, {"namespace", ns_}}},
                                 {"spec", Json::object()}})
                    .ok());
    WaitVolume(name, IsReady);
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  std::printf("[figure] API create -> Ready over 10 Volumes: median %.0f ms, max %.0f ms\n",
              ms[5], ms[9]);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(cluster().client().Delete(kube::ResourcePath(kVolumes, ns_, absl::StrCat("direct-", i))).ok());
    ASSERT_TRUE(WaitGone(absl::StrCat("direct-", i), std::chrono::seconds(20)));
  }

  // The CLI sees the same volume (the Retain-deleted ones too).
  std::set<std::string> want = {"models"};
  for (int i = 0; i < 10; ++i) want.insert(absl::StrCat("direct-", i));
  EXPECT_EQ(CliVolumes(**op), want);

  // kubectl get cvol prints the columns.
  r = cluster().Kubectl({"get", "cvol", "-n", ns_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* col : {"NAME", "VERSION", "PHASE", "FILES", "SIZE", "COMMITS", "LAST-COMMIT", "AGE"}) {
    EXPECT_THAT(r.out, HasSubstr(col));
  }
  EXPECT_THAT(r.out, HasSubstr("Ready"));

  // A put through the CLI shows in status within a resync.
  fs::path local = data_->path() / "weights.bin";
  WriteWholeFile(local, std::string(10000, 'w'));
  r = Cairn(**op, ns_, {"volume", "put", "models", local.string(), "/weights.bin"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  v = WaitVolume("models", [](const Json& v) { return kube::GetIntAt(v, {"status", "commits"}) >= 1; },
                 std::chrono::seconds(10));
  EXPECT_EQ(kube::GetIntAt(v, {"status", "inodes"}), 1);
  EXPECT_EQ(kube::GetIntAt(v, {"status", "bytes"}), 10000);
  EXPECT_FALSE(kube::GetStringAt(v, {"status", "lastCommitTime"}).empty());
  EXPECT_EQ(kube::GetStringAt(v, {"status", "id"}), id);

  // Events tell the story.
  r = cluster().Kubectl({"get", "events", "-n", ns_, "-o", "jsonpath={.items[*].reason}"});
  EXPECT_THAT(r.out, HasSubstr("Created"));

  // kubectl explain describes every spec field.
  r = cluster().Kubectl({"explain", "volume.spec"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* field : {"version", "deletionPolicy", "limits", "Volume format",
                            "data key"}) {
    EXPECT_THAT(r.out, HasSubstr(field));
  }
  r = cluster().Kubectl({"explain", "volume.spec.limits"});
  EXPECT_THAT(r.out, HasSubstr("maxInodes"));
  EXPECT_THAT(r.out, HasSubstr("ENOSPC"));

  // Metrics: the controller's families and the per-volume series.
  EXPECT_GE((*op)->Metric("cairn_operator_reconciles_total{result=\"success\"}"), 1);
  EXPECT_EQ((*op)->Metric("cairn_operator_leader"), 1);
  EXPECT_EQ((*op)->Metric(absl::StrCat("cairn_volume_commits_total{namespace=\"", ns_,
                                       "\",volume=\"models\"}")),
            1);
}

TEST_F(KubeTest, ClientCertificateKubeconfigAndBadCredentials) {
  // Certificate and key data, CA data: the client authenticates over mTLS.
  absl::StatusOr<kube::Config> cfg = kube::LoadKubeconfig(cluster().cert_kubeconfig());
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_TRUE(cfg->token.empty());
  auto client = kube::Client::Create(*cfg);
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<kube::ListResult> l = (*client)->List(kube::ResourcePath(kVolumes, ns_));
  EXPECT_TRUE(l.ok()) << l.status();
  // The operator runs on it too.
  OperatorProcess::Options o;
  o.data_dir = data_->path() / "op";
  o.kubeconfig = cluster().cert_kubeconfig();
  o.extra_args = FastArgs("cert-operator");
  auto op = OperatorProcess::Start(o);
  ASSERT_TRUE(op.ok()) << op.status();
  ASSERT_EQ(Apply(VolumeYaml(ns_, "mtls", "")).exit_code, 0);
  WaitVolume("mtls", IsReady);

  // A wrong token is Unauthorized; a CA that did not sign the server is a
  // connection failure (Unavailable), not a silent success.
  kube::Config bad = *cfg;
  bad.client_cert_pem.clear();
  bad.client_key_pem.clear();
  bad.token = "wrong";
  absl::Status s = (*kube::Client::Create(bad))->List(kube::ResourcePath(kVolumes, ns_)).status();
  EXPECT_TRUE(kube::IsUnauthorized(s)) << s;
  kube::Config untrusted = *cfg;
  untrusted.ca_pem = ReadWholeFile(cluster().cert_kubeconfig().parent_path() / "pki" / "client.crt");
  s = (*kube::Client::Create(untrusted))->List(kube::ResourcePath(kVolumes, ns_)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  // RBAC: an authenticated user without rights is Forbidden.
  kube::Config nobody = bad;
  nobody.token = "cairn-e2e-nobody-token";
  s = (*kube::Client::Create(nobody))->List(kube::ResourcePath(kVolumes, ns_)).status();
  EXPECT_TRUE(kube::IsForbidden(s)) << s;
}

TEST_F(KubeTest, InvalidSpecsAreRefusedOrReported) {
  auto op = StartOperator("op");
  ASSERT_TRUE(op.ok()) << op.status();
  // The schema refuses what it can describe.
  RunResult r = Apply(VolumeYaml(ns_, "bad-version", "  version: 3\n"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("spec.version"));
  r = Apply(VolumeYaml(ns_, "bad-policy", "  deletionPolicy: Shred\n"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("spec.deletionPolicy"));
  r = Apply(VolumeYaml(ns_, "bad-limit", "  limits:\n    maxInodes: 0\n"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("maxInodes"));
  // Kubernetes allows 253-character names; a Cairn volume name has at most 64.
  r = Apply(VolumeYaml(ns_, std::string(65, 'n'), ""));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("at most 64 characters"));
  // What only the controller knows becomes a condition, not a crash loop.
  r = Apply(VolumeYaml(ns_, "too-loose", "  version: 1\n  limits:\n    maxInodes: 600000\n"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json v = WaitVolume("too-loose", [](const Json& v) { return ReadyReason(v) == "InvalidSpec"; });
  EXPECT_EQ(kube::GetStringAt(v, {"status", "phase"}), "Failed");
  EXPECT_THAT(kube::Dump(v), HasSubstr("limits can only be tightened"));
  EXPECT_TRUE(CliVolumes(**op).empty());
  // Fixing the spec makes it Ready with the tighter limit.
  r = Apply(VolumeYaml(ns_, "too-loose", "  version: 1\n  limits:\n    maxInodes: 100\n"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  WaitVolume("too-loose", IsReady);
  // The version cannot change once created.
  r = Apply(VolumeYaml(ns_, "too-loose", "  version: 2\n  limits:\n    maxInodes: 100\n"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("cannot be changed"));
  EXPECT_FALSE((*op)->Exited());
}

TEST_F(KubeTest, DeletionHonoursThePolicyAndNeverHangs) {
  auto op = StartOperator("op");
  ASSERT_TRUE(op.ok()) << op.status();
  ASSERT_EQ(Apply(VolumeYaml(ns_, "keep", "  deletionPolicy: Retain\n")).exit_code, 0);
  ASSERT_EQ(Apply(VolumeYaml(ns_, "drop", "  deletionPolicy: Delete\n")).exit_code, 0);
  ASSERT_EQ(Apply(VolumeYaml(ns_, "vanished", "  deletionPolicy: Delete\n")).exit_code, 0);
  WaitVolume("keep", IsReady);
  WaitVolume("drop", IsReady);
  WaitVolume("vanished", IsReady);
  EXPECT_EQ(CliVolumes(**op), (std::set<std::string>{"keep", "drop", "vanished"}));

  // The Cairn volume is deleted behind Kubernetes' back first.
  RunResult r = Cairn(**op, ns_, {"volume", "delete", "vanished", "-y"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json v = WaitVolume("vanished", [](const Json& v) { return ReadyReason(v) == "VolumeMissing"; });
  EXPECT_EQ(kube::GetStringAt(v, {"status", "phase"}), "Failed");

  for (const char* name : {"keep", "drop", "vanished"}) {
    r = cluster().Kubectl({"delete", "volume", name, "-n", ns_, "--wait=false"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  for (const char* name : {"keep", "drop", "vanished"}) {
    EXPECT_TRUE(WaitGone(name, std::chrono::seconds(20))) << name << " still there";
  }
  // Retain kept the data; Delete destroyed it. The metrics say the same.
  EXPECT_EQ(CliVolumes(**op), std::set<std::string>{"keep"});
  auto series = [&](const char* name) {
    return (*op)->Metric(absl::StrCat("cairn_volume_inodes{namespace=\"", ns_, "\",volume=\"", name,
                                      "\"}"));
  };
  EXPECT_EQ(series("keep"), 0);
  EXPECT_EQ(series("drop"), -1);
  // A new Volume of a retained name adopts it (it carries no ID yet, but
  // adoption needs consent: the annotation).
  ASSERT_EQ(Apply(VolumeYaml(ns_, "keep", "")).exit_code, 0);
  v = WaitVolume("keep", [](const Json& v) { return ReadyReason(v) == "NameTaken"; });
  EXPECT_THAT(kube::Dump(v), HasSubstr("cairn.dev/adopt"));
  ASSERT_EQ(Apply(VolumeYaml(ns_, "keep", "", "  annotations:\n    cairn.dev/adopt: \"true\"\n")).exit_code, 0);
  v = WaitVolume("keep", IsReady);
  EXPECT_EQ(ReadyReason(v), "Adopted");
}

TEST_F(KubeTest, CliMadeVolumeIsAdoptedOnlyWithTheAnnotation) {
  auto op = StartOperator("op");
  ASSERT_TRUE(op.ok()) << op.status();
  RunResult r = Cairn(**op, ns_, {"volume", "create", "legacy", "--version", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(Apply(VolumeYaml(ns_, "legacy", "  version: 1\n")).exit_code, 0);
  Json v = WaitVolume("legacy", [](const Json& v) { return ReadyReason(v) == "NameTaken"; });
  EXPECT_TRUE(kube::GetStringAt(v, {"status", "id"}).empty());
  r = cluster().Kubectl({"annotate", "volume", "legacy", "-n", ns_, "cairn.dev/adopt=true"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  v = WaitVolume("legacy", IsReady);
  EXPECT_EQ(ReadyReason(v), "Adopted");
  EXPECT_EQ(CliVolumes(**op), std::set<std::string>{"legacy"});
  // A version that does not match is reported, not "fixed".
  r = Cairn(**op, ns_, {"volume", "create", "v1-only", "--version", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(Apply(VolumeYaml(ns_, "v1-only", "  version: 2\n",
                             "  annotations:\n    cairn.dev/adopt: \"true\"\n")).exit_code, 0);
  v = WaitVolume("v1-only", [](const Json& v) { return ReadyReason(v) == "VersionMismatch"; });
  EXPECT_EQ(kube::GetStringAt(v, {"status", "phase"}), "Failed");
}

TEST_F(KubeTest, SigkillWhileReconcilingFiftyVolumesConverges) {
  auto op = StartOperator("op");
  ASSERT_TRUE(op.ok()) << op.status();
  std::string yaml;
  for (int i = 0; i < 50; ++i) {
    absl::StrAppend(&yaml, "---\n", VolumeYaml(ns_, absl::StrCat("v", i), ""));
  }
  ASSERT_EQ(Apply(yaml).exit_code, 0);
  // Kill once some, but not all, are done.
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  int ready = 0;
  while (Clock::now() < deadline) {
    absl::StatusOr<kube::ListResult> l = cluster().client().List(kube::ResourcePath(kVolumes, ns_));
    ASSERT_TRUE(l.ok()) << l.status();
    ready = 0;
    for (const Json& v : l->items) ready += IsReady(v) ? 1 : 0;
    if (ready >= 5) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  (*op)->Kill(SIGKILL);
  (*op)->Wait();
  std::printf("[figure] %d of 50 Ready when the operator was SIGKILLed\n", ready);
  op->reset();
  auto again = StartOperator("op");
  ASSERT_TRUE(again.ok()) << again.status();
  std::set<std::string> ids;
  for (int i = 0; i < 50; ++i) {
    Json v = WaitVolume(absl::StrCat("v", i), IsReady, std::chrono::seconds(60));
    ids.insert(kube::GetStringAt(v, {"status", "id"}));
  }
  EXPECT_EQ(ids.size(), 50u) << "every Volume has its own ID";
  // No duplicates, no orphans: exactly the 50, by name and ID.
  RunResult r = Cairn(**again, ns_, {"volume", "list", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::set<std::string> cli_ids, cli_names;
  Json j = kube::ParseJson(r.out);
  std::vector<Json> rows;
  if (j.is_array()) {
    for (const Json& x : j) rows.push_back(x);
  } else {
    std::istringstream in(r.out);
    for (std::string l; std::getline(in, l);) {
      Json o = kube::ParseJson(l);
      if (o.is_object()) rows.push_back(o);
    }
  }
  for (const Json& row : rows) {
    cli_names.insert(kube::GetString(row, "name"));
    cli_ids.insert(kube::GetString(row, "id"));
  }
  EXPECT_EQ(rows.size(), 50u) << r.out.substr(0, 2000);
  EXPECT_EQ(cli_ids, ids);
}

TEST_F(KubeTest, TwoReplicasOneLeaderAndTakeover) {
  OperatorProcess::Options a, b;
  a.data_dir = data_->path() / "a";
  b.data_dir = data_->path() / "b";
  a.kubeconfig = b.kubeconfig = cluster().kubeconfig();
  a.extra_args = b.extra_args = FastArgs("replicas");
  auto pa = OperatorProcess::Start(a);
  ASSERT_TRUE(pa.ok()) << pa.status();
  auto pb = OperatorProcess::Start(b);
  ASSERT_TRUE(pb.ok()) << pb.status();
  // Exactly one leads.
  const auto deadline = Clock::now() + std::chrono::seconds(15);
  double la = 0, lb = 0;
  while (Clock::now() < deadline) {
    la = (*pa)->Metric("cairn_operator_leader");
    lb = (*pb)->Metric("cairn_operator_leader");
    if (la + lb == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(la + lb, 1) << la << " " << lb;
  OperatorProcess* leader = la == 1 ? pa->get() : pb->get();
  OperatorProcess* follower = la == 1 ? pb->get() : pa->get();
  ASSERT_EQ(Apply(VolumeYaml(ns_, "first", "")).exit_code, 0);
  WaitVolume("first", IsReady);
  // Only the leader acted (each replica has its own store here).
  EXPECT_EQ(CliVolumes(*leader), std::set<std::string>{"first"});
  EXPECT_TRUE(CliVolumes(*follower).empty());
  // No series at all: the follower never reconciled.
  EXPECT_LE(follower->Metric("cairn_operator_reconciles_total{result=\"success\"}"), 0);

  auto killed = Clock::now();
  leader->Kill(SIGKILL);
  leader->Wait();
  const auto take_deadline = Clock::now() + std::chrono::seconds(15);
  while (Clock::now() < take_deadline && follower->Metric("cairn_operator_leader") != 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  double takeover_ms = std::chrono::duration<double, std::milli>(Clock::now() - killed).count();
  std::printf("[figure] leader SIGKILLed -> other replica leads: %.0f ms (lease 3 s)\n", takeover_ms);
  ASSERT_EQ(follower->Metric("cairn_operator_leader"), 1);
  EXPECT_LT(takeover_ms, 3000 + 2 * 500 + 1000) << "within the lease duration plus a retry";
  ASSERT_EQ(Apply(VolumeYaml(ns_, "second", "")).exit_code, 0);
  WaitVolume("second", IsReady);
  EXPECT_THAT(CliVolumes(*follower), ::testing::Contains("second"));
  // Its lease names the new leader.
  RunResult r = cluster().Kubectl({"get", "lease", "replicas", "-n", ns_, "-o",
                                   "jsonpath={.spec.holderIdentity}"});
  EXPECT_FALSE(r.out.empty());
}

TEST_F(KubeTest, GracefulStopHandsTheLeaseOverAtOnce) {
  OperatorProcess::Options a, b;
  a.data_dir = data_->path() / "a";
  b.data_dir = data_->path() / "b";
  a.kubeconfig = b.kubeconfig = cluster().kubeconfig();
  a.extra_args = b.extra_args = FastArgs("handover");
  // A long lease: only a release can hand it over quickly.
  for (auto* o : {&a, &b}) {
    o->extra_args.insert(o->extra_args.end(), {"--lease-duration", "30", "--renew-deadline", "20"});
  }
  auto pa = OperatorProcess::Start(a);
  ASSERT_TRUE(pa.ok()) << pa.status();
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline && (*pa)->Metric("cairn_operator_leader") != 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ((*pa)->Metric("cairn_operator_leader"), 1);
  auto pb = OperatorProcess::Start(b);
  ASSERT_TRUE(pb.ok()) << pb.status();
  EXPECT_EQ((*pb)->Metric("cairn_operator_leader"), 0);
  auto stopped = Clock::now();
  (*pa)->Kill(SIGTERM);
  EXPECT_EQ((*pa)->Wait(), 0);
  const auto take_deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < take_deadline && (*pb)->Metric("cairn_operator_leader") != 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  double ms = std::chrono::duration<double, std::milli>(Clock::now() - stopped).count();
  std::printf("[figure] leader SIGTERMed -> other replica leads: %.0f ms (lease 30 s)\n", ms);
  EXPECT_EQ((*pb)->Metric("cairn_operator_leader"), 1);
  EXPECT_LT(ms, 5000);
}

TEST_F(KubeTest, WatchResumesAfterApiServerRestart) {
  auto op = StartOperator("op");
  ASSERT_TRUE(op.ok()) << op.status();
  ASSERT_EQ(Apply(VolumeYaml(ns_, "before", "")).exit_code, 0);
  WaitVolume("before", IsReady);
  double restarts_before = (*op)->Metric("cairn_operator_watch_restarts_total{reason=\"error\"}") +
                           (*op)->Metric("cairn_operator_watch_restarts_total{reason=\"closed\"}");
  auto t_stop = Clock::now();
  cluster().StopApiServer();
  std::printf("[figure] kube-apiserver stop took %.0f ms\n",
              std::chrono::duration<double, std::milli>(Clock::now() - t_stop).count());
  // /readyz says the API server is gone.
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  int code = 0;
  std::string body;
  while (Clock::now() < deadline) {
    std::tie(code, body) = (*op)->HttpGet("/readyz");
    if (code == 503) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(code, 503);
  EXPECT_THAT(body, HasSubstr("not ready"));
  auto t0 = Clock::now();
  ASSERT_TRUE(cluster().StartApiServer().ok());
  std::printf("[figure] kube-apiserver restart took %.0f ms\n",
              std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  ASSERT_EQ(Apply(VolumeYaml(ns_, "after", "")).exit_code, 0);
  Json v = WaitVolume("after", IsReady, std::chrono::seconds(60));
  EXPECT_TRUE(IsReady(v));
  double restarts_after = (*op)->Metric("cairn_operator_watch_restarts_total{reason=\"error\"}") +
                          (*op)->Metric("cairn_operator_watch_restarts_total{reason=\"closed\"}");
  EXPECT_GT(restarts_after, restarts_before);
  const auto ready_deadline = Clock::now() + std::chrono::seconds(20);
  while (Clock::now() < ready_deadline && (*op)->HttpGet("/readyz").first != 200) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ((*op)->HttpGet("/readyz").first, 200);
}

TEST_F(KubeTest, MasterKeyFromASecret) {
  OperatorProcess::Options o;
  o.data_dir = data_->path() / "op";
  o.kubeconfig = cluster().kubeconfig();
  o.extra_args = FastArgs("cairn-operator");
  o.extra_args.insert(o.extra_args.end(), {"--master-key-secret", ns_ + "/cairn-master-key"});
  auto op = OperatorProcess::Start(o);
  ASSERT_TRUE(op.ok()) << op.status();
  // Created with a fresh key; nothing on disk.
  absl::StatusOr<Json> secret =
      cluster().client().Get(absl::StrCat("/api/v1/namespaces/", ns_, "/secrets/cairn-master-key"));
  ASSERT_TRUE(secret.ok()) << secret.status();
  EXPECT_FALSE(kube::GetStringAt(*secret, {"data", "master-key"}).empty());
  EXPECT_FALSE(fs::exists(o.data_dir / "master.key"));
  ASSERT_EQ(Apply(VolumeYaml(ns_, "sealed", "")).exit_code, 0);
  WaitVolume("sealed", IsReady);
  fs::path local = data_->path() / "secret.txt";
  WriteWholeFile(local, "under the secret key");
  RunResult r = Cairn(**op, ns_, {"volume", "put", "sealed", local.string(), "/s.txt"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  op->reset();  // SIGTERM

  // Restarted with the same Secret: the data reads back.
  auto again = OperatorProcess::Start(o);
  ASSERT_TRUE(again.ok()) << again.status();
  r = Cairn(**again, ns_, {"volume", "get", "sealed", "/s.txt", "-"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "under the secret key");
  again->reset();

  // Another Secret's key would open nothing: refused at start, clearly.
  std::vector<std::string> argv = {BuiltBinary("operator/cairn-operator").string(), "--data",
                                   o.data_dir.string(), "--kubeconfig", o.kubeconfig.string(),
                                   "--listen", absl::StrCat("127.0.0.1:", FreePort()),
                                   "--metrics-listen", "", "--master-key-secret",
                                   ns_ + "/other-key"};
  RunResult refused = RunProcess(argv);
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("does not exist"));
  EXPECT_TRUE(kube::IsNotFound(
      cluster().client().Get(absl::StrCat("/api/v1/namespaces/", ns_, "/secrets/other-key")).status()))
      << "no key is minted for a directory that already holds volumes";
}

TEST_F(KubeTest, PrometheusScrapesTheCommitHistogram) {
  const char* prom = "/usr/bin/prometheus";
  if (!fs::exists(prom)) {
    if (MaySkipForMissingTools()) GTEST_SKIP() << "prometheus not installed (CI unset)";
    FAIL() << "prometheus not installed (Debian package prometheus)";
  }
  auto op = StartOperator("op");
  ASSERT_TRUE(op.ok()) << op.status();
  ASSERT_EQ(Apply(VolumeYaml(ns_, "scraped", "")).exit_code, 0);
  WaitVolume("scraped", IsReady);
  fs::path local = data_->path() / "f.txt";
  WriteWholeFile(local, "hello");
  RunResult r = Cairn(**op, ns_, {"volume", "put", "scraped", local.string(), "/f.txt"});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  // promtool agrees the exposition is clean.
  auto [code, body] = (*op)->HttpGet("/metrics");
  ASSERT_EQ(code, 200);
  RunOptions po;
  po.stdin_data = body;
  RunResult lint = RunProcess({"/usr/bin/promtool", "check", "metrics"}, po);
  EXPECT_EQ(lint.exit_code, 0) << lint.out << lint.err;

  int port = FreePort();
  fs::path cfg = data_->path() / "prometheus.yml";
  WriteWholeFile(cfg, absl::StrCat("global:\n  scrape_interval: 1s\nscrape_configs:\n"
                                   "- job_name: cairn\n  static_configs:\n  - targets: ['127.0.0.1:",
                                   (*op)->metrics_port(), "']\n"));
  auto p = Child::Spawn({prom, absl::StrCat("--config.file=", cfg.string()),
                         absl::StrCat("--storage.tsdb.path=", (data_->path() / "tsdb").string()),
                         absl::StrCat("--web.listen-address=127.0.0.1:", port)},
                        {}, data_->path() / "prometheus.log");
  ASSERT_TRUE(p.ok()) << p.status();
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  double count = -1;
  while (Clock::now() < deadline && count < 1) {
    httplib::Client c("127.0.0.1", port);
    auto res = c.Get(absl::StrCat("/api/v1/query?query=cairn_commit_duration_seconds_count%7B",
                                  "namespace%3D%22", ns_, "%22%2Cvolume%3D%22scraped%22%7D"));
    if (res && res->status == 200) {
      Json j = kube::ParseJson(res->body);
      const Json* result = kube::Find(j, {"data", "result"});
      if (result != nullptr && result->is_array() && !result->empty()) {
        const Json& val = (*result)[0]["value"];
        if (val.is_array() && val.size() == 2 && val[1].is_string()) {
          count = std::stod(val[1].get<std::string>());
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  EXPECT_GE(count, 1) << ReadWholeFile(data_->path() / "prometheus.log");
  (*p)->Signal(SIGTERM);
  (*p)->Wait(std::chrono::seconds(20));
}

}  // namespace
}  // namespace cairn::e2e
