// cairn-csi's Node service through real processes: a real control plane,
// the real plugin, real cairn-mount processes and kernel FUSE mounts.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/strings/str_split.h"
#include "e2e/csi/csi_fixture.h"
#include "e2e/handover_probe.h"
#include "gmock/gmock.h"
#include "proto/pluginregistration.grpc.pb.h"

namespace cairn::e2e {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::csi::v1;
using ::testing::HasSubstr;

class CsiNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CAIRN_REQUIRE_FUSE();
    auto server = ServerProcess::Start({.data_dir = dir_.path() / "data"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    StartPlugin();
  }
  void TearDown() override {
    // Whatever a failed test left mounted goes away with it.
    for (const auto& t : targets_) {
      if (plugin_ != nullptr && CairnMountedAt(t)) {
        v1::NodeUnpublishVolumeRequest req;
        req.set_volume_id("any");
        req.set_target_path(t.string());
        v1::NodeUnpublishVolumeResponse resp;
        (void)plugin_->node().NodeUnpublishVolume(Ctx().get(), req, &resp);
      }
    }
  }

  void StartPlugin(std::vector<std::string> extra = {}) {
    auto plugin = Plugin::Start(dir_.path(), server_->address(), std::move(extra));
    ASSERT_TRUE(plugin.ok()) << plugin.status();
    plugin_ = std::move(*plugin);
  }

  void Cli(const std::vector<std::string>& args) {
    RunResult r = RunCli(*server_, args);
    ASSERT_EQ(r.exit_code, 0) << absl::StrJoin(args, " ") << "\n" << r.out << r.err;
  }

  fs::path Target(const std::string& name) {
    fs::path t = dir_.path() / "pods" / name / "mount";
    fs::create_directories(t.parent_path());
    targets_.push_back(t);
    return t;
  }

  v1::NodePublishVolumeRequest PublishByName(const std::string& volume, const fs::path& target) {
    v1::NodePublishVolumeRequest req;
    req.set_volume_id(absl::StrCat("handle-", volume));
    req.set_target_path(target.string());
    *req.mutable_volume_capability() = MountCap();
    (*req.mutable_volume_context())["volume"] = volume;
    (*req.mutable_volume_context())["commitInterval"] = "600";
    return req;
  }

  grpc::Status Publish(const v1::NodePublishVolumeRequest& req) {
    v1::NodePublishVolumeResponse resp;
    return plugin_->node().NodePublishVolume(Ctx().get(), req, &resp);
  }
  grpc::Status Unpublish(const std::string& volume_id, const fs::path& target) {
    v1::NodeUnpublishVolumeRequest req;
    req.set_volume_id(volume_id);
    req.set_target_path(target.string());
    v1::NodeUnpublishVolumeResponse resp;
    return plugin_->node().NodeUnpublishVolume(Ctx(120).get(), req, &resp);
  }

  cairn::testing::TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<Plugin> plugin_;
  std::vector<fs::path> targets_;
};

// The cairn-mount processes (holder and mounter) serving `target`.
std::vector<pid_t> MountProcesses(const fs::path& target) {
  std::vector<pid_t> pids;
  for (const auto& e : fs::directory_iterator("/proc")) {
    std::string cmd = ReadWholeFile(e.path() / "cmdline");
    if (cmd.find("cairn-mount") != std::string::npos &&
        cmd.find(target.string() + std::string(1, '\0')) != std::string::npos) {
      pids.push_back(std::stoi(e.path().filename().string()));
    }
  }
  return pids;
}

// The holder of `target`'s mount: the one of its processes whose parent is
// not one of them.
pid_t HolderOf(const fs::path& target) {
  std::vector<pid_t> pids = MountProcesses(target);
  for (pid_t p : pids) {
    std::vector<pid_t> children = ChildrenOf(p);
    for (pid_t c : children) {
      if (std::find(pids.begin(), pids.end(), c) != pids.end()) return p;
    }
  }
  return 0;
}

int SyncDir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return errno;
  int rc = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  return rc;
}

