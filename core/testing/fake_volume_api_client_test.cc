#include "core/testing/fake_volume_api_client.h"

#include "core/object_store.h"
#include "core/remote_blob_store.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

TEST(FakeVolumeApiClientTest, VolumesHaveTheApiIdentityRules) {
  FakeVolumeApiClient api;
  api::CreateVolumeRequest create;
  create.set_namespace_("default");
  create.set_name("v");
  absl::StatusOr<api::Volume> first = api.CreateVolume(create);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(absl::IsAlreadyExists(api.CreateVolume(create).status()));
  create.set_create_if_missing(true);
  EXPECT_EQ(api.CreateVolume(create)->id(), first->id());

  api::DeleteVolumeRequest del;
  del.mutable_volume()->set_id(first->id());
  ASSERT_TRUE(api.DeleteVolume(del).ok());
  EXPECT_TRUE(absl::IsNotFound(api.GetVolume(api.Ref("v")).status()));
  del.set_allow_missing(true);
  EXPECT_TRUE(api.DeleteVolume(del).ok());
  // C1: the same name again is a new volume.
  create.set_create_if_missing(false);
  EXPECT_NE(api.CreateVolume(create)->id(), first->id());
}

TEST(FakeVolumeApiClientTest, OpenedVolumesHoldSealedObjectsAndCommitsAdvanceTheHead) {
  FakeVolumeApiClient api;
  api::CreateVolumeRequest create;
  create.set_namespace_("default");
  create.set_name("v");
  ASSERT_TRUE(api.CreateVolume(create).ok());
  absl::StatusOr<api::OpenVolumeResponse> opened = api.OpenVolume(api.Ref("v"));
  ASSERT_TRUE(opened.ok()) << opened.status();
  absl::StatusOr<DataKey> key = DataKey::FromBytes(opened->data_key());
  ASSERT_TRUE(key.ok());
  RemoteBlobStore blobs(&api);
  ObjectStore objects(&blobs, opened->volume().id(), *key);
  // The empty root is readable with the handed-out key.
  absl::StatusOr<Digest> root = Digest::FromRaw(opened->head().root());
  ASSERT_TRUE(root.ok());
  EXPECT_TRUE(objects.GetDirectory(*root).ok());
  absl::StatusOr<Digest> chunk = objects.PutChunk("hello");
  ASSERT_TRUE(chunk.ok());
  EXPECT_EQ(*objects.GetChunk(*chunk), "hello");

  api::CommitRequest commit;
  commit.set_volume_id(opened->volume().id());
  commit.set_idempotency_key("k");
  EXPECT_EQ(api.Commit(commit)->seq(), 1u);
  EXPECT_EQ(api.GetHead(opened->volume().id())->seq(), 1u);
  ASSERT_EQ(api.commits().size(), 1u);
  EXPECT_EQ(api.commits()[0].idempotency_key(), "k");
}

TEST(FakeVolumeApiClientTest, FailNextInjectsErrors) {
  FakeVolumeApiClient api;
  api.FailNext(absl::UnavailableError("down"), 2);
  EXPECT_TRUE(absl::IsUnavailable(api.ListVolumes("default").status()));
  EXPECT_TRUE(absl::IsUnavailable(api.GetHead("vo-x").status()));
  EXPECT_TRUE(api.ListVolumes("default").ok());
  EXPECT_EQ(api.calls().size(), 3u);
}

}  // namespace
}  // namespace cairn
