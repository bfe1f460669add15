#include "csi/mount_pods.h"

#include "gtest/gtest.h"

namespace cairn::csi {
namespace {

MountPodOptions Options() {
  MountPodOptions o;
  o.ns = "cairn-system";
  o.node = "n1";
  o.socket_dir = "/var/lib/cairn-csi/handover";
  o.pod_template = kube::ParseJson(R"({
    "metadata": {"labels": {"app.kubernetes.io/name": "cairn"}},
    "spec": {
      "containers": [{
        "name": "mounter", "image": "cairn:1",
        "command": ["/usr/local/bin/cairn-mount"],
        "env": [{"name": "A", "value": "1"}],
        "resources": {"limits": {"memory": "1Gi"}}
      }]
    }
  })");
  return o;
}

LaunchSpec Spec() {
  LaunchSpec spec;
  spec.binary = "/usr/local/bin/cairn-mount";
  spec.target = "/var/lib/kubelet/pods/p/volumes/kubernetes.io~csi/v/mount";
  spec.volume_id = "vo-abc";
  spec.args = {"vo-abc", spec.target.string(), "--namespace", "default", "--handover",
               "--read-only"};
  spec.env = {"CAIRN_TOKEN_FILE=/etc/cairn/api-token/token"};
  return spec;
}

TEST(BuildMounterPodTest, AddsIdentityPlacementAndArguments) {
  LaunchSpec spec = Spec();
  auto pod = BuildMounterPod(Options(), "cairn-mount-x", spec);
  ASSERT_TRUE(pod.ok()) << pod.status();
  const kube::Json& j = *pod;
  EXPECT_EQ(j["kind"], "Pod");
  EXPECT_EQ(j["metadata"]["name"], "cairn-mount-x");
  EXPECT_EQ(j["metadata"]["namespace"], "cairn-system");
  const kube::Json& labels = j["metadata"]["labels"];
  EXPECT_EQ(labels["app.kubernetes.io/name"], "cairn");  // the template's stay
  EXPECT_EQ(labels[kMounterComponentLabel], "mounter");
  EXPECT_EQ(labels[kVolumeLabel], "vo-abc");
  EXPECT_EQ(labels[kNodeLabel], "n1");
  EXPECT_EQ(labels[kTargetHashLabel], TargetHash(spec.target));
  EXPECT_EQ(labels[kTargetHashLabel].get<std::string>().size(), 16u);
  EXPECT_EQ(j["metadata"]["annotations"][kTargetAnnotation], spec.target.string());
  EXPECT_EQ(j["spec"]["nodeName"], "n1");
  EXPECT_EQ(j["spec"]["restartPolicy"], "OnFailure");
  const kube::Json& c = j["spec"]["containers"][0];
  EXPECT_EQ(c["image"], "cairn:1");
  EXPECT_EQ(c["resources"]["limits"]["memory"], "1Gi");
  std::vector<std::string> args = c["args"];
  std::vector<std::string> want = {"vo-abc", spec.target.string(), "--namespace", "default",
                                   "--read-only", "--handover-connect",
                                   "/var/lib/cairn-csi/handover/" + TargetHash(spec.target) +
                                       ".sock"};
  EXPECT_EQ(args, want);
  ASSERT_EQ(c["env"].size(), 2u);
  EXPECT_EQ(c["env"][1]["name"], "CAIRN_TOKEN_FILE");
  EXPECT_EQ(c["env"][1]["value"], "/etc/cairn/api-token/token");
}

TEST(BuildMounterPodTest, TargetsHashApartAndTemplateNeedsAContainer) {
  EXPECT_NE(TargetHash("/a/mount"), TargetHash("/b/mount"));
  EXPECT_EQ(TargetHash("/a/mount"), TargetHash("/a/./mount"));
  MountPodOptions o = Options();
  o.pod_template = kube::ParseJson(R"({"spec": {"containers": []}})");
  auto pod = BuildMounterPod(o, "x", Spec());
  EXPECT_EQ(pod.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(pod.status().message().find("no container"), std::string::npos);
}

}  // namespace
}  // namespace cairn::csi
