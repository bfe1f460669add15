#include "core/volume_api_client.h"

#include <algorithm>
#include <chrono>
#include <random>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/log.h"
#include "core/status.h"
#include "grpcpp/grpcpp.h"

namespace cairn {
namespace {

constexpr absl::Duration kInitialBackoff = absl::Milliseconds(50);
constexpr absl::Duration kLastAttemptWhenUnreachable = absl::Seconds(2);

std::chrono::system_clock::time_point Deadline(absl::Duration d) {
  return absl::ToChronoTime(absl::Now() + d);
}

// Full jitter over [backoff/2, backoff]: clients that lost the same server
// do not come back in lockstep.
absl::Duration Jittered(absl::Duration backoff) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_real_distribution<double> half(0.5, 1.0);
  return backoff * half(rng);
}

}  // namespace

// ---- PutObjects stream -------------------------------------------------------

class VolumeApiClient::GrpcPutStream final : public VolumeApiClient::PutStream {
 public:
  GrpcPutStream(VolumeApiClient* client, std::string_view volume_id)
      : volume_id_(volume_id), context_(client->NewContext(Kind::kStream)) {
    writer_ = client->stub_->PutObjects(context_.get(), &response_);
  }
  ~GrpcPutStream() override {
    if (!finished_) {
      context_->TryCancel();
      (void)writer_->Finish();
    }
  }

  absl::Status Write(const Digest& address, std::string&& sealed) override {
    if (finished_) return status_.ok() ? absl::FailedPreconditionError("stream finished") : status_;
    api::PutObjectsRequest request;
    if (first_) request.set_volume_id(volume_id_);
    first_ = false;
    request.set_address(address.RawString());
    request.set_sealed(std::move(sealed));
    if (writer_->Write(request)) return absl::OkStatus();
    // A failed write means the stream ended; Finish says why.
    broken_ = true;
    absl::Status s = Finish();
    if (s.ok()) s = absl::UnavailableError("PutObjects stream closed by the server");
    status_ = s;
    return s;
  }

  absl::Status Finish() override {
    if (finished_) return status_;
    finished_ = true;
    if (!broken_) writer_->WritesDone();
    status_ = FromGrpc(writer_->Finish());
    return status_;
  }

 private:
  std::string volume_id_;
  std::unique_ptr<grpc::ClientContext> context_;
  api::PutObjectsResponse response_;
  std::unique_ptr<grpc::ClientWriter<api::PutObjectsRequest>> writer_;
  bool first_ = true;
  bool broken_ = false;
  bool finished_ = false;
  absl::Status status_;
};

// ---- plumbing -----------------------------------------------------------------

VolumeApiClient::VolumeApiClient(ClientOptions options)
    : options_(std::move(options)),
      retry_for_ns_(absl::ToInt64Nanoseconds(options_.retry_for)) {}

void VolumeApiClient::SetRetryFor(absl::Duration retry_for) {
  retry_for_ns_.store(absl::ToInt64Nanoseconds(retry_for));
}

absl::StatusOr<std::unique_ptr<VolumeApiClient>> VolumeApiClient::Connect(
    const ClientOptions& options) {
  std::unique_ptr<VolumeApiClient> client(new VolumeApiClient(options));
  CAIRN_ASSIGN_OR_RETURN(client->channel_, Dial(options));
  client->stub_ = api::VolumeService::NewStub(client->channel_);
  return client;
}

std::unique_ptr<VolumeApiClient> VolumeApiClient::OverChannel(
    std::shared_ptr<grpc::Channel> channel, const ClientOptions& options) {
  std::unique_ptr<VolumeApiClient> client(new VolumeApiClient(options));
  client->channel_ = std::move(channel);
  client->watch_channel_ = false;
  client->stub_ = api::VolumeService::NewStub(client->channel_);
  return client;
}

