// VolumeServiceImpl in-process: a real gRPC server over in-memory stores,
// driven through the same client pieces the CLI and mounter use
// (RemoteBlobStore + ObjectStore for client-side sealing).
#include "operator/volume_service.h"

#include "operator/server.h"

#include <httplib.h>

#include <memory>

#include "core/testing/mem_stores.h"
#include "core/crypto.h"
#include "core/files.h"
#include "core/remote_blob_store.h"
#include "core/rpc_client.h"
#include "core/status.h"
#include "core/blob_store_s3.h"
#include "core/testing/s3_server.h"
#include "gmock/gmock.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"

namespace cairn::operator_ {
namespace {

using ::testing::HasSubstr;

class VolumeServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(""); }

  void Start(const std::string& token) {
    meta_ = NewMemMetaStore();
    blobs_ = NewMemBlobStore();
    engine_ = std::make_unique<Engine>(meta_.get(), blobs_.get(),
                                       *MasterKey::FromBytes(std::string(32, 'k')));
    metrics_ = std::make_unique<ServiceMetrics>(registry_);
    service_ = std::make_unique<VolumeServiceImpl>(engine_.get(), metrics_.get(), token);
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    builder.SetMaxReceiveMessageSize(64 << 20);
    server_ = builder.BuildAndStart();
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    channel_ = server_->InProcessChannel(args);
    stub_ = api::VolumeService::NewStub(channel_);
  }
  void TearDown() override { server_->Shutdown(); }

  std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token = "") {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ClientOptions o;
    o.token = token;
    Authorize(*ctx, o);
    return ctx;
  }

  api::VolumeRef Ref(const std::string& name) {
    api::VolumeRef r;
    r.set_name(name);
    return r;
  }

  api::Volume Create(const std::string& name) {
    api::CreateVolumeRequest req;
    req.set_name(name);
    api::Volume v;
    EXPECT_TRUE(stub_->CreateVolume(Ctx().get(), req, &v).ok());
    return v;
  }

  // Uploads `content` to `path` the way `cairn volume put` does.
  absl::Status PutFile(const std::string& volume, const std::string& path,
                       const std::string& content) {
    api::OpenVolumeRequest open;
    *open.mutable_volume() = Ref(volume);
    api::OpenVolumeResponse opened;
    CAIRN_RETURN_IF_ERROR(FromGrpc(stub_->OpenVolume(Ctx().get(), open, &opened)));
    std::unique_ptr<VolumeApiClient> client = VolumeApiClient::OverChannel(channel_, {});
    RemoteBlobStore remote(client.get());
    CAIRN_ASSIGN_OR_RETURN(DataKey key, DataKey::FromBytes(opened.data_key()));
    ObjectStore objects(&remote, opened.volume().id(), key);
    CAIRN_ASSIGN_OR_RETURN(objects::Entry entry, StoreBytes(objects, content, 0644, 1));
    api::CommitRequest commit;
    commit.set_volume_id(opened.volume().id());
    objects::Change* c = commit.mutable_changes()->add_changes();
    c->set_kind(objects::Change::PUT);
    c->set_path(path);
    *c->mutable_entry() = entry;
    api::CommitResponse done;
    return FromGrpc(stub_->Commit(Ctx().get(), commit, &done));
  }

  std::string Read(const std::string& volume, const std::string& path, uint64_t offset,
                   uint64_t length, absl::Status* status = nullptr) {
    api::ReadFileRequest req;
    *req.mutable_volume() = Ref(volume);
    req.set_path(path);
    req.set_offset(offset);
    req.set_length(length);
    auto ctx = Ctx();
    auto reader = stub_->ReadFile(ctx.get(), req);
    std::string out;
    api::ReadFileResponse resp;
    while (reader->Read(&resp)) {
      EXPECT_EQ(resp.offset(), offset + out.size());
      out += resp.data();
    }
    absl::Status s = FromGrpc(reader->Finish());
    if (status != nullptr) *status = s;
    return out;
  }

  metrics::Registry registry_;
  std::unique_ptr<MetaStore> meta_;
  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<ServiceMetrics> metrics_;
  std::unique_ptr<VolumeServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<api::VolumeService::Stub> stub_;
};