TEST_F(CsiNodeTest, TwoTargetsSeeEachOthersCommitAfterReload) {
  Cli({"volume", "create", "shared"});
  fs::path a = Target("a");
  fs::path b = Target("b");
  grpc::Status st = Publish(PublishByName("shared", a));
  ASSERT_TRUE(st.ok()) << st.error_message() << plugin_->Log();
  st = Publish(PublishByName("shared", b));
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(CairnMountedAt(a));
  EXPECT_TRUE(CairnMountedAt(b));
  // Publishing again with the same arguments is fine; with others it is not.
  EXPECT_TRUE(Publish(PublishByName("shared", a)).ok());
  auto ro = PublishByName("shared", a);
  ro.set_readonly(true);
  EXPECT_EQ(Publish(ro).error_code(), grpc::StatusCode::ALREADY_EXISTS);

  WriteWholeFile(a / "hello.txt", "from a\n");
  ASSERT_EQ(SyncDir(a), 0);
  EXPECT_FALSE(fs::exists(b / "hello.txt"));  // b still sees its snapshot (C3)
  ASSERT_EQ(::setxattr(b.c_str(), "user.cairn.reload", "1", 1, 0), 0) << std::strerror(errno);
  EXPECT_EQ(ReadWholeFile(b / "hello.txt"), "from a\n");

  v1::NodeGetVolumeStatsRequest sreq;
  sreq.set_volume_id("handle-shared");
  sreq.set_volume_path(a.string());
  v1::NodeGetVolumeStatsResponse sresp;
  ASSERT_TRUE(plugin_->node().NodeGetVolumeStats(Ctx().get(), sreq, &sresp).ok());
  EXPECT_FALSE(sresp.volume_condition().abnormal());
  ASSERT_EQ(sresp.usage_size(), 2);

  EXPECT_TRUE(Unpublish("handle-shared", a).ok());
  EXPECT_TRUE(Unpublish("handle-shared", b).ok());
  EXPECT_FALSE(CairnMountedAt(a));
  EXPECT_FALSE(CairnMountedAt(b));
  EXPECT_FALSE(fs::exists(a));
  // Unpublishing what is gone is fine.
  EXPECT_TRUE(Unpublish("handle-shared", a).ok());
}