api::VolumeRef VolumeApiClient::Ref(std::string_view name) const {
  api::VolumeRef ref;
  ref.set_namespace_(options_.ns);
  ref.set_name(std::string(name));
  return ref;
}

std::unique_ptr<grpc::ClientContext> VolumeApiClient::NewContext(Kind kind) const {
  auto context = std::make_unique<grpc::ClientContext>();
  Authorize(*context, options_);
  switch (kind) {
    case Kind::kMetadata:
      context->set_deadline(Deadline(options_.metadata_timeout));
      break;
    case Kind::kCommit:
      context->set_deadline(Deadline(options_.commit_timeout));
      break;
    case Kind::kStream:
      context->set_deadline(Deadline(options_.stream_timeout));
      break;
  }
  return context;
}

bool VolumeApiClient::WaitForServer(absl::Duration timeout) {
  if (channel_ == nullptr || !watch_channel_) return true;
  const absl::Time start = absl::Now();
  const absl::Duration initial_budget = retry_for();
  while (true) {
    if (channel_->GetState(/*try_to_connect=*/true) == GRPC_CHANNEL_READY) return true;
    // A budget shortened meanwhile (SetRetryFor) shortens this wait too.
    absl::Duration limit = timeout - (initial_budget - std::min(initial_budget, retry_for()));
    absl::Duration left = limit - (absl::Now() - start);
    if (left <= absl::ZeroDuration()) return false;
    if (channel_->WaitForConnected(Deadline(std::min(left, absl::Milliseconds(250))))) return true;
  }
}