TEST_F(VolumeServiceTest, ReadFileIsRangedAcrossChunks) {
  Create("v");
  std::string content(2 * kChunkSize + 12345, '\0');
  for (size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>(i * 131 % 251);
  absl::Status put = PutFile("v", "dir/f.bin", content);
  ASSERT_TRUE(put.ok()) << put;
  EXPECT_EQ(Read("v", "dir/f.bin", 0, 0), content);
  EXPECT_EQ(Read("v", "dir/f.bin", kChunkSize - 10, 20), content.substr(kChunkSize - 10, 20));
  EXPECT_EQ(Read("v", "dir/f.bin", 2 * kChunkSize, 0), content.substr(2 * kChunkSize));
  EXPECT_EQ(Read("v", "dir/f.bin", content.size() + 5, 0), "");
  absl::Status s;
  Read("v", "dir", 0, 0, &s);
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  Read("v", "nope", 0, 0, &s);
  EXPECT_TRUE(absl::IsNotFound(s)) << s;
  Read("v", "../x", 0, 0, &s);
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
}

TEST_F(VolumeServiceTest, GetObjectsSendsRangesOfObjects) {
  api::Volume v = Create("v");
  std::string content(300000, '\0');
  for (size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>(i * 7 % 253);
  ASSERT_TRUE(PutFile("v", "f", content).ok());
  // The file's one chunk, as stored.
  std::string sealed;
  Digest address;
  ASSERT_TRUE(blobs_
                  ->List(v.id(),
                         [&](const BlobStore::BlobInfo& info) {
                           auto got = blobs_->Get(v.id(), info.address);
                           if (got.ok() && got->size() == SealedSize(content.size())) {
                             sealed = *got;
                             address = info.address;
                           }
                         })
                  .ok());
  ASSERT_FALSE(sealed.empty());
  std::unique_ptr<VolumeApiClient> client = VolumeApiClient::OverChannel(channel_, {});
  auto part = client->GetObjectRange(v.id(), address, 100, 70000);
  ASSERT_TRUE(part.ok()) << part.status();
  EXPECT_EQ(part->total_size, sealed.size());
  EXPECT_EQ(part->data, sealed.substr(100, 70000));
  auto tail = client->GetObjectRange(v.id(), address, sealed.size() - 10, 1000);
  ASSERT_TRUE(tail.ok()) << tail.status();
  EXPECT_EQ(tail->data, sealed.substr(sealed.size() - 10));
  // Through RemoteBlobStore too, as the node cache reads it.
  RemoteBlobStore remote(client.get());
  auto head = remote.GetRange(v.id(), address, 0, kSealHeaderSize);
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->data, sealed.substr(0, kSealHeaderSize));

  auto past = client->GetObjectRange(v.id(), address, sealed.size() + 1, 1);
  EXPECT_EQ(past.status().code(), absl::StatusCode::kOutOfRange) << past.status();
  auto absent = client->GetObjectRange(v.id(), Sha256("absent"), 0, 1);
  EXPECT_EQ(absent.status().code(), absl::StatusCode::kNotFound) << absent.status();
  // Ranges, when given, are one per address.
  api::GetObjectsRequest req;
  req.set_volume_id(v.id());
  req.add_addresses(address.RawString());
  req.add_addresses(address.RawString());
  req.add_ranges()->set_length(10);
  auto ctx = Ctx();
  auto reader = stub_->GetObjects(ctx.get(), req);
  api::GetObjectsResponse resp;
  while (reader->Read(&resp)) ADD_FAILURE() << "a reply to a malformed request";
  grpc::Status st = reader->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("one per address"));
}