TEST_F(CsiNodeTest, MountsSurvivePluginSigkillAndUnpublishCommitsAfterRestart) {
  Cli({"volume", "create", "durable"});
  fs::path t = Target("p");
  ASSERT_TRUE(Publish(PublishByName("durable", t)).ok()) << plugin_->Log();
  WriteWholeFile(t / "before.txt", "before\n");
  plugin_->child().Signal(SIGKILL);
  plugin_->child().Wait();
  // The mount keeps serving without the plugin.
  EXPECT_EQ(ReadWholeFile(t / "before.txt"), "before\n");
  WriteWholeFile(t / "during.txt", "during\n");
  StartPlugin();
  EXPECT_THAT(plugin_->Log(), HasSubstr("re-adopted"));
  EXPECT_EQ(ReadWholeFile(t / "during.txt"), "during\n");
  grpc::Status st = Unpublish("handle-durable", t);
  ASSERT_TRUE(st.ok()) << st.error_message() << plugin_->Log();
  EXPECT_FALSE(CairnMountedAt(t));
  // Both writes reached the volume through the final commit.
  RunResult r = RunCli(*server_, {"volume", "get", "durable", "during.txt", "-"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "during\n");
  r = RunCli(*server_, {"volume", "get", "durable", "before.txt", "-"});
  EXPECT_EQ(r.out, "before\n");
}

TEST_F(CsiNodeTest, FailedFinalCommitKeepsTheMountForTheRetry) {
  Cli({"volume", "create", "unsaved"});
  fs::path t = Target("unsaved");
  ASSERT_TRUE(Publish(PublishByName("unsaved", t)).ok());
  WriteWholeFile(t / "precious.txt", "keep me\n");
  std::string address = server_->address();
  server_->Stop();
  grpc::Status st = Unpublish("handle-unsaved", t);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  EXPECT_THAT(st.error_message(), HasSubstr("final commit"));
  // Nothing was dropped: the mount and its write are still there.
  ASSERT_TRUE(CairnMountedAt(t));
  EXPECT_EQ(ReadWholeFile(t / "precious.txt"), "keep me\n");
  // The control plane is back (same address): the kubelet's retry succeeds.
  auto server = ServerProcess::Start({.data_dir = dir_.path() / "data",
                                      .extra_args = {"--listen", address}});
  ASSERT_TRUE(server.ok()) << server.status();
  server_ = std::move(*server);
  // Like the kubelet, retry with a pause: the mounter's connection may still
  // be backing off from the outage.
  for (int attempt = 0; attempt < 40; ++attempt) {
    st = Unpublish("handle-unsaved", t);
    if (st.ok()) break;
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_FALSE(CairnMountedAt(t));
  RunOptions env;
  env.env = {"CAIRN_SERVER=" + address};
  RunResult r = RunCli(*server_, {"volume", "get", "unsaved", "precious.txt", "-"}, env);
  EXPECT_EQ(r.out, "keep me\n") << r.err;
}

TEST_F(CsiNodeTest, VolumeFromSnapshotIsIndependentOfItsSource) {
  Cli({"volume", "create", "origin"});
  fs::path local = dir_.path() / "a.txt";
  WriteWholeFile(local, "at the snapshot\n");
  Cli({"volume", "put", "origin", local.string(), "a.txt"});
  v1::CreateVolumeRequest create;
  create.set_name("pvc-origin");
  *create.add_volume_capabilities() = MountCap();
  (*create.mutable_parameters())["volumeName"] = "origin";
  v1::CreateVolumeResponse origin;
  ASSERT_TRUE(plugin_->controller().CreateVolume(Ctx().get(), create, &origin).ok());
  v1::CreateSnapshotRequest snap;
  snap.set_name("snap-1");
  snap.set_source_volume_id(origin.volume().volume_id());
  v1::CreateSnapshotResponse snapshot;
  grpc::Status st = plugin_->controller().CreateSnapshot(Ctx().get(), snap, &snapshot);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(snapshot.snapshot().ready_to_use());
  // The source moves on after the snapshot.
  WriteWholeFile(local, "after the snapshot\n");
  Cli({"volume", "put", "origin", local.string(), "b.txt"});

  v1::CreateVolumeRequest restore;
  restore.set_name("pvc-restore");
  *restore.add_volume_capabilities() = MountCap();
  restore.mutable_volume_content_source()->mutable_snapshot()->set_snapshot_id(
      snapshot.snapshot().snapshot_id());
  v1::CreateVolumeResponse restored;
  st = plugin_->controller().CreateVolume(Ctx().get(), restore, &restored);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(restored.volume().content_source().snapshot().snapshot_id(),
            snapshot.snapshot().snapshot_id());

  fs::path t = Target("restored");
  v1::NodePublishVolumeRequest pub;
  pub.set_volume_id(restored.volume().volume_id());
  pub.set_target_path(t.string());
  *pub.mutable_volume_capability() = MountCap();
  *pub.mutable_volume_context() = restored.volume().volume_context();
  st = Publish(pub);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(ReadWholeFile(t / "a.txt"), "at the snapshot\n");
  EXPECT_FALSE(fs::exists(t / "b.txt"));
  WriteWholeFile(t / "c.txt", "only in the clone\n");
  ASSERT_TRUE(Unpublish(pub.volume_id(), t).ok());

  // The source is unchanged by the clone's write, and the clone (and the
  // snapshot) outlive the source.
  EXPECT_NE(RunCli(*server_, {"volume", "get", "origin", "c.txt", "-"}).exit_code, 0);
  Cli({"volume", "delete", "origin", "-y"});
  RunResult r = RunCli(*server_, {"volume", "get", "pvc-restore", "c.txt", "-"});
  EXPECT_EQ(r.out, "only in the clone\n") << r.err;
  r = RunCli(*server_, {"volume", "get", "pvc-restore", "a.txt", "-"});
  EXPECT_EQ(r.out, "at the snapshot\n") << r.err;
  v1::ListSnapshotsRequest list;
  list.set_source_volume_id(origin.volume().volume_id());
  v1::ListSnapshotsResponse listed;
  ASSERT_TRUE(plugin_->controller().ListSnapshots(Ctx().get(), list, &listed).ok());
  ASSERT_EQ(listed.entries_size(), 1);
  EXPECT_EQ(listed.entries(0).snapshot().snapshot_id(), snapshot.snapshot().snapshot_id());
}

// The state file under SIGKILL: the plugin is killed while publishes are
// under way (some mounters started but not yet recorded, some recorded).
// After a restart the state loads, every target can be unpublished, and
// nothing stays mounted.
TEST_F(CsiNodeTest, SigkillDuringPublishesLeavesAConsistentState) {
  Cli({"volume", "create", "busy"});
  std::vector<fs::path> targets;
  for (int i = 0; i < 8; ++i) targets.push_back(Target(absl::StrCat("k", i)));
  std::atomic<int> done{0};
  std::thread publisher([&] {
    for (const fs::path& t : targets) {
      if (!Publish(PublishByName("busy", t)).ok()) return;
      done.fetch_add(1);
    }
  });
  // Kill once a few publishes have landed, in the middle of the next ones.
  for (int i = 0; i < 600 && done.load() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(37));
  plugin_->child().Signal(SIGKILL);
  plugin_->child().Wait();
  publisher.join();
  ASSERT_GE(done.load(), 3);
  StartPlugin();
  // Every publish that returned OK still serves.
  for (int i = 0; i < done.load(); ++i) {
    EXPECT_TRUE(CairnMountedAt(targets[i])) << targets[i];
  }
  for (const fs::path& t : targets) {
    grpc::Status st = Unpublish("handle-busy", t);
    EXPECT_TRUE(st.ok()) << t << ": " << st.error_message();
    EXPECT_FALSE(CairnMountedAt(t)) << t;
  }
  // And the restarted plugin can publish at those targets again.
  ASSERT_TRUE(Publish(PublishByName("busy", targets.back())).ok());
  EXPECT_TRUE(Unpublish("handle-busy", targets.back()).ok());
}

TEST_F(CsiNodeTest, MissingVolumeIsNotFoundAndNothingIsMounted) {
  fs::path t = Target("missing");
  grpc::Status st = Publish(PublishByName("no-such-volume", t));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << st.error_message();
  EXPECT_THAT(st.error_message(), HasSubstr("no-such-volume"));
  EXPECT_THAT(st.error_message(), HasSubstr("createIfMissing"));
  EXPECT_FALSE(CairnMountedAt(t));
  EXPECT_FALSE(fs::exists(t));
  // With createIfMissing the same publish creates the volume.
  auto req = PublishByName("no-such-volume", t);
  (*req.mutable_volume_context())["createIfMissing"] = "true";
  st = Publish(req);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(CairnMountedAt(t));
  EXPECT_TRUE(Unpublish(req.volume_id(), t).ok());
}

// fsGroup is delegated to the driver (VOLUME_MOUNT_GROUP): the kubelet does
// not chown, the mount shows the group (docs/csi.md).
TEST_F(CsiNodeTest, VolumeMountGroupIsAdvertisedAndPresented) {
  v1::NodeGetCapabilitiesRequest creq;
  v1::NodeGetCapabilitiesResponse cresp;
  ASSERT_TRUE(plugin_->node().NodeGetCapabilities(Ctx().get(), creq, &cresp).ok());
  bool advertised = false;
  for (const auto& c : cresp.capabilities()) {
    advertised |= c.rpc().type() == v1::NodeServiceCapability::RPC::VOLUME_MOUNT_GROUP;
  }
  EXPECT_TRUE(advertised);

  Cli({"volume", "create", "grouped"});
  fs::path t = Target("grouped");
  auto req = PublishByName("grouped", t);
  req.mutable_volume_capability()->mutable_mount()->set_volume_mount_group("2000");
  grpc::Status st = Publish(req);
  ASSERT_TRUE(st.ok()) << st.error_message() << plugin_->Log();
  struct stat s;
  ASSERT_EQ(::stat(t.c_str(), &s), 0);
  EXPECT_EQ(s.st_gid, 2000u);
  EXPECT_EQ(s.st_mode & 07777, 02775u);
  EXPECT_TRUE(Publish(req).ok());  // the same again: fine
  auto other = req;
  other.mutable_volume_capability()->mutable_mount()->set_volume_mount_group("3000");
  EXPECT_EQ(Publish(other).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_TRUE(Unpublish("handle-grouped", t).ok());
}

TEST_F(CsiNodeTest, BadInputIsRefusedWithTheRightCode) {
  Cli({"volume", "create", "vol"});
  fs::path t = Target("bad");
  auto expect = [&](v1::NodePublishVolumeRequest req, grpc::StatusCode code,
                    const std::string& text) {
    grpc::Status st = Publish(req);
    EXPECT_EQ(st.error_code(), code) << st.error_message();
    EXPECT_THAT(st.error_message(), HasSubstr(text));
    EXPECT_FALSE(CairnMountedAt(t));
  };
  auto req = PublishByName("vol", t);
  req.clear_volume_id();
  expect(req, grpc::StatusCode::INVALID_ARGUMENT, "volume_id");
  req = PublishByName("vol", t);
  req.clear_target_path();
  expect(req, grpc::StatusCode::INVALID_ARGUMENT, "target_path");
  req = PublishByName("vol", t);
  req.clear_volume_capability();
  expect(req, grpc::StatusCode::INVALID_ARGUMENT, "volume_capability");
  req = PublishByName("vol", t);
  req.mutable_volume_capability()->mutable_mount()->set_fs_type("ext4");
  expect(req, grpc::StatusCode::INVALID_ARGUMENT, "ext4");
  req = PublishByName("vol", t);
  (*req.mutable_volume_context())["subPath"] = "../escape";
  expect(req, grpc::StatusCode::INVALID_ARGUMENT, "subPath");
  req = PublishByName("vol", t);
  (*req.mutable_volume_context())["commitInterval"] = "soon";
  expect(req, grpc::StatusCode::INVALID_ARGUMENT, "commitInterval");
  for (const char* group : {"staff", "-1", "4294967295", "12a", " 5"}) {
    req = PublishByName("vol", t);
    req.mutable_volume_capability()->mutable_mount()->set_volume_mount_group(group);
    expect(req, grpc::StatusCode::INVALID_ARGUMENT, "volume_mount_group");
  }
  EXPECT_FALSE(fs::exists(t));

  // A target outside --kubelet-dir.
  plugin_->child().Signal(SIGTERM);
  plugin_->child().Wait();
  StartPlugin({"--kubelet-dir", (dir_.path() / "kubelet").string()});
  expect(PublishByName("vol", t), grpc::StatusCode::INVALID_ARGUMENT, "outside the kubelet directory");

  // The control plane down: UNAVAILABLE, so the kubelet retries.
  server_->Stop();
  plugin_->child().Signal(SIGTERM);
  plugin_->child().Wait();
  StartPlugin();
  expect(PublishByName("vol", t), grpc::StatusCode::UNAVAILABLE, "not answering");
  v1::ProbeRequest preq;
  v1::ProbeResponse presp;
  ASSERT_TRUE(plugin_->identity().Probe(Ctx().get(), preq, &presp).ok());
  EXPECT_FALSE(presp.ready().value());
  EXPECT_FALSE(fs::exists(t));
}

TEST_F(CsiNodeTest, InlineVolumesStayInThePodsNamespace) {
  Cli({"-n", "team", "volume", "create", "data"});
  Cli({"-n", "other", "volume", "create", "secret"});
  fs::path t = Target("inline");
  auto req = PublishByName("data", t);
  (*req.mutable_volume_context())["csi.storage.k8s.io/ephemeral"] = "true";
  (*req.mutable_volume_context())["csi.storage.k8s.io/pod.namespace"] = "team";
  grpc::Status st = Publish(req);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(CairnMountedAt(t));
  EXPECT_TRUE(Unpublish(req.volume_id(), t).ok());

  // An inline volume naming another namespace is refused.
  auto other = PublishByName("secret", t);
  (*other.mutable_volume_context())["csi.storage.k8s.io/ephemeral"] = "true";
  (*other.mutable_volume_context())["csi.storage.k8s.io/pod.namespace"] = "team";
  (*other.mutable_volume_context())["namespace"] = "other";
  st = Publish(other);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
  EXPECT_FALSE(CairnMountedAt(t));
  // Without the namespace it resolves in the pod's namespace, where there is
  // no such volume.
  other.mutable_volume_context()->erase("namespace");
  EXPECT_EQ(Publish(other).error_code(), grpc::StatusCode::NOT_FOUND);

  // A PersistentVolume (written by an admin or the provisioner) may name it.
  auto pv = PublishByName("secret", t);
  (*pv.mutable_volume_context())["namespace"] = "other";
  (*pv.mutable_volume_context())["csi.storage.k8s.io/pod.namespace"] = "team";
  st = Publish(pv);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(Unpublish(pv.volume_id(), t).ok());
}

// An inline volume with ephemeral: "true" and no name is a new anonymous
// volume, held while mounted and deleted (key destroyed) once the pod's
// mount ends and its lease lapses (30 s, swept every 5 s).
TEST_F(CsiNodeTest, AnonymousEphemeralInlineVolumeGoesWithItsMount) {
  fs::path t = Target("scratch");
  auto req = PublishByName("", t);
  req.mutable_volume_context()->erase("volume");
  (*req.mutable_volume_context())["csi.storage.k8s.io/ephemeral"] = "true";
  (*req.mutable_volume_context())["csi.storage.k8s.io/pod.namespace"] = "team";
  (*req.mutable_volume_context())["ephemeral"] = "true";

  // Bad combinations first: nothing is made or mounted.
  auto named = req;
  (*named.mutable_volume_context())["volume"] = "data";
  EXPECT_EQ(Publish(named).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  auto not_inline = req;
  not_inline.mutable_volume_context()->erase("csi.storage.k8s.io/ephemeral");
  EXPECT_EQ(Publish(not_inline).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_FALSE(CairnMountedAt(t));

  grpc::Status st = Publish(req);
  ASSERT_TRUE(st.ok()) << st.error_message() << plugin_->Log();
  EXPECT_TRUE(CairnMountedAt(t));
  EXPECT_TRUE(Publish(req).ok());  // the same again: the same volume
  auto list = [&] { return RunCli(*server_, {"-n", "team", "volume", "list", "--json"}).out; };
  ASSERT_THAT(list(), ::testing::HasSubstr("\"name\":\"ephemeral-"));
  WriteWholeFile(t / "scratch.txt", "temporary\n");
  ASSERT_EQ(SyncDir(t), 0);

  ASSERT_TRUE(Unpublish(req.volume_id(), t).ok());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (list().find("ephemeral-") != std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  EXPECT_THAT(list(), ::testing::Not(::testing::HasSubstr("ephemeral-")));
}

TEST_F(CsiNodeTest, DeadMounterIsReportedAbnormal) {
  Cli({"volume", "create", "fragile"});
  fs::path t = Target("fragile");
  ASSERT_TRUE(Publish(PublishByName("fragile", t)).ok());
  // The mount is dead once its holder and its mounter both are (a mounter
  // alone is replaced): find them by their arguments.
  std::vector<pid_t> pids = MountProcesses(t);
  ASSERT_EQ(pids.size(), 2u);
  for (pid_t pid : pids) ::kill(pid, SIGKILL);
  for (pid_t pid : pids) {
    for (int i = 0; i < 100 && ::kill(pid, 0) == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  v1::NodeGetVolumeStatsRequest sreq;
  sreq.set_volume_id("handle-fragile");
  sreq.set_volume_path(t.string());
  v1::NodeGetVolumeStatsResponse sresp;
  ASSERT_TRUE(plugin_->node().NodeGetVolumeStats(Ctx().get(), sreq, &sresp).ok());
  EXPECT_TRUE(sresp.volume_condition().abnormal());
  EXPECT_THAT(sresp.volume_condition().message(), HasSubstr("not running"));
  // Unpublish cleans up the dead mount.
  EXPECT_TRUE(Unpublish("handle-fragile", t).ok());
  EXPECT_FALSE(fs::exists(t));
}

// A pod reading a published volume when its mounter is SIGKILLed, and
// again when cairn-csi is asked to upgrade the mounters (SIGUSR2): the
// reads go on through the same descriptor within 5 s, never ENOTCONN, and
// a write made durable before the kill is committed by unpublish.
TEST_F(CsiNodeTest, MounterKilledOrUpgradedUnderAReadingPodIsReplaced) {
  Cli({"volume", "create", "steady"});
  fs::path t = Target("steady");
  ASSERT_TRUE(Publish(PublishByName("steady", t)).ok()) << plugin_->Log();
  std::string data(3 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 2654435761u) >> 13);
  WriteWholeFile(t / "weights.bin", data);
  ASSERT_EQ(SyncDir(t), 0);
  int w = ::open((t / "log.txt").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(w, 0);
  ASSERT_EQ(::write(w, "step 1\n", 7), 7);
  ASSERT_EQ(::fsync(w), 0);
  ::close(w);

  ReadLoop reader(t / "weights.bin", data);
  ASSERT_EQ(reader.open_errno(), 0) << std::strerror(reader.open_errno());
  ASSERT_TRUE(reader.WaitForReads(5, std::chrono::seconds(5)));
  pid_t holder = HolderOf(t);
  ASSERT_GT(holder, 0);
  pid_t worker = WaitForNewChild(holder, 0, std::chrono::seconds(5));
  ASSERT_GT(worker, 0);
  ASSERT_EQ(::kill(worker, SIGKILL), 0);
  pid_t second = WaitForNewChild(holder, worker, std::chrono::seconds(10));
  ASSERT_GT(second, 0);
  EXPECT_TRUE(reader.WaitForReads(10, std::chrono::seconds(5))) << reader.Describe();
  // The node plugin sees a healthy volume again.
  v1::NodeGetVolumeStatsRequest sreq;
  sreq.set_volume_id("handle-steady");
  sreq.set_volume_path(t.string());
  v1::NodeGetVolumeStatsResponse sresp;
  ASSERT_TRUE(plugin_->node().NodeGetVolumeStats(Ctx().get(), sreq, &sresp).ok());
  EXPECT_FALSE(sresp.volume_condition().abnormal()) << sresp.volume_condition().message();

  // On-demand upgrade through cairn-csi.
  plugin_->child().Signal(SIGUSR2);
  pid_t third = WaitForNewChild(holder, second, std::chrono::seconds(15));
  ASSERT_GT(third, 0) << plugin_->Log();
  EXPECT_TRUE(reader.WaitForReads(10, std::chrono::seconds(5))) << reader.Describe();
  EXPECT_THAT(plugin_->Log(), HasSubstr("asked 1 mounters to hand over"));
  ASSERT_TRUE(reader.Stop(std::chrono::seconds(15), t)) << reader.Describe();
  auto errors = reader.errors();
  EXPECT_EQ(errors.count(ENOTCONN), 0u) << reader.Describe();
  int other = 0;
  for (const auto& [err, n] : errors) {
    if (err != ECONNABORTED) other += n;
  }
  EXPECT_EQ(other, 0) << reader.Describe();
  EXPECT_LE(errors[ECONNABORTED], 1) << reader.Describe();
  EXPECT_EQ(reader.mismatches(), 0) << reader.Describe();
  EXPECT_LT(reader.longest_gap(), std::chrono::milliseconds(5000)) << reader.Describe();

  EXPECT_EQ(ReadWholeFile(t / "log.txt"), "step 1\n");
  grpc::Status st = Unpublish("handle-steady", t);
  ASSERT_TRUE(st.ok()) << st.error_message();
  RunResult r = RunCli(*server_, {"volume", "get", "steady", "log.txt", "-"});
  EXPECT_EQ(r.out, "step 1\n") << r.err;
}

TEST_F(CsiNodeTest, ServesKubeletPluginRegistration) {
  fs::path reg = dir_.path() / "plugins_registry";
  plugin_->child().Signal(SIGTERM);
  plugin_->child().Wait();
  StartPlugin({"--registration-dir", reg.string()});
  fs::path sock = reg / "csi.cairn.dev-reg.sock";
  auto channel = grpc::CreateChannel("unix://" + sock.string(), grpc::InsecureChannelCredentials());
  auto stub = ::pluginregistration::Registration::NewStub(channel);
  ::pluginregistration::InfoRequest ireq;
  ::pluginregistration::PluginInfo info;
  grpc::Status st = stub->GetInfo(Ctx().get(), ireq, &info);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(info.type(), "CSIPlugin");
  EXPECT_EQ(info.name(), "csi.cairn.dev");
  EXPECT_EQ(info.endpoint(), plugin_->socket().string());
  EXPECT_THAT(std::vector<std::string>(info.supported_versions().begin(),
                                       info.supported_versions().end()),
              ::testing::Contains("1.0.0"));
  ::pluginregistration::RegistrationStatus status;
  status.set_plugin_registered(false);
  status.set_error("version mismatch");
  ::pluginregistration::RegistrationStatusResponse sresp;
  ASSERT_TRUE(stub->NotifyRegistrationStatus(Ctx().get(), status, &sresp).ok());
  status.set_plugin_registered(true);
  status.clear_error();
  ASSERT_TRUE(stub->NotifyRegistrationStatus(Ctx().get(), status, &sresp).ok());
  EXPECT_THAT(plugin_->Log(), HasSubstr("version mismatch"));
  EXPECT_THAT(plugin_->Log(), HasSubstr("registered with the kubelet"));
}

// In a container the plugin's socket is at /csi/csi.sock while the kubelet
// finds it under its own directory: GetInfo must name the kubelet's path.
TEST_F(CsiNodeTest, RegistrationNamesTheSocketAsTheKubeletSeesIt) {
  fs::path reg = dir_.path() / "plugins_registry";
  plugin_->child().Signal(SIGTERM);
  plugin_->child().Wait();
  StartPlugin({"--registration-dir", reg.string(), "--kubelet-registration-path",
               "/var/lib/kubelet/plugins/csi.cairn.dev/csi.sock"});
  auto channel = grpc::CreateChannel("unix://" + (reg / "csi.cairn.dev-reg.sock").string(),
                                     grpc::InsecureChannelCredentials());
  auto stub = ::pluginregistration::Registration::NewStub(channel);
  ::pluginregistration::InfoRequest ireq;
  ::pluginregistration::PluginInfo info;
  grpc::Status st = stub->GetInfo(Ctx().get(), ireq, &info);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(info.endpoint(), "/var/lib/kubelet/plugins/csi.cairn.dev/csi.sock");
}


// A runtime that removes the plugin's container kills every process in the
// container's cgroups: with --mounter-cgroup-root each mounter lives in the
// named cgroup of every hierarchy instead, and the mount still serves.
TEST_F(CsiNodeTest, MountersLeaveThePluginsCgroups) {
  if (!fs::exists("/sys/fs/cgroup/cgroup.procs") && !fs::exists("/sys/fs/cgroup/memory/cgroup.procs")) {
    GTEST_SKIP() << "no cgroup file system at /sys/fs/cgroup";
  }
  std::string name = absl::StrCat("cairn-csi-test-", ::getpid());
  plugin_->child().Signal(SIGTERM);
  plugin_->child().Wait();
  StartPlugin({"--mounter-cgroup-root", "/sys/fs/cgroup", "--mounter-cgroup", name});
  Cli({"volume", "create", "caged"});
  fs::path t = Target("caged");
  ASSERT_TRUE(Publish(PublishByName("caged", t)).ok()) << plugin_->Log();
  pid_t pid = 0;
  for (const auto& e : fs::directory_iterator("/proc")) {
    std::string cmd = ReadWholeFile(e.path() / "cmdline");
    if (cmd.find("cairn-mount") != std::string::npos && cmd.find(t.string()) != std::string::npos) {
      pid = std::stoi(e.path().filename().string());
    }
  }
  ASSERT_GT(pid, 0);
  // /proc/PID/cgroup: "ID:CONTROLLERS:PATH" per hierarchy; every one but
  // the v1 named ones this plugin has no say over ends in our name.
  std::string cgroups = ReadWholeFile(fs::path("/proc") / std::to_string(pid) / "cgroup");
  int ours = 0;
  for (absl::string_view line : absl::StrSplit(cgroups, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits(':', 2));
    ASSERT_EQ(f.size(), 3u) << line;
    if (f[1] == "rdma" || f[1] == "misc") continue;  // not mounted everywhere
    EXPECT_EQ(f[2], "/" + name) << "the mounter is not in our cgroup: " << line;
    ++ours;
  }
  EXPECT_GT(ours, 0) << cgroups;
  WriteWholeFile(t / "x.txt", "x\n");
  EXPECT_EQ(ReadWholeFile(t / "x.txt"), "x\n");
  EXPECT_TRUE(Unpublish("handle-caged", t).ok());
  for (const auto& h : fs::directory_iterator("/sys/fs/cgroup")) {
    if (!h.is_symlink() && fs::exists(h.path() / name)) ::rmdir((h.path() / name).c_str());
  }
  if (fs::exists(fs::path("/sys/fs/cgroup") / name)) ::rmdir((fs::path("/sys/fs/cgroup") / name).c_str());
}

TEST_F(CsiNodeTest, BadMounterCgroupNameIsRefused) {
  for (const char* bad : {"", "..", "a/b", "."}) {
    RunResult r = RunProcess({BuiltBinary("csi/cairn-csi").string(), "--node-id", "n",
                              "--mounter-cgroup", bad});
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr("--mounter-cgroup must be one path component")) << bad;
  }
}

}  // namespace
}  // namespace cairn::e2e
