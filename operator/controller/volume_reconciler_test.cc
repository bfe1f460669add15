// The reconciler's decisions that need no API server: spec parsing and
// validation, status construction, and the controller's flags. The loop
// against a real kube-apiserver is e2e/kube.
#include "operator/controller/volume_reconciler.h"

#include <cstdlib>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "operator/controller/run.h"

namespace cairn::controller {
namespace {

using kube::Json;
using ::testing::HasSubstr;

TEST(ParseSpecTest, DefaultsAreVersion2Retain) {
  absl::StatusOr<VolumeSpec> s = ParseSpec(Json{{"spec", Json::object()}});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->version, 2);
  EXPECT_FALSE(s->delete_data);
  EXPECT_EQ(s->limits, DefaultLimits(2));
  ASSERT_TRUE(ParseSpec(Json::object()).ok());
}

TEST(ParseSpecTest, LimitsTightenTheVersionsOwn) {
  absl::StatusOr<VolumeSpec> s = ParseSpec(Json::parse(
      R"({"spec":{"version":1,"deletionPolicy":"Delete","limits":{"maxInodes":10,"maxBytes":4096}}})"));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->version, 1);
  EXPECT_TRUE(s->delete_data);
  EXPECT_EQ(s->limits.max_inodes, 10u);
  EXPECT_EQ(s->limits.max_file_size, 4096u);
}

TEST(ParseSpecTest, InvalidSpecsAreExplained) {
  struct Case {
    const char* json;
    const char* message;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"spec":{"version":3}})", "spec.version must be 1 or 2"},
           {R"({"spec":{"version":"2"}})", "spec.version must be 1 or 2"},
           {R"({"spec":{"deletionPolicy":"Shred"}})", "Retain or Delete"},
           {R"({"spec":{"version":1,"limits":{"maxInodes":600000}}})", "limits can only be tightened"},
           {R"({"spec":{"limits":{"maxInodes":0}}})", "positive integer"},
           {R"({"spec":{"limits":{"maxBytes":2199023255552}}})", "limits can only be tightened"},
           {R"({"spec":[]})", "spec is not an object"},
       }) {
    absl::Status s = ParseSpec(Json::parse(c.json)).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.json;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.message)) << c.json;
  }
}

TEST(BuildStatusTest, CountsFromTheHeadAndStableTransitionTime) {
  Observed o;
  o.phase = "Ready";
  o.ready = true;
  o.reason = "Created";
  o.message = "ok";
  VolumeRecord v;
  v.id = "vo-x";
  o.volume = v;
  SnapshotRecord head;
  head.seq = 3;
  head.inodes = 5;
  head.bytes = 1234;
  head.created_at_ns = absl::ToUnixNanos(absl::FromUnixSeconds(1700000000));
  o.head = head;
  absl::Time t0 = absl::FromUnixSeconds(1800000000);
  Json first = BuildStatus(Json::object(), 4, o, t0);
  EXPECT_EQ(first["id"], "vo-x");
  EXPECT_EQ(first["commits"], 3);
  EXPECT_EQ(first["inodes"], 5);
  EXPECT_EQ(first["bytes"], 1234);
  EXPECT_EQ(first["observedGeneration"], 4);
  EXPECT_EQ(first["lastCommitTime"], "2023-11-14T22:13:20Z");
  EXPECT_EQ(first["conditions"][0]["lastTransitionTime"], RfcTime(t0));
  // Same status later: the transition time stays, so the status is equal
  // and no write happens.
  Json again = BuildStatus(first, 4, o, t0 + absl::Hours(1));
  EXPECT_EQ(again, first);
  // Flip to not ready: a new transition time; the id is kept.
  Observed bad;
  bad.phase = "Failed";
  bad.reason = "VolumeMissing";
  Json flipped = BuildStatus(first, 4, bad, t0 + absl::Hours(2));
  EXPECT_EQ(flipped["conditions"][0]["status"], "False");
  EXPECT_EQ(flipped["conditions"][0]["lastTransitionTime"], RfcTime(t0 + absl::Hours(2)));
  EXPECT_EQ(flipped["id"], "vo-x");
  EXPECT_FALSE(flipped.contains("commits"));
}

TEST(KubeFlagsTest, StandaloneWithoutKubeconfigOrPod) {
  ::unsetenv("KUBERNETES_SERVICE_HOST");
  std::vector<std::string> args = {"--data", "/d", "--resync", "2", "--listen", "x"};
  absl::StatusOr<std::optional<KubeOptions>> k = TakeKubeFlags(args);
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_FALSE(k->has_value());
  EXPECT_EQ(args, (std::vector<std::string>{"--data", "/d", "--listen", "x"}));
}

TEST(KubeFlagsTest, BadValuesAreRefused) {
  std::vector<std::string> a = {"--leader-elect", "maybe"};
  EXPECT_THAT(std::string(TakeKubeFlags(a).status().message()), HasSubstr("true or false"));
  std::vector<std::string> b = {"--lease-duration=2", "--renew-deadline=3"};
  EXPECT_THAT(std::string(TakeKubeFlags(b).status().message()), HasSubstr("--retry-period <"));
  std::vector<std::string> c = {"--resync", "-1"};
  EXPECT_THAT(std::string(TakeKubeFlags(c).status().message()), HasSubstr("positive number"));
  std::vector<std::string> d = {"--kubeconfig", "/nonexistent/kc"};
  EXPECT_EQ(TakeKubeFlags(d).status().code(), absl::StatusCode::kNotFound);
  std::vector<std::string> e = {"--kubeconfig"};
  EXPECT_THAT(std::string(TakeKubeFlags(e).status().message()), HasSubstr("needs a value"));
  ::unsetenv("KUBERNETES_SERVICE_HOST");
  std::vector<std::string> f = {"--master-key-secret", "ns/key"};
  EXPECT_THAT(std::string(TakeKubeFlags(f).status().message()), HasSubstr("needs Kubernetes"));
  for (const char* bad : {"nons", "/x", "x/", "a/b/c"}) {
    std::vector<std::string> g = {"--master-key-secret", bad};
    EXPECT_THAT(std::string(TakeKubeFlags(g).status().message()), HasSubstr("NAMESPACE/NAME"))
        << bad;
  }
}

}  // namespace
}  // namespace cairn::controller