TEST_F(VolumeServiceTest, GetObjectUrlsNeedsAnObjectStore) {
  api::Volume v = Create("urls");
  std::unique_ptr<VolumeApiClient> client = VolumeApiClient::OverChannel(channel_, {});
  auto urls = client->GetObjectUrls(v.id(), {Sha256("x")});
  EXPECT_EQ(urls.status().code(), absl::StatusCode::kUnimplemented) << urls.status();
}

TEST(VolumeServiceS3Test, GetObjectUrlsSignsOneUrlPerObjectOfTheVolume) {
  CAIRN_REQUIRE_S3(s3);
  auto blobs = OpenS3BlobStore(s3->Config(testing::S3TestServer::UniquePrefix()));
  ASSERT_TRUE(blobs.ok()) << blobs.status();
  auto meta = NewMemMetaStore();
  Engine engine(meta.get(), blobs->get(), *MasterKey::FromBytes(std::string(32, 'k')));
  metrics::Registry registry;
  ServiceMetrics metrics(registry);
  VolumeServiceImpl service(&engine, &metrics, "");
  grpc::ServerBuilder builder;
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  std::unique_ptr<VolumeApiClient> client =
      VolumeApiClient::OverChannel(server->InProcessChannel(grpc::ChannelArguments()), {});
  auto volume = engine.CreateVolume("", "direct", 2);
  ASSERT_TRUE(volume.ok()) << volume.status();
  ASSERT_TRUE((*blobs)->Put(volume->id, Sha256("sealed"), "sealed").ok());

  auto urls = client->GetObjectUrls(volume->id, {Sha256("sealed"), Sha256("other")});
  ASSERT_TRUE(urls.ok()) << urls.status();
  ASSERT_EQ(urls->urls.size(), 2u);
  EXPECT_GT(urls->expires, absl::Now());
  EXPECT_LT(urls->expires, absl::Now() + absl::Minutes(10));
  httplib::Client http(s3->endpoint());
  http.set_url_encode(false);
  auto got = http.Get(urls->urls[0].substr(s3->endpoint().size()));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(got->body, "sealed");
  EXPECT_NE(urls->urls[0].find(volume->id), std::string::npos) << "scoped to the volume";

  EXPECT_EQ(client->GetObjectUrls("vo-missing", {Sha256("sealed")}).status().code(),
            absl::StatusCode::kNotFound);
  server->Shutdown();
}

TEST_F(VolumeServiceTest, CopyFilesSharesChunks) {
  Create("v");
  absl::Status put = PutFile("v", "a.bin", std::string(kChunkSize + 1, 'a'));
  ASSERT_TRUE(put.ok()) << put;
  size_t blobs_before = 0;
  api::GetVolumeRequest get;
  *get.mutable_volume() = Ref("v");
  api::Volume v;
  ASSERT_TRUE(stub_->GetVolume(Ctx().get(), get, &v).ok());
  ASSERT_TRUE(blobs_->List(v.id(), [&](const BlobStore::BlobInfo&) { ++blobs_before; }).ok());

  api::CopyFilesRequest cp;
  *cp.mutable_volume() = Ref("v");
  cp.add_sources("a.bin");
  cp.set_destination("b.bin");
  api::CommitResponse done;
  ASSERT_TRUE(stub_->CopyFiles(Ctx().get(), cp, &done).ok());
  EXPECT_EQ(Read("v", "b.bin", 0, 0), std::string(kChunkSize + 1, 'a'));
  size_t blobs_after = 0;
  ASSERT_TRUE(blobs_->List(v.id(), [&](const BlobStore::BlobInfo&) { ++blobs_after; }).ok());
  // Only the new root directory object; no chunk was copied.
  EXPECT_LE(blobs_after, blobs_before + 1);
}