absl::Status VolumeApiClient::Call(
    std::string_view method, Kind kind, Retry retry,
    const std::function<grpc::Status(grpc::ClientContext&)>& attempt) {
  const absl::Time start = absl::Now();
  auto give_up = [&] { return start + retry_for(); };
  absl::Duration backoff = kInitialBackoff;
  for (int n = 0;; ++n) {
    // An unreachable server is waited for here, not hammered: the channel
    // reconnects on its own (backoff capped at max_backoff, see Dial) and
    // this returns as soon as it is connected. Past the budget, one last
    // attempt gets gRPC's own reason (refused, TLS, DNS) for the message.
    const bool connected =
        WaitForServer(std::max(give_up() - absl::Now(), absl::Milliseconds(1)));
    std::unique_ptr<grpc::ClientContext> context = NewContext(kind);
    if (!connected) {
      // A server that accepts connections but never completes the
      // handshake would otherwise hold this last attempt until gRPC's
      // connect timeout (20 s).
      context->set_deadline(
          std::min(context->deadline(), Deadline(kLastAttemptWhenUnreachable)));
    }
    absl::Status s = FromGrpc(attempt(*context));
    if (!connected && absl::IsUnavailable(s)) {
      return absl::UnavailableError(absl::StrCat("cannot reach the Cairn server at ", options_.server,
                                                 " for ", absl::FormatDuration(retry_for()),
                                                 " (", s.message(), ")"));
    }
    const bool retryable =
        absl::IsUnavailable(s) || (retry == Retry::kAlsoDeadline && absl::IsDeadlineExceeded(s));
    if (!retryable) return s;
    const absl::Duration pause = Jittered(backoff);
    if (absl::Now() + pause >= give_up()) return s;
    ++retries_;
    CAIRN_LOG_DEBUG("%s: %s; retrying (attempt %d)", method, s.ToString(), n + 2);
    absl::SleepFor(pause);
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

absl::Status VolumeApiClient::Explain(absl::Status s) const {
  if (s.ok()) return s;
  if (s.message().empty()) {
    // e.g. a request gRPC could not parse (a path that is not UTF-8).
    return absl::Status(s.code(), absl::StrCat("the request failed (",
                                               absl::StatusCodeToString(s.code()),
                                               ") and the server gave no reason"));
  }
  if (absl::IsUnavailable(s) && !absl::StrContains(s.message(), options_.server)) {
    return absl::UnavailableError(
        absl::StrCat("cannot reach the Cairn server at ", options_.server, " (", s.message(), ")"));
  }
  if (absl::IsUnauthenticated(s) && !absl::StrContains(s.message(), "unauthenticated")) {
    return absl::UnauthenticatedError(absl::StrCat("unauthenticated: ", s.message()));
  }
  return s;
}

// ---- unary calls ----------------------------------------------------------------

#define CAIRN_UNARY_(Method, Request, Response, kind, retry)                               \
  Response response;                                                                        \
  CAIRN_RETURN_IF_ERROR(Call(#Method, kind, retry, [&](grpc::ClientContext& ctx) {          \
    return stub_->Method(&ctx, Request, &response);                                         \
  }));                                                                                      \
  return response

absl::StatusOr<api::Volume> VolumeApiClient::CreateVolume(const api::CreateVolumeRequest& request) {
  CAIRN_UNARY_(CreateVolume, request, api::Volume, Kind::kMetadata, Retry::kUnavailableOnly);
}

absl::StatusOr<api::Volume> VolumeApiClient::GetVolume(const api::VolumeRef& ref) {
  api::GetVolumeRequest request;
  *request.mutable_volume() = ref;
  CAIRN_UNARY_(GetVolume, request, api::Volume, Kind::kMetadata, Retry::kAlsoDeadline);
}

absl::StatusOr<api::ListVolumesResponse> VolumeApiClient::ListVolumes(std::string_view ns) {
  api::ListVolumesRequest request;
  request.set_namespace_(std::string(ns));
  CAIRN_UNARY_(ListVolumes, request, api::ListVolumesResponse, Kind::kMetadata,
               Retry::kAlsoDeadline);
}

absl::StatusOr<api::DeleteVolumeResponse> VolumeApiClient::DeleteVolume(
    const api::DeleteVolumeRequest& request) {
  CAIRN_UNARY_(DeleteVolume, request, api::DeleteVolumeResponse, Kind::kMetadata,
               Retry::kUnavailableOnly);
}

absl::StatusOr<api::Volume> VolumeApiClient::RenameVolume(const api::RenameVolumeRequest& request) {
  CAIRN_UNARY_(RenameVolume, request, api::Volume, Kind::kMetadata, Retry::kUnavailableOnly);
}

absl::StatusOr<api::Volume> VolumeApiClient::RenewLease(const api::RenewLeaseRequest& request) {
  // Repeating a renewal is harmless: the lease only moves forward.
  CAIRN_UNARY_(RenewLease, request, api::Volume, Kind::kMetadata, Retry::kAlsoDeadline);
}

absl::StatusOr<api::FileEntry> VolumeApiClient::Stat(const api::StatRequest& request) {
  CAIRN_UNARY_(Stat, request, api::FileEntry, Kind::kMetadata, Retry::kAlsoDeadline);
}

absl::StatusOr<api::CommitResponse> VolumeApiClient::RemoveFile(
    const api::RemoveFileRequest& request) {
  CAIRN_UNARY_(RemoveFile, request, api::CommitResponse, Kind::kCommit, Retry::kUnavailableOnly);
}

absl::StatusOr<api::CommitResponse> VolumeApiClient::CopyFiles(const api::CopyFilesRequest& request) {
  CAIRN_UNARY_(CopyFiles, request, api::CommitResponse, Kind::kCommit, Retry::kUnavailableOnly);
}

absl::StatusOr<api::OpenVolumeResponse> VolumeApiClient::OpenVolume(const api::VolumeRef& ref) {
  api::OpenVolumeRequest request;
  *request.mutable_volume() = ref;
  CAIRN_UNARY_(OpenVolume, request, api::OpenVolumeResponse, Kind::kMetadata,
               Retry::kAlsoDeadline);
}

absl::StatusOr<api::Snapshot> VolumeApiClient::GetHead(std::string_view volume_id) {
  api::GetHeadRequest request;
  request.mutable_volume()->set_id(std::string(volume_id));
  request.mutable_volume()->set_namespace_(options_.ns);
  CAIRN_UNARY_(GetHead, request, api::Snapshot, Kind::kMetadata, Retry::kAlsoDeadline);
}

absl::StatusOr<api::Snapshot> VolumeApiClient::Commit(const api::CommitRequest& request) {
  const Retry retry =
      request.idempotency_key().empty() ? Retry::kUnavailableOnly : Retry::kAlsoDeadline;
  api::CommitResponse response;
  CAIRN_RETURN_IF_ERROR(Call("Commit", Kind::kCommit, retry, [&](grpc::ClientContext& ctx) {
    return stub_->Commit(&ctx, request, &response);
  }));
  return std::move(*response.mutable_snapshot());
}

#undef CAIRN_UNARY_

// ---- streams ---------------------------------------------------------------------

absl::StatusOr<std::vector<api::FileEntry>> VolumeApiClient::ListFiles(
    const api::ListFilesRequest& request) {
  std::vector<api::FileEntry> entries;
  CAIRN_RETURN_IF_ERROR(
      Call("ListFiles", Kind::kStream, Retry::kAlsoDeadline, [&](grpc::ClientContext& ctx) {
        entries.clear();
        auto reader = stub_->ListFiles(&ctx, request);
        api::ListFilesResponse batch;
        while (reader->Read(&batch)) {
          for (api::FileEntry& e : *batch.mutable_entries()) entries.push_back(std::move(e));
        }
        return reader->Finish();
      }));
  return entries;
}

absl::StatusOr<std::vector<std::string>> VolumeApiClient::GetObjects(
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
  size_t received = 0;
  CAIRN_RETURN_IF_ERROR(
      Call("GetObjects", Kind::kStream, Retry::kAlsoDeadline, [&](grpc::ClientContext& ctx) {
        received = 0;
        auto reader = stub_->GetObjects(&ctx, request);
        api::GetObjectsResponse response;
        while (reader->Read(&response)) {
          absl::StatusOr<Digest> address = Digest::FromRaw(response.address());
          if (!address.ok()) continue;
          auto it = where.find(*address);
          if (it == where.end()) continue;
          // The last slot takes the buffer; duplicates (rare) get copies.
          for (size_t k = 0; k + 1 < it->second.size(); ++k) {
            out[it->second[k]] = response.sealed();
          }
          out[it->second.back()] = std::move(*response.mutable_sealed());
          ++received;
        }
        return reader->Finish();
      }));
  if (received != where.size()) {
    return absl::DataLossError(
        absl::StrCat("GetObjects returned ", received, " of ", where.size(), " objects"));
  }
  return out;
}

absl::StatusOr<BlobRange> VolumeApiClient::GetObjectRange(std::string_view volume_id,
                                                          const Digest& address, uint64_t offset,
                                                          uint64_t length) {
  api::GetObjectsRequest request;
  request.set_volume_id(std::string(volume_id));
  request.add_addresses(address.RawString());
  api::ByteRange* range = request.add_ranges();
  range->set_offset(offset);
  range->set_length(length);
  BlobRange out;
  bool received = false;
  CAIRN_RETURN_IF_ERROR(
      Call("GetObjects", Kind::kStream, Retry::kAlsoDeadline, [&](grpc::ClientContext& ctx) {
        received = false;
        auto reader = stub_->GetObjects(&ctx, request);
        api::GetObjectsResponse response;
        while (reader->Read(&response)) {
          if (response.address() != request.addresses(0) || response.offset() != offset) continue;
          out.data = std::move(*response.mutable_sealed());
          out.total_size = response.total_size();
          received = true;
        }
        return reader->Finish();
      }));
  if (!received) {
    return absl::DataLossError(
        absl::StrCat("GetObjects returned no range of object ", address.ToHex()));
  }
  if (out.data.size() > length || offset + out.data.size() > out.total_size) {
    return absl::DataLossError(absl::StrCat("GetObjects returned ", out.data.size(),
                                            " bytes at ", offset, " of object ", address.ToHex(),
                                            " of ", out.total_size, " bytes for ", length,
                                            " asked"));
  }
  return out;
}

absl::StatusOr<VolumeApiClient::ObjectUrls> VolumeApiClient::GetObjectUrls(
    std::string_view volume_id, const std::vector<Digest>& addresses) {
  api::GetObjectUrlsRequest request;
  request.set_volume_id(std::string(volume_id));
  for (const Digest& d : addresses) request.add_addresses(d.RawString());
  api::GetObjectUrlsResponse response;
  CAIRN_RETURN_IF_ERROR(
      Call("GetObjectUrls", Kind::kMetadata, Retry::kAlsoDeadline, [&](grpc::ClientContext& ctx) {
        return stub_->GetObjectUrls(&ctx, request, &response);
      }));
  if (response.urls_size() != request.addresses_size()) {
    return absl::DataLossError(absl::StrCat("GetObjectUrls returned ", response.urls_size(),
                                            " URLs for ", request.addresses_size(), " objects"));
  }
  ObjectUrls out;
  out.urls.assign(response.urls().begin(), response.urls().end());
  out.expires = absl::FromUnixSeconds(response.expires_unix_seconds());
  return out;
}

absl::StatusOr<std::vector<Digest>> VolumeApiClient::MissingObjects(
    std::string_view volume_id, const std::vector<Digest>& addresses) {
  std::vector<Digest> missing;
  if (addresses.empty()) return missing;
  api::MissingObjectsRequest request;
  request.set_volume_id(std::string(volume_id));
  for (const Digest& d : addresses) request.add_addresses(d.RawString());
  api::MissingObjectsResponse response;
  CAIRN_RETURN_IF_ERROR(
      Call("MissingObjects", Kind::kMetadata, Retry::kAlsoDeadline, [&](grpc::ClientContext& ctx) {
        return stub_->MissingObjects(&ctx, request, &response);
      }));
  for (const std::string& raw : response.missing()) {
    CAIRN_ASSIGN_OR_RETURN(Digest d, Digest::FromRaw(raw));
    missing.push_back(d);
  }
  return missing;
}

absl::Status VolumeApiClient::PutObjects(std::string_view volume_id,
                                         std::vector<std::pair<Digest, std::string>>& blobs) {
  if (blobs.empty()) return absl::OkStatus();
  // Blobs are content-addressed, so resending a stream is harmless.
  return Call("PutObjects", Kind::kStream, Retry::kAlsoDeadline, [&](grpc::ClientContext& ctx) {
    api::PutObjectsResponse response;
    auto writer = stub_->PutObjects(&ctx, &response);
    api::PutObjectsRequest request;
    request.set_volume_id(std::string(volume_id));
    bool sent = true;
    for (auto& [address, sealed] : blobs) {
      request.set_address(address.RawString());
      request.set_sealed(std::move(sealed));
      // Write serialises the message before it returns; the buffer comes
      // back for a possible resend.
      sent = writer->Write(request);
      sealed = std::move(*request.mutable_sealed());
      request.clear_volume_id();
      if (!sent) break;
    }
    if (sent) writer->WritesDone();
    grpc::Status status = writer->Finish();
    if (status.ok() && !sent) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "PutObjects stream closed by the server");
    }
    return status;
  });
}

absl::StatusOr<std::unique_ptr<VolumeApiClient::PutStream>> VolumeApiClient::OpenPutStream(
    std::string_view volume_id) {
  if (!WaitForServer(retry_for())) {
    return absl::UnavailableError(absl::StrCat("cannot reach the Cairn server at ", options_.server));
  }
  return std::make_unique<GrpcPutStream>(this, volume_id);
}

}  // namespace cairn
