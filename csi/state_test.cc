#include "csi/state.h"

#include <fstream>

#include "core/flags.h"
#include "core/testing/temp_dir.h"
#include "csi/driver.h"
#include "gtest/gtest.h"

namespace cairn::csi {
namespace {
using ::cairn::testing::TempDir;

TEST(StateFileTest, MissingFileIsEmptyState) {
  TempDir dir;
  StateFile file(dir.path() / "state.json");
  auto state = file.Load();
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_TRUE(state->publications.empty());
  EXPECT_TRUE(state->provisioned.empty());
}

TEST(StateFileTest, RoundTripsAndLeavesNoTemporary) {
  TempDir dir;
  StateFile file(dir.path() / "sub" / "state.json");
  PluginState s;
  Publication p;
  p.volume_id = "vo-abc";
  p.cairn_id = "vo-abc";
  p.ns = "team";
  p.target = "/var/lib/kubelet/pods/x/mount";
  p.read_only = true;
  p.fingerprint = "vo-abc|ro||";
  p.mounter = {1234, 987654321, "cairn-mount-0123456789abcdef-x1"};
  p.log_file = "/tmp/x.log";
  p.mounter_args = {"vo-abc", p.target, "--handover"};
  s.publications[p.target] = p;
  Provisioned v;
  v.request_name = "pvc-1";
  v.volume_id = "vo-def";
  v.ns = "default";
  v.name = "pvc-1";
  v.fingerprint = "required=5";
  v.capacity_bytes = 5;
  v.created = true;
  v.delete_on_delete = true;
  s.provisioned[v.request_name] = v;
  ASSERT_TRUE(file.Save(s).ok());
  auto loaded = file.Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->publications.size(), 1u);
  const Publication& q = loaded->publications.at(p.target);
  EXPECT_EQ(q.cairn_id, "vo-abc");
  EXPECT_EQ(q.ns, "team");
  EXPECT_TRUE(q.read_only);
  EXPECT_EQ(q.mounter.pid, 1234);
  EXPECT_EQ(q.mounter.start_ticks, 987654321u);
  EXPECT_EQ(q.mounter.pod, "cairn-mount-0123456789abcdef-x1");
  EXPECT_EQ(q.mounter_args, p.mounter_args);
  const Provisioned& w = loaded->provisioned.at("pvc-1");
  EXPECT_EQ(w.volume_id, "vo-def");
  EXPECT_TRUE(w.created);
  EXPECT_TRUE(w.delete_on_delete);
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path() / "sub")) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);  // no temporary left behind
}

TEST(StateFileTest, DamagedFileIsDataLoss) {
  TempDir dir;
  std::ofstream(dir.path() / "state.json") << "{\"publications\": [";
  StateFile file(dir.path() / "state.json");
  auto state = file.Load();
  EXPECT_EQ(state.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(state.status().message().find("state.json"), std::string::npos);
}

TEST(CsiArgsTest, ParsesAndRejects) {
  auto o = ParseCsiArgs({"--endpoint", "unix:///tmp/c.sock", "--node-id", "n1", "--mode=node",
                         "--kubelet-dir", "/var/lib/kubelet/"},
                        ClientOptions{});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->mode, Mode::kNode);
  EXPECT_EQ(o->node_id, "n1");
  EXPECT_EQ(o->kubelet_dir, "/var/lib/kubelet/");
  EXPECT_EQ(ParseCsiArgs({"--mode", "both", "--node-id", "n"}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseCsiArgs({"--endpoint", "127.0.0.1:1", "--node-id", "n"}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseCsiArgs({"--mode", "node"}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ParseCsiArgs({"--mode", "controller"}, {}).ok());
  EXPECT_EQ(ParseCsiArgs({"--mode", "controller", "--bogus"}, {}).status().message(),
            "unknown flag '--bogus'");
  EXPECT_EQ(ParseCsiArgs({"--mode", "controller", "--mount-timeout", "x"}, {}).status().message(),
            "--mount-timeout: 'x' is not a number of seconds");
  EXPECT_EQ(ParseCsiArgs({"--mode", "controller", "--endpoint"}, {}).status().message(),
            "--endpoint needs a value");
  EXPECT_TRUE(IsHelpRequested(ParseCsiArgs({"--help"}, {}).status()));
  EXPECT_FALSE(o->mount_pods);  // process mode unless asked
  auto pods = ParseCsiArgs({"--node-id", "n", "--mounter-mode", "pod", "--mount-pod-template",
                            "/etc/cairn/mount-pod/pod.json"},
                           {});
  ASSERT_TRUE(pods.ok()) << pods.status();
  EXPECT_TRUE(pods->mount_pods);
  EXPECT_EQ(pods->mount_pod_template, "/etc/cairn/mount-pod/pod.json");
  EXPECT_EQ(ParseCsiArgs({"--node-id", "n", "--mounter-mode", "pod"}, {}).status().message(),
            "--mounter-mode pod needs --mount-pod-template");
  EXPECT_EQ(ParseCsiArgs({"--node-id", "n", "--mounter-mode", "x"}, {}).status().message(),
            "--mounter-mode must be process or pod, not x");
}

TEST(CheckCapabilityTest, MountOnlyKnownFsTypeAndMode) {
  ::csi::v1::VolumeCapability cap;
  cap.mutable_mount();
  EXPECT_EQ(CheckCapability(cap).code(), absl::StatusCode::kInvalidArgument);  // no access mode
  cap.mutable_access_mode()->set_mode(::csi::v1::VolumeCapability::AccessMode::MULTI_NODE_MULTI_WRITER);
  EXPECT_TRUE(CheckCapability(cap).ok());
  cap.mutable_mount()->set_fs_type("ext4");
  absl::Status st = CheckCapability(cap);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("ext4"), std::string::npos);
  cap.mutable_block();
  EXPECT_EQ(CheckCapability(cap).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace cairn::csi