// An uploaded object larger than the largest sealed chunk is refused, and
// is not stored; one of exactly that size is taken.
TEST_F(VolumeServiceTest, PutObjectsRefusesObjectsLargerThanASealedChunk) {
  api::Volume v = Create("v");
  auto put = [&](const std::string& address, size_t size) {
    api::PutObjectsResponse resp;
    auto ctx = Ctx();
    auto writer = stub_->PutObjects(ctx.get(), &resp);
    api::PutObjectsRequest req;
    req.set_volume_id(v.id());
    req.set_address(address);
    req.set_sealed(std::string(size, 's'));
    writer->Write(req);
    writer->WritesDone();
    return writer->Finish();
  };
  const std::string big(32, 'b'), max(32, 'm');
  grpc::Status refused = put(big, kMaxUploadedObjectBytes + 1);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), HasSubstr("at most"));
  EXPECT_TRUE(put(max, kMaxUploadedObjectBytes).ok());
  api::MissingObjectsRequest missing_req;
  missing_req.set_volume_id(v.id());
  missing_req.add_addresses(big);
  missing_req.add_addresses(max);
  api::MissingObjectsResponse missing;
  ASSERT_TRUE(stub_->MissingObjects(Ctx().get(), missing_req, &missing).ok());
  ASSERT_EQ(missing.missing_size(), 1);
  EXPECT_EQ(missing.missing(0), big);
}

TEST_F(VolumeServiceTest, CommitReferencingMissingObjectsFails) {
  api::Volume v = Create("v");
  api::CommitRequest commit;
  commit.set_volume_id(v.id());
  objects::Change* c = commit.mutable_changes()->add_changes();
  c->set_kind(objects::Change::PUT);
  c->set_path("f");
  c->mutable_entry()->set_type(objects::FILE);
  c->mutable_entry()->set_size(kChunkSize + 1);
  c->mutable_entry()->add_chunks(std::string(32, 'x'));
  c->mutable_entry()->add_chunks(std::string(32, 'y'));
  api::CommitResponse done;
  grpc::Status s = stub_->Commit(Ctx().get(), commit, &done);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
}

