#include "core/remote_blob_store.h"

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace cairn {

RemoteBlobStore::RemoteBlobStore(std::shared_ptr<grpc::Channel> channel, ClientOptions options)
    : options_(std::move(options)), stub_(api::VolumeService::NewStub(channel)) {}

std::unique_ptr<grpc::ClientContext> RemoteBlobStore::NewContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  Authorize(*context, options_);
  return context;
}

absl::Status RemoteBlobStore::Put(std::string_view volume_id, const Digest& address,
                                  std::string_view sealed) {
  std::vector<std::pair<Digest, std::string>> one;
  one.emplace_back(address, std::string(sealed));
  return PutMany(volume_id, std::move(one));
}

absl::StatusOr<std::string> RemoteBlobStore::Get(std::string_view volume_id,
                                                 const Digest& address) {
  CAIRN_ASSIGN_OR_RETURN(std::vector<std::string> got, GetMany(volume_id, {address}));
  return std::move(got.front());
}

absl::StatusOr<bool> RemoteBlobStore::Contains(std::string_view volume_id,
                                               const Digest& address) {
  CAIRN_ASSIGN_OR_RETURN(std::vector<Digest> missing, Missing(volume_id, {address}));
  return missing.empty();
}

absl::Status RemoteBlobStore::Touch(std::string_view volume_id, const Digest& address) {
  // MissingObjects refreshes the mtime of every blob it finds present.
  CAIRN_ASSIGN_OR_RETURN(std::vector<Digest> missing, Missing(volume_id, {address}));
  if (!missing.empty()) {
    return absl::NotFoundError(absl::StrCat("object ", address.ToHex(), " not stored"));
  }
  return absl::OkStatus();
}
absl::Status RemoteBlobStore::List(std::string_view, const std::function<void(const BlobInfo&)>&) {
  return absl::UnimplementedError("RemoteBlobStore::List is not part of the Volume API");
}
absl::Status RemoteBlobStore::Delete(std::string_view, const Digest&) {
  return absl::UnimplementedError("RemoteBlobStore::Delete: the control plane collects garbage");
}
absl::StatusOr<std::vector<std::string>> RemoteBlobStore::ListVolumes() {
  return absl::UnimplementedError("RemoteBlobStore::ListVolumes is not part of the Volume API");
}
absl::Status RemoteBlobStore::DeleteVolume(std::string_view) {
  return absl::UnimplementedError("RemoteBlobStore::DeleteVolume: use DeleteVolume on the API");
}

std::unique_ptr<RemoteBlobStore::PutStream> RemoteBlobStore::OpenPutStream(
    std::string_view volume_id) {
  std::unique_ptr<PutStream> stream(new PutStream());
  stream->volume_id_ = std::string(volume_id);
  stream->context_ = NewContext();
  stream->writer_ = stub_->PutObjects(stream->context_.get(), &stream->response_);
  return stream;
}

RemoteBlobStore::PutStream::~PutStream() {
  if (!finished_ && writer_ != nullptr) {
    context_->TryCancel();
    (void)writer_->Finish();
  }
}

absl::Status RemoteBlobStore::PutStream::Write(const Digest& address, std::string&& sealed) {
  if (finished_) return status_;
  api::PutObjectsRequest request;
  if (first_) request.set_volume_id(volume_id_);
  first_ = false;
  request.set_address(address.RawString());
  request.set_sealed(std::move(sealed));
  if (writer_->Write(request)) return absl::OkStatus();
  // A failed write means the server ended the stream; Finish says why.
  broken_ = true;
  absl::Status s = Finish();
  if (s.ok()) s = absl::UnavailableError("PutObjects stream closed by the server");
  status_ = s;
  return s;
}

absl::Status RemoteBlobStore::PutStream::Finish() {
  if (finished_) return status_;
  finished_ = true;
  if (!broken_) writer_->WritesDone();
  status_ = FromGrpc(writer_->Finish());
  return status_;
}

absl::Status RemoteBlobStore::PutMany(std::string_view volume_id,
                                      std::vector<std::pair<Digest, std::string>>&& blobs) {
  if (blobs.empty()) return absl::OkStatus();
  std::unique_ptr<PutStream> stream = OpenPutStream(volume_id);
  for (auto& [address, sealed] : blobs) {
    CAIRN_RETURN_IF_ERROR(stream->Write(address, std::move(sealed)));
  }
  return stream->Finish();
}

absl::Status RemoteBlobStore::PutMany(std::string_view volume_id,
                                      const std::vector<std::pair<Digest, std::string>>& blobs) {
  return PutMany(volume_id, std::vector<std::pair<Digest, std::string>>(blobs));
}

absl::StatusOr<std::vector<std::string>> RemoteBlobStore::GetMany(
    std::string_view volume_id, const std::vector<Digest>& addresses) {
  std::vector<std::string> out(addresses.size());
  if (addresses.empty()) return out;
  api::GetObjectsRequest request;
  request.set_volume_id(std::string(volume_id));
  absl::flat_hash_map<Digest, std::vector<size_t>> where;
  for (size_t i = 0; i < addresses.size(); ++i) {
    auto& slots = where[addresses[i]];
    if (slots.empty()) request.add_addresses(addresses[i].RawString());
    slots.push_back(i);
  }
  auto context = NewContext();
  std::unique_ptr<grpc::ClientReader<api::GetObjectsResponse>> reader =
      stub_->GetObjects(context.get(), request);
  api::GetObjectsResponse response;
  size_t received = 0;
  while (reader->Read(&response)) {
    absl::StatusOr<Digest> address = Digest::FromRaw(response.address());
    if (!address.ok()) continue;
    auto it = where.find(*address);
    if (it == where.end()) continue;
    // The last slot takes the buffer; duplicates (rare) get copies.
    for (size_t k = 0; k + 1 < it->second.size(); ++k) out[it->second[k]] = response.sealed();
    out[it->second.back()] = std::move(*response.mutable_sealed());
    ++received;
  }
  CAIRN_RETURN_IF_ERROR(FromGrpc(reader->Finish()));
  if (received != where.size()) {
    return absl::DataLossError(absl::StrCat("GetObjects returned ", received, " of ",
                                            where.size(), " objects"));
  }
  return out;
}

absl::StatusOr<std::vector<Digest>> RemoteBlobStore::Missing(
    std::string_view volume_id, const std::vector<Digest>& addresses) {
  std::vector<Digest> missing;
  if (addresses.empty()) return missing;
  api::MissingObjectsRequest request;
  request.set_volume_id(std::string(volume_id));
  for (const Digest& d : addresses) request.add_addresses(d.RawString());
  api::MissingObjectsResponse response;
  auto context = NewContext();
  CAIRN_RETURN_IF_ERROR(FromGrpc(stub_->MissingObjects(context.get(), request, &response)));
  for (const std::string& raw : response.missing()) {
    CAIRN_ASSIGN_OR_RETURN(Digest d, Digest::FromRaw(raw));
    missing.push_back(d);
  }
  return missing;
}

}  // namespace cairn
