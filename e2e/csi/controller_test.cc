// cairn-csi's Controller service against a real control plane: claims to
// named volumes, idempotency, deletion policy, listing.
#include "e2e/csi/csi_fixture.h"
#include "gmock/gmock.h"

namespace cairn::e2e {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::csi::v1;
using ::testing::HasSubstr;

class CsiControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = ServerProcess::Start({.data_dir = dir_.path() / "data"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    auto plugin = Plugin::Start(dir_.path(), server_->address(), {"--mode", "controller"});
    ASSERT_TRUE(plugin.ok()) << plugin.status();
    plugin_ = std::move(*plugin);
  }

  v1::CreateVolumeRequest Request(const std::string& name,
                                  std::map<std::string, std::string> params = {}) {
    v1::CreateVolumeRequest req;
    req.set_name(name);
    *req.add_volume_capabilities() = MountCap();
    for (const auto& [k, v] : params) (*req.mutable_parameters())[k] = v;
    return req;
  }
  grpc::Status Create(const v1::CreateVolumeRequest& req, v1::CreateVolumeResponse* resp) {
    return plugin_->controller().CreateVolume(Ctx().get(), req, resp);
  }
  grpc::Status Delete(const std::string& id) {
    v1::DeleteVolumeRequest req;
    req.set_volume_id(id);
    v1::DeleteVolumeResponse resp;
    return plugin_->controller().DeleteVolume(Ctx().get(), req, &resp);
  }
  // "cairn volume list" in `ns`.
  std::string List(const std::string& ns) {
    return RunCli(*server_, {"-n", ns, "volume", "list"}).out;
  }

  cairn::testing::TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<Plugin> plugin_;
};

TEST_F(CsiControllerTest, ClaimBecomesNamedVolumeIdempotently) {
  auto req = Request("pvc-0001", {{"csi.storage.k8s.io/pvc/name", "weights"},
                                  {"csi.storage.k8s.io/pvc/namespace", "ml"},
                                  {"version", "1"}});
  v1::CreateVolumeResponse first, again;
  ASSERT_TRUE(Create(req, &first).ok());
  EXPECT_TRUE(first.volume().volume_id().starts_with("vo-"));
  EXPECT_EQ(first.volume().volume_context().at("volume"), "weights");
  EXPECT_EQ(first.volume().volume_context().at("namespace"), "ml");
  EXPECT_THAT(List("ml"), HasSubstr("weights"));
  ASSERT_TRUE(Create(req, &again).ok());
  EXPECT_EQ(again.volume().volume_id(), first.volume().volume_id());
  // Same request name, other parameters.
  auto changed = req;
  (*changed.mutable_parameters())["version"] = "2";
  grpc::Status st = Create(changed, &again);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::ALREADY_EXISTS) << st.error_message();
  // Retain (the default): DeleteVolume forgets the claim, keeps the data.
  ASSERT_TRUE(Delete(first.volume().volume_id()).ok());
  EXPECT_THAT(List("ml"), HasSubstr("weights"));
}

TEST_F(CsiControllerTest, DeletePolicyRemovesOnlyWhatTheDriverCreated) {
  RunResult r = RunCli(*server_, {"volume", "create", "preexisting"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  v1::CreateVolumeResponse bound, created, shared;
  ASSERT_TRUE(Create(Request("pvc-a", {{"volumeName", "preexisting"}, {"deletionPolicy", "Delete"}}),
                     &bound).ok());
  ASSERT_TRUE(Create(Request("pvc-b", {{"deletionPolicy", "Delete"}}), &created).ok());
  ASSERT_TRUE(Create(Request("pvc-c", {{"volumeName", "pvc-b"}}), &shared).ok());
  EXPECT_EQ(shared.volume().volume_id(), created.volume().volume_id());

  // Bound, not created: survives policy Delete.
  ASSERT_TRUE(Delete(bound.volume().volume_id()).ok());
  EXPECT_THAT(List("default"), HasSubstr("preexisting"));
  // Created with Delete, but another claim still binds it: kept.
  ASSERT_TRUE(Delete(created.volume().volume_id()).ok());
  EXPECT_THAT(List("default"), HasSubstr("pvc-b"));
  // Deleting what is gone is fine.
  ASSERT_TRUE(Delete("vo-doesnotexist").ok());

  v1::ListVolumesRequest lreq;
  v1::ListVolumesResponse lresp;
  ASSERT_TRUE(plugin_->controller().ListVolumes(Ctx().get(), lreq, &lresp).ok());
  ASSERT_EQ(lresp.entries_size(), 1);
  EXPECT_EQ(lresp.entries(0).volume().volume_id(), created.volume().volume_id());
}

// A CO may repeat DeleteVolume for one PV; with claims sharing a volume ID a
// repeat looks like the other claim's, so a shared volume is never deleted.
TEST_F(CsiControllerTest, RepeatedDeleteVolumeNeverRemovesASharedVolume) {
  v1::CreateVolumeResponse first, second;
  ASSERT_TRUE(Create(Request("pvc-1", {{"volumeName", "team"}, {"deletionPolicy", "Delete"}}),
                     &first).ok());
  ASSERT_TRUE(Create(Request("pvc-2", {{"volumeName", "team"}, {"deletionPolicy", "Delete"}}),
                     &second).ok());
  ASSERT_EQ(first.volume().volume_id(), second.volume().volume_id());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Delete(first.volume().volume_id()).ok());
    EXPECT_THAT(List("default"), HasSubstr("team")) << "after DeleteVolume #" << i + 1;
  }
}

TEST_F(CsiControllerTest, CreateDeleteWithPolicyDeleteRemovesTheVolume) {
  v1::CreateVolumeResponse resp;
  ASSERT_TRUE(Create(Request("pvc-gone", {{"deletionPolicy", "Delete"}}), &resp).ok());
  EXPECT_THAT(List("default"), HasSubstr("pvc-gone"));
  ASSERT_TRUE(Delete(resp.volume().volume_id()).ok());
  EXPECT_THAT(List("default"), ::testing::Not(HasSubstr("pvc-gone")));
  ASSERT_TRUE(Delete(resp.volume().volume_id()).ok());
}

TEST_F(CsiControllerTest, BadParametersAreInvalidArgumentAndCreateNothing) {
  v1::CreateVolumeResponse resp;
  for (auto params : std::vector<std::map<std::string, std::string>>{
           {{"version", "3"}}, {{"deletionPolicy", "Sometimes"}}, {{"colour", "blue"}},
           {{"volumeName", "../x"}}, {{"namespace", "a/b"}}}) {
    grpc::Status st = Create(Request("pvc-bad", params), &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << params.begin()->first << ": " << st.error_message();
  }
  auto block = Request("pvc-block");
  block.mutable_volume_capabilities(0)->mutable_block();
  EXPECT_EQ(Create(block, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(List("default"), ::testing::Not(HasSubstr("pvc-")));
}

TEST_F(CsiControllerTest, ControlPlaneDownIsUnavailable) {
  server_->Stop();
  v1::CreateVolumeResponse resp;
  grpc::Status st = Create(Request("pvc-x"), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
}

}  // namespace
}  // namespace cairn::e2e