// A commit resent with its idempotency key (its reply was lost) answers
// the snapshot it made instead of overwriting a newer commit.
TEST_F(VolumeServiceTest, CommitWithARepeatedKeyIsAppliedOnce) {
  api::Volume v = Create("v");
  api::OpenVolumeRequest open;
  *open.mutable_volume() = Ref("v");
  api::OpenVolumeResponse opened;
  ASSERT_TRUE(stub_->OpenVolume(Ctx().get(), open, &opened).ok());
  std::unique_ptr<VolumeApiClient> client = VolumeApiClient::OverChannel(channel_, {});
  RemoteBlobStore remote(client.get());
  ObjectStore objects(&remote, v.id(), DataKey::FromBytes(opened.data_key()).value());
  api::CommitRequest commit;
  commit.set_volume_id(v.id());
  commit.set_idempotency_key("mount-7:1");
  objects::Change* c = commit.mutable_changes()->add_changes();
  c->set_kind(objects::Change::PUT);
  c->set_path("shared");
  *c->mutable_entry() = StoreBytes(objects, std::string(6000, 'm'), 0644, 1).value();
  api::CommitResponse first;
  ASSERT_TRUE(stub_->Commit(Ctx().get(), commit, &first).ok());
  ASSERT_TRUE(PutFile("v", "shared", "theirs").ok());
  api::CommitResponse again;
  grpc::Status s = stub_->Commit(Ctx().get(), commit, &again);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(again.snapshot().seq(), first.snapshot().seq());
  EXPECT_EQ(again.snapshot().root(), first.snapshot().root());
  EXPECT_EQ(Read("v", "shared", 0, 0), "theirs");
  // The repeat is not a commit and does not wind the gauges back to it.
  std::string text = registry_.Render();
  EXPECT_THAT(text, HasSubstr("cairn_commits_total 2\n"));
  EXPECT_THAT(text, HasSubstr("cairn_volume_bytes{namespace=\"default\",volume=\"v\"} 6\n"));
  commit.set_idempotency_key(std::string(200, 'k'));
  EXPECT_EQ(stub_->Commit(Ctx().get(), commit, &again).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(VolumeServiceTest, CreateIfMissingRefusesOtherLimits) {
  api::CreateVolumeRequest req;
  req.set_name("lim");
  req.set_create_if_missing(true);
  req.mutable_limits()->set_max_inodes(100);
  api::Volume v;
  ASSERT_TRUE(stub_->CreateVolume(Ctx().get(), req, &v).ok());
  api::Volume same;
  ASSERT_TRUE(stub_->CreateVolume(Ctx().get(), req, &same).ok());
  EXPECT_EQ(same.id(), v.id());
  req.mutable_limits()->set_max_inodes(200);
  grpc::Status s = stub_->CreateVolume(Ctx().get(), req, &same);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(s.error_message(), HasSubstr("max_inodes 100 (requested 200)"));
  req.clear_limits();
  req.set_version(1);
  s = stub_->CreateVolume(Ctx().get(), req, &same);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(s.error_message(), HasSubstr("version 2 (requested 1)"));
}

TEST_F(VolumeServiceTest, DeleteAllowMissingAndMetrics) {
  api::Volume v = Create("v");
  ASSERT_TRUE(PutFile("v", "x", "hello").ok());
  std::string text = registry_.Render();
  EXPECT_THAT(text, HasSubstr("cairn_commits_total 1\n"));
  EXPECT_THAT(text, HasSubstr("cairn_volume_bytes{namespace=\"default\",volume=\"v\"} 5\n"));
  api::DeleteVolumeRequest del;
  *del.mutable_volume() = Ref("v");
  api::DeleteVolumeResponse resp;
  ASSERT_TRUE(stub_->DeleteVolume(Ctx().get(), del, &resp).ok());
  EXPECT_TRUE(resp.deleted());
  EXPECT_EQ(stub_->DeleteVolume(Ctx().get(), del, &resp).error_code(),
            grpc::StatusCode::NOT_FOUND);
  del.set_allow_missing(true);
  ASSERT_TRUE(stub_->DeleteVolume(Ctx().get(), del, &resp).ok());
  EXPECT_FALSE(resp.deleted());
  EXPECT_THAT(registry_.Render(), ::testing::Not(HasSubstr("volume=\"v\"")));
  // The old ID no longer resolves, even after re-creating the name (C1).
  Create("v");
  api::GetHeadRequest head;
  head.mutable_volume()->set_id(v.id());
  api::Snapshot snap;
  EXPECT_EQ(stub_->GetHead(Ctx().get(), head, &snap).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(VolumeServiceTest, TokenIsRequiredWhenConfigured) {
  server_->Shutdown();
  Start("tok");
  api::ListVolumesRequest req;
  api::ListVolumesResponse resp;
  grpc::Status s = stub_->ListVolumes(Ctx().get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("unauthenticated"));
  EXPECT_EQ(stub_->ListVolumes(Ctx("nope").get(), req, &resp).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(stub_->ListVolumes(Ctx("tok").get(), req, &resp).ok());
  EXPECT_THAT(registry_.Render(),
              HasSubstr("cairn_api_requests_total{method=\"ListVolumes\",code=\"UNAUTHENTICATED\"} 2"));
}

TEST(ServerAddressTest, Loopback) {
  EXPECT_TRUE(IsLoopbackAddress("127.0.0.1:7420"));
  EXPECT_TRUE(IsLoopbackAddress("localhost:1"));
  EXPECT_TRUE(IsLoopbackAddress("[::1]:7420"));
  EXPECT_FALSE(IsLoopbackAddress("0.0.0.0:7420"));
  EXPECT_FALSE(IsLoopbackAddress("[::]:7420"));
  EXPECT_FALSE(IsLoopbackAddress("10.0.0.1:7420"));
  EXPECT_TRUE(IsLoopbackAddress("127.0.0.2:7420"));
  // Host names are resolved by gRPC; only literal loopback addresses count.
  EXPECT_FALSE(IsLoopbackAddress("127.example.com:7420"));
  EXPECT_FALSE(IsLoopbackAddress("127.0.0.1.nip.io:7420"));
  EXPECT_FALSE(IsLoopbackAddress("[::ffff:10.0.0.1]:7420"));
}

}  // namespace
}  // namespace cairn::operator_
