#include "mounter/volume_client.h"

#include <chrono>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "grpcpp/grpcpp.h"
#include "proto/volume.grpc.pb.h"

namespace cairn::mounter {
namespace {

using std::chrono::seconds;

// Every call gets a deadline so a dead control plane surfaces as
// Unavailable/DeadlineExceeded (retried by the caller) instead of a hang.
constexpr auto kRpcTimeout = seconds(120);

class GrpcBlobStore final : public BlobStore {
 public:
  GrpcBlobStore(api::VolumeService::Stub* stub, const ClientOptions* options)
      : stub_(stub), options_(options) {}

  absl::Status Put(std::string_view volume_id, const Digest& address,
                   std::string_view sealed) override {
    grpc::ClientContext ctx;
    Prepare(ctx);
    api::PutObjectsResponse response;
    auto writer = stub_->PutObjects(&ctx, &response);
    api::PutObjectsRequest request;
    request.set_volume_id(std::string(volume_id));
    request.set_address(address.RawString());
    request.set_sealed(std::string(sealed));
    writer->Write(request);
    writer->WritesDone();
    return FromGrpc(writer->Finish());
  }

  absl::StatusOr<std::string> Get(std::string_view volume_id, const Digest& address) override {
    grpc::ClientContext ctx;
    Prepare(ctx);
    api::GetObjectsRequest request;
    request.set_volume_id(std::string(volume_id));
    request.add_addresses(address.RawString());
    auto reader = stub_->GetObjects(&ctx, request);
    api::GetObjectsResponse response;
    std::optional<std::string> found;
    while (reader->Read(&response)) {
      if (response.address() == address.raw()) found = std::move(*response.mutable_sealed());
    }
    CAIRN_RETURN_IF_ERROR(FromGrpc(reader->Finish()));
    if (!found) return absl::NotFoundError(absl::StrCat("object ", address.ToHex(), " not found"));
    return std::move(*found);
  }

  absl::StatusOr<bool> Contains(std::string_view volume_id, const Digest& address) override {
    grpc::ClientContext ctx;
    Prepare(ctx);
    api::MissingObjectsRequest request;
    request.set_volume_id(std::string(volume_id));
    request.add_addresses(address.RawString());
    api::MissingObjectsResponse response;
    CAIRN_RETURN_IF_ERROR(FromGrpc(stub_->MissingObjects(&ctx, request, &response)));
    return response.missing_size() == 0;
  }

  // The API has no touch: answer by presence (MissingObjects). The control
  // plane touches every referenced address itself when a commit lands, under
  // its GC lock, and a commit naming a blob GC removed meanwhile fails with
  // FailedPrecondition and is retried, re-uploading it.
  absl::Status Touch(std::string_view volume_id, const Digest& address) override {
    CAIRN_ASSIGN_OR_RETURN(bool present, Contains(volume_id, address));
    if (!present) return absl::NotFoundError(absl::StrCat("object ", address.ToHex(), " not found"));
    return absl::OkStatus();
  }
  absl::Status List(std::string_view, const std::function<void(const BlobInfo&)>&) override {
    return Unsupported("List");
  }
  absl::Status Delete(std::string_view, const Digest&) override { return Unsupported("Delete"); }
  absl::StatusOr<std::vector<std::string>> ListVolumes() override {
    return Unsupported("ListVolumes");
  }
  absl::Status DeleteVolume(std::string_view) override { return Unsupported("DeleteVolume"); }

 private:
  static absl::Status Unsupported(std::string_view what) {
    return absl::UnimplementedError(absl::StrCat(std::string(what), " is not available over the Volume API"));
  }
  void Prepare(grpc::ClientContext& ctx) {
    Authorize(ctx, *options_);
    ctx.set_deadline(std::chrono::system_clock::now() + kRpcTimeout);
  }

  api::VolumeService::Stub* const stub_;
  const ClientOptions* const options_;
};

class GrpcVolumeClient final : public VolumeClient {
 public:
  GrpcVolumeClient(ClientOptions options, std::shared_ptr<grpc::Channel> channel)
      : options_(std::move(options)),
        stub_(api::VolumeService::NewStub(channel)),
        blobs_(stub_.get(), &options_) {}

  absl::StatusOr<api::OpenVolumeResponse> Open(const api::VolumeRef& ref) override {
    grpc::ClientContext ctx;
    Prepare(ctx);
    api::OpenVolumeRequest request;
    *request.mutable_volume() = ref;
    api::OpenVolumeResponse response;
    CAIRN_RETURN_IF_ERROR(FromGrpc(stub_->OpenVolume(&ctx, request, &response)));
    return response;
  }

  absl::StatusOr<api::Snapshot> Head(std::string_view volume_id) override {
    grpc::ClientContext ctx;
    Prepare(ctx);
    api::GetHeadRequest request;
    request.mutable_volume()->set_id(std::string(volume_id));
    request.mutable_volume()->set_namespace_(options_.ns);
    api::Snapshot response;
    CAIRN_RETURN_IF_ERROR(FromGrpc(stub_->GetHead(&ctx, request, &response)));
    return response;
  }

  absl::StatusOr<api::Snapshot> Commit(std::string_view volume_id, uint64_t base_seq,
                                       const objects::ChangeSet& changes,
                                       std::string_view idempotency_key) override {
    grpc::ClientContext ctx;
    Prepare(ctx);
    api::CommitRequest request;
    request.set_volume_id(std::string(volume_id));
    request.set_base_seq(base_seq);
    *request.mutable_changes() = changes;
    request.set_idempotency_key(std::string(idempotency_key));
    api::CommitResponse response;
    CAIRN_RETURN_IF_ERROR(FromGrpc(stub_->Commit(&ctx, request, &response)));
    return response.snapshot();
  }

  BlobStore* blobs() override { return &blobs_; }

 private:
  void Prepare(grpc::ClientContext& ctx) {
    Authorize(ctx, options_);
    ctx.set_deadline(std::chrono::system_clock::now() + kRpcTimeout);
  }

  const ClientOptions options_;
  std::unique_ptr<api::VolumeService::Stub> stub_;
  GrpcBlobStore blobs_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<VolumeClient>> NewGrpcVolumeClient(const ClientOptions& options) {
  CAIRN_ASSIGN_OR_RETURN(auto channel, Dial(options));
  return std::make_unique<GrpcVolumeClient>(options, std::move(channel));
}

}  // namespace cairn::mounter
