#include "operator/volume_service.h"

#include <chrono>
#include <future>
#include <type_traits>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/blob_store_s3.h"
#include "core/async.h"
#include "core/file_ops.h"
#include "core/files.h"
#include "core/log.h"
#include "core/path.h"
#include "core/rpc_client.h"
#include "core/grpc_server.h"
#include "core/status.h"
#include "core/tree.h"

namespace cairn::operator_ {
namespace {

constexpr size_t kListBatch = 1000;
// ReadFile answers in chunk-sized blocks; the next block is fetched while
// the current one is being sent.
constexpr uint64_t kReadBlock = kChunkSize;

std::string S(std::string_view v) { return std::string(v); }

std::string Quoted(std::string_view path) { return absl::StrCat("'/", S(path), "'"); }

absl::StatusOr<Digest> AddressFromWire(const std::string& raw) {
  absl::StatusOr<Digest> d = Digest::FromRaw(raw);
  if (!d.ok()) return absl::InvalidArgumentError(absl::StrCat("bad object address: ",
                                                              std::string(d.status().message())));
  return d;
}

}  // namespace

api::FileEntry ToApiEntry(const std::string& path, const objects::Entry& e) {
  api::FileEntry out;
  out.set_path(path);
  out.set_type(e.type());
  out.set_size(e.type() == objects::DIRECTORY ? e.subtree_bytes() : e.size());
  out.set_mtime_ns(e.mtime_ns());
  out.set_mode(e.mode());
  out.set_symlink_target(e.symlink_target());
  if (e.has_uid()) out.set_uid(e.uid());
  if (e.has_gid()) out.set_gid(e.gid());
  return out;
}

VolumeServiceImpl::VolumeServiceImpl(Engine* engine, ServiceMetrics* metrics, std::string token)
    : engine_(engine), metrics_(metrics), token_(std::move(token)) {}

absl::Status VolumeServiceImpl::CheckAuth(grpc::ServerContext* ctx) const {
  return CheckBearerToken(*ctx, token_);
}

template <typename Fn>
grpc::Status VolumeServiceImpl::Handle(const char* method, grpc::ServerContext* ctx, Fn&& fn) {
  const auto start = std::chrono::steady_clock::now();
  absl::Status status = CheckAuth(ctx);
  if (status.ok()) status = fn();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  metrics_->requests.WithLabels({method, absl::StatusCodeToString(status.code())}).Increment();
  metrics_->request_duration.WithLabels({method}).Observe(seconds);
  if (!status.ok()) {
    switch (status.code()) {
      case absl::StatusCode::kInternal:
      case absl::StatusCode::kDataLoss:
      case absl::StatusCode::kUnknown:
        CAIRN_LOG_ERROR("%s: %s", method, status.ToString());
        break;
      default:
        CAIRN_LOG_DEBUG("%s: %s", method, status.ToString());
    }
  }
  return ToGrpc(status);
}

absl::StatusOr<VolumeRecord> VolumeServiceImpl::Resolve(const api::VolumeRef& ref) {
  if (!ref.id().empty()) return ResolveId(ref.id());
  CAIRN_RETURN_IF_ERROR(ValidateNamespace(ref.namespace_()));
  CAIRN_RETURN_IF_ERROR(ValidateVolumeName(ref.name()));
  return engine_->GetVolume(NamespaceOrDefault(ref.namespace_()), ref.name());
}

absl::StatusOr<VolumeRecord> VolumeServiceImpl::ResolveId(const std::string& volume_id) {
  if (volume_id.empty()) return absl::InvalidArgumentError("volume_id is required");
  return engine_->GetVolumeById(volume_id);
}

absl::StatusOr<std::shared_ptr<ObjectStore>> VolumeServiceImpl::Objects(
    const VolumeRecord& volume) {
  {
    absl::MutexLock lock(&mu_);
    auto it = objects_.find(volume.id);
    if (it != objects_.end()) return it->second;
  }
  CAIRN_ASSIGN_OR_RETURN(std::unique_ptr<ObjectStore> opened, engine_->OpenObjects(volume));
  std::shared_ptr<ObjectStore> shared = std::move(opened);
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = objects_.emplace(volume.id, shared);
  return it->second;
}

absl::StatusOr<api::Volume> VolumeServiceImpl::Describe(const VolumeRecord& volume) {
  CAIRN_ASSIGN_OR_RETURN(SnapshotRecord head, engine_->Head(volume.id));
  api::Volume out;
  out.set_id(volume.id);
  out.set_namespace_(volume.ns);
  out.set_name(volume.name);
  out.set_version(volume.version);
  out.set_created_at_ns(volume.created_at_ns);
  out.set_head_seq(head.seq);
  out.set_inodes(head.inodes);
  out.set_bytes(head.bytes);
  out.set_last_commit_ns(head.created_at_ns);
  out.set_lease_expires_ns(volume.lease_expires_ns);
  return out;
}

void VolumeServiceImpl::SetGauges(const VolumeRecord& volume, const SnapshotRecord& head) {
  metrics_->volume_inodes.WithLabels({volume.ns, volume.name}).Set(head.inodes);
  metrics_->volume_bytes.WithLabels({volume.ns, volume.name}).Set(head.bytes);
}

void VolumeServiceImpl::DropVolume(const VolumeRecord& volume) {
  metrics_->volume_inodes.Remove({volume.ns, volume.name});
  metrics_->volume_bytes.Remove({volume.ns, volume.name});
  metrics_->commit_duration.Remove({volume.ns, volume.name});
  absl::MutexLock lock(&mu_);
  objects_.erase(volume.id);
}

absl::Status VolumeServiceImpl::RefreshVolumeGauges() {
  CAIRN_ASSIGN_OR_RETURN(std::vector<VolumeRecord> volumes, engine_->ListVolumes(""));
  for (const VolumeRecord& v : volumes) {
    CAIRN_ASSIGN_OR_RETURN(SnapshotRecord head, engine_->Head(v.id));
    SetGauges(v, head);
  }
  return absl::OkStatus();
}

absl::StatusOr<SnapshotRecord> VolumeServiceImpl::CommitChanges(
    const VolumeRecord& volume, const objects::ChangeSet& changes,
    std::string_view idempotency_key) {
  const auto start = std::chrono::steady_clock::now();
  bool made_snapshot = false;
  absl::StatusOr<SnapshotRecord> snapshot =
      engine_->Commit(volume.id, changes, idempotency_key, &made_snapshot);
  if (!snapshot.ok()) return snapshot.status();
  // A repeat answers an older snapshot: not a commit, and not the head the
  // gauges should show.
  if (!made_snapshot) return snapshot;
  metrics_->commit_duration.WithLabels({volume.ns, volume.name}).Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  metrics_->commits.WithLabels({}).Increment();
  SetGauges(volume, *snapshot);
  return snapshot;
}

// ---- Volumes ---------------------------------------------------------------

namespace {

// A request's lease_seconds: 0 means the default.
absl::Duration LeaseOf(uint32_t seconds) {
  return seconds == 0 ? Engine::kDefaultLease : absl::Seconds(seconds);
}

Limits FromApi(const api::VolumeLimits& l) {
  return Limits{.max_inodes = l.max_inodes(),
                .max_dir_entries = l.max_dir_entries(),
                .max_file_size = l.max_file_size()};
}

}  // namespace

grpc::Status VolumeServiceImpl::CreateVolume(grpc::ServerContext* ctx,
                                             const api::CreateVolumeRequest* req,
                                             api::Volume* resp) {
  return Handle("CreateVolume", ctx, [&]() -> absl::Status {
    CAIRN_RETURN_IF_ERROR(ValidateNamespace(req->namespace_()));
    if (req->ephemeral()) {
      if (!req->name().empty() || req->create_if_missing()) {
        return absl::InvalidArgumentError(
            "an ephemeral volume is anonymous: give it no name and no create_if_missing");
      }
    } else {
      CAIRN_RETURN_IF_ERROR(ValidateVolumeName(req->name()));
      if (req->lease_seconds() != 0) {
        return absl::InvalidArgumentError("lease_seconds applies to ephemeral volumes only");
      }
    }
    const int version = req->version() == 0 ? 2 : static_cast<int>(req->version());
    if (version != 1 && version != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("unsupported volume version ", version, " (use 1 or 2)"));
    }
    const std::string ns = NamespaceOrDefault(req->namespace_());
    const Limits requested = FromApi(req->limits());
    absl::StatusOr<VolumeRecord> volume;
    if (req->ephemeral()) {
      CAIRN_ASSIGN_OR_RETURN(Limits limits, TightenLimits(version, requested));
      volume = engine_->CreateEphemeralVolume(ns, version, LeaseOf(req->lease_seconds()), limits);
    } else if (req->create_if_missing()) {
      volume = engine_->GetOrCreateVolume(ns, req->name(), version, requested);
    } else {
      CAIRN_ASSIGN_OR_RETURN(Limits limits, TightenLimits(version, requested));
      volume = engine_->CreateVolume(ns, req->name(), version, limits);
    }
    if (!volume.ok()) return volume.status();
    CAIRN_ASSIGN_OR_RETURN(*resp, Describe(*volume));
    SetGauges(*volume, SnapshotRecord{.inodes = resp->inodes(), .bytes = resp->bytes()});
    return absl::OkStatus();
  });
}

grpc::Status VolumeServiceImpl::CloneVolume(grpc::ServerContext* ctx,
                                            const api::CloneVolumeRequest* req,
                                            api::Volume* resp) {
  return Handle("CloneVolume", ctx, [&]() -> absl::Status {
    CAIRN_RETURN_IF_ERROR(ValidateNamespace(req->namespace_()));
    CAIRN_RETURN_IF_ERROR(ValidateVolumeName(req->name()));
    CAIRN_ASSIGN_OR_RETURN(VolumeRecord source, Resolve(req->source()));
    std::optional<uint64_t> seq;
    if (req->has_seq()) seq = req->seq();
    CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume,
                           engine_->CloneVolume(source.id, seq, req->namespace_(), req->name()));
    CAIRN_ASSIGN_OR_RETURN(*resp, Describe(volume));
    SetGauges(volume, SnapshotRecord{.inodes = resp->inodes(), .bytes = resp->bytes()});
    return absl::OkStatus();
  });
}

grpc::Status VolumeServiceImpl::RenewLease(grpc::ServerContext* ctx,
                                           const api::RenewLeaseRequest* req, api::Volume* resp) {
  return Handle("RenewLease", ctx, [&]() -> absl::Status {
    CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, Resolve(req->volume()));
    CAIRN_ASSIGN_OR_RETURN(volume, engine_->RenewLease(volume.id, LeaseOf(req->lease_seconds())));
    CAIRN_ASSIGN_OR_RETURN(*resp, Describe(volume));
    return absl::OkStatus();
  });
}

grpc::Status VolumeServiceImpl::GetVolume(grpc::ServerContext* ctx,
                                          const api::GetVolumeRequest* req, api::Volume* resp) {
  return Handle("GetVolume", ctx, [&]() -> absl::Status {
    CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, Resolve(req->volume()));
    CAIRN_ASSIGN_OR_RETURN(*resp, Describe(volume));
    return absl::OkStatus();
  });
}

grpc::Status VolumeServiceImpl::ListVolumes(grpc::ServerContext* ctx,
                                            const api::ListVolumesRequest* req,
                                            api::ListVolumesResponse* resp) {
  return Handle("ListVolumes", ctx, [&]() -> absl::Status {
    CAIRN_RETURN_IF_ERROR(ValidateNamespace(req->namespace_()));
    CAIRN_ASSIGN_OR_RETURN(std::vector<VolumeRecord> volumes,
                           engine_->ListVolumes(NamespaceOrDefault(req->namespace_())));
    for (const VolumeRecord& v : volumes) {
      absl::StatusOr<api::Volume> described = Describe(v);
      // A volume deleted between the list and its head read is skipped.
      if (absl::IsNotFound(described.status())) continue;
      if (!described.ok()) return described.status();
      *resp->add_volumes() = std::move(*described);
    }
    return absl::OkStatus();
  });
}

grpc::Status VolumeServiceImpl::DeleteVolume(grpc::ServerContext* ctx,
                                             const api::DeleteVolumeRequest* req,
                                             api::DeleteVolumeResponse* resp) {
  return Handle("DeleteVolume", ctx, [&]() -> absl::Status {
    absl::StatusOr<VolumeRecord> volume = Resolve(req->volume());
    if (absl::IsNotFound(volume.status()) && req->allow_missing()) {
      resp->set_deleted(false);
      return absl::OkStatus();
    }
    if (!volume.ok()) return volume.status();
    absl::Status deleted = engine_->DeleteVolumeById(volume->id);
    if (absl::IsNotFound(deleted) && req->allow_missing()) {
      resp->set_deleted(false);
      return absl::OkStatus();
    }
    CAIRN_RETURN_IF_ERROR(deleted);
    DropVolume(*volume);
    resp->set_deleted(true);
    return absl::OkStatus();
  });
}

grpc::Status VolumeServiceImpl::RenameVolume(grpc::ServerContext* ctx,
                                             const api::RenameVolumeRequest* req,
                                             api::Volume* resp) {
  return Handle("RenameVolume", ctx, [&]() -> absl::Status {
    CAIRN_RETURN_IF_ERROR(ValidateVolumeName(req->new_name()));
    CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, Resolve(req->volume()));
    CAIRN_ASSIGN_OR_RETURN(VolumeRecord renamed,
                           engine_->RenameVolumeById(volume.id, req->new_name()));
    DropVolume(volume);
    CAIRN_ASSIGN_OR_RETURN(*resp, Describe(renamed));
    SetGauges(renamed, SnapshotRecord{.inodes = resp->inodes(), .bytes = resp->bytes()});
    return absl::OkStatus();
  });
}

// ---- Files -----------------------------------------------------------------

absl::StatusOr<VolumeServiceImpl::HeadEntry> VolumeServiceImpl::LookupInHead(
    const api::VolumeRef& ref, const std::string& raw_path) {
  HeadEntry found;
  CAIRN_ASSIGN_OR_RETURN(found.volume, Resolve(ref));
  CAIRN_ASSIGN_OR_RETURN(found.path, NormalizePath(raw_path));
  CAIRN_ASSIGN_OR_RETURN(found.objects, Objects(found.volume));
  CAIRN_ASSIGN_OR_RETURN(found.head, engine_->Head(found.volume.id));
  absl::StatusOr<objects::Entry> entry = LookupPath(*found.objects, found.head.root, found.path);
  if (absl::IsNotFound(entry.status())) {
    return absl::NotFoundError(absl::StrCat("no such file or directory: ", Quoted(found.path),
                                            " in volume ", found.volume.name));
  }
  if (!entry.ok()) return entry.status();
  found.entry = *std::move(entry);
  return found;
}

grpc::Status VolumeServiceImpl::ListFiles(grpc::ServerContext* ctx,
                                          const api::ListFilesRequest* req,
                                          grpc::ServerWriter<api::ListFilesResponse>* writer) {
  return Handle("ListFiles", ctx, [&]() -> absl::Status {
    CAIRN_ASSIGN_OR_RETURN(HeadEntry found, LookupInHead(req->volume(), req->path()));
    const std::string& path = found.path;
    ObjectStore* objects = found.objects.get();
    const SnapshotRecord& head = found.head;
    const objects::Entry* at = &found.entry;

    api::ListFilesResponse batch;
    bool cancelled = false;
    auto flush = [&] {
      if (batch.entries_size() == 0) return;
      if (!writer->Write(batch)) cancelled = true;
      batch.Clear();
    };
    auto emit = [&](const std::string& p, const objects::Entry& e) {
      *batch.add_entries() = ToApiEntry(p, e);
      if (batch.entries_size() >= static_cast<int>(kListBatch)) flush();
    };
    if (at->type() != objects::DIRECTORY) {
      emit(path, *at);
    } else if (req->recursive()) {
      CAIRN_RETURN_IF_ERROR(WalkTree(*objects, head.root, path,
                                     [&](const std::string& p, const objects::Entry& e) {
                                       if (cancelled) return false;
                                       emit(p, e);
                                       return true;
                                     }));
    } else {
      CAIRN_ASSIGN_OR_RETURN(std::shared_ptr<const objects::Directory> dir,
                             ReadDirectory(*objects, head.root, path));
      for (const objects::Entry& e : dir->entries()) {
        if (cancelled) break;
        emit(JoinPath(path, e.name()), e);
      }
    }
    flush();
    if (cancelled) return absl::CancelledError("client went away");
    return absl::OkStatus();
  });
}

grpc::Status VolumeServiceImpl::Stat(grpc::ServerContext* ctx, const api::StatRequest* req,
                                     api::FileEntry* resp) {
  return Handle("Stat", ctx, [&]() -> absl::Status {
    CAIRN_ASSIGN_OR_RETURN(HeadEntry found, LookupInHead(req->volume(), req->path()));
    *resp = ToApiEntry(found.path, found.entry);
    return absl::OkStatus();
  });
}

grpc::Status VolumeServiceImpl::ReadFile(grpc::ServerContext* ctx,
                                         const api::ReadFileRequest* req,
                                         grpc::ServerWriter<api::ReadFileResponse>* writer) {
  return Handle("ReadFile", ctx, [&]() -> absl::Status {
    CAIRN_ASSIGN_OR_RETURN(HeadEntry found, LookupInHead(req->volume(), req->path()));
    const std::string& path = found.path;
    std::shared_ptr<ObjectStore> objects = found.objects;
    const objects::Entry* file = &found.entry;
    if (file->type() == objects::DIRECTORY) {
      return WithErrno(absl::FailedPreconditionError(
                           absl::StrCat(Quoted(path), " is a directory, not a file")),
                       EISDIR);
    }
    if (file->type() != objects::FILE) {
      return absl::FailedPreconditionError(
          absl::StrCat(Quoted(path), " is a symlink to '", file->symlink_target(), "'"));
    }
    const uint64_t size = file->size();
    uint64_t offset = std::min<uint64_t>(req->offset(), size);
    const uint64_t end =
        req->length() == 0 ? size : std::min<uint64_t>(size, offset + req->length());
    auto fetch = [objects, entry = *file](uint64_t at, uint64_t n) {
      return ReadFileRange(*objects, entry, at, n);
    };
    // Aligned blocks, one fetched ahead of the one being written.
    auto block_end = [&](uint64_t at) {
      return std::min<uint64_t>(end, (at / kReadBlock + 1) * kReadBlock);
    };
    std::future<absl::StatusOr<std::string>> next;
    if (offset < end) next = RunAsync(fetch, offset, block_end(offset) - offset);
    while (offset < end) {
      absl::StatusOr<std::string> data = next.get();
      if (!data.ok()) return data.status();
      const uint64_t following = offset + data->size();
      if (data->empty()) break;
      if (following < end) {
        next = RunAsync(fetch, following, block_end(following) - following);
      }
      api::ReadFileResponse response;
      response.set_offset(offset);
      response.set_data(std::move(*data));
      metrics_->bytes_out.WithLabels({}).Increment(response.data().size());
      if (!writer->Write(response)) {
        if (next.valid()) next.wait();
        return absl::CancelledError("client went away");
      }
      offset = following;
    }
    return absl::OkStatus();
  });
}

grpc::Status VolumeServiceImpl::RemoveFile(grpc::ServerContext* ctx,
                                           const api::RemoveFileRequest* req,
                                           api::CommitResponse* resp) {
  return Handle("RemoveFile", ctx, [&]() -> absl::Status {
    CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, Resolve(req->volume()));
    CAIRN_ASSIGN_OR_RETURN(std::shared_ptr<ObjectStore> objects, Objects(volume));
    CAIRN_ASSIGN_OR_RETURN(SnapshotRecord head, engine_->Head(volume.id));
    CAIRN_ASSIGN_OR_RETURN(
        objects::ChangeSet changes,
        RemoveChanges(*objects, head, volume.name, req->path(), req->recursive()));
    CAIRN_ASSIGN_OR_RETURN(SnapshotRecord snapshot, CommitChanges(volume, changes));
    *resp->mutable_snapshot() = ToApi(snapshot);
    return absl::OkStatus();
  });
}

grpc::Status VolumeServiceImpl::CopyFiles(grpc::ServerContext* ctx,
                                          const api::CopyFilesRequest* req,
                                          api::CommitResponse* resp) {
  return Handle("CopyFiles", ctx, [&]() -> absl::Status {
    CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, Resolve(req->volume()));
    CAIRN_ASSIGN_OR_RETURN(std::shared_ptr<ObjectStore> objects, Objects(volume));
    CAIRN_ASSIGN_OR_RETURN(SnapshotRecord head, engine_->Head(volume.id));
    const std::vector<std::string> sources(req->sources().begin(), req->sources().end());
    CAIRN_ASSIGN_OR_RETURN(objects::ChangeSet changes,
                           CopyChanges(*objects, head, volume.name, sources, req->destination(),
                                       req->recursive()));
    CAIRN_ASSIGN_OR_RETURN(SnapshotRecord snapshot, CommitChanges(volume, changes));
    *resp->mutable_snapshot() = ToApi(snapshot);
    return absl::OkStatus();
  });
}

// ---- Mounters and bulk clients ---------------------------------------------

grpc::Status VolumeServiceImpl::OpenVolume(grpc::ServerContext* ctx,
                                           const api::OpenVolumeRequest* req,
                                           api::OpenVolumeResponse* resp) {
  return Handle("OpenVolume", ctx, [&]() -> absl::Status {
    CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, Resolve(req->volume()));
    CAIRN_ASSIGN_OR_RETURN(DataKey key, engine_->DataKeyFor(volume));
    CAIRN_ASSIGN_OR_RETURN(SnapshotRecord head, engine_->Head(volume.id));
    CAIRN_ASSIGN_OR_RETURN(*resp->mutable_volume(), Describe(volume));
    resp->set_data_key(std::string(key.bytes()));
    *resp->mutable_head() = ToApi(head);
    resp->set_max_inodes(volume.limits.max_inodes);
    resp->set_max_dir_entries(volume.limits.max_dir_entries);
    resp->set_max_file_size(volume.limits.max_file_size);
    resp->set_hard_links(volume.limits.hard_links);
    return absl::OkStatus();
  });
}

grpc::Status VolumeServiceImpl::GetHead(grpc::ServerContext* ctx, const api::GetHeadRequest* req,
                                        api::Snapshot* resp) {
  return Handle("GetHead", ctx, [&]() -> absl::Status {
    CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, Resolve(req->volume()));
    CAIRN_ASSIGN_OR_RETURN(SnapshotRecord head, engine_->Head(volume.id));
    *resp = ToApi(head);
    return absl::OkStatus();
  });
}

grpc::Status VolumeServiceImpl::GetObjects(grpc::ServerContext* ctx,
                                           const api::GetObjectsRequest* req,
                                           grpc::ServerWriter<api::GetObjectsResponse>* writer) {
  return Handle("GetObjects", ctx, [&]() -> absl::Status {
    CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, ResolveId(req->volume_id()));
    const bool ranged = req->ranges_size() > 0;
    if (ranged && req->ranges_size() != req->addresses_size()) {
      return absl::InvalidArgumentError(absl::StrCat("GetObjects has ", req->ranges_size(),
                                                     " ranges for ", req->addresses_size(),
                                                     " addresses; give one per address or none"));
    }
    for (int i = 0; i < req->addresses_size(); ++i) {
      const std::string& raw = req->addresses(i);
      CAIRN_ASSIGN_OR_RETURN(Digest address, AddressFromWire(raw));
      api::GetObjectsResponse response;
      response.set_address(raw);
      if (ranged) {
        const api::ByteRange& r = req->ranges(i);
        CAIRN_ASSIGN_OR_RETURN(BlobRange range, engine_->GetObjectRange(volume.id, address,
                                                                        r.offset(), r.length()));
        response.set_sealed(std::move(range.data));
        response.set_offset(r.offset());
        response.set_total_size(range.total_size);
      } else {
        CAIRN_ASSIGN_OR_RETURN(std::string sealed, engine_->GetObject(volume.id, address));
        response.set_sealed(std::move(sealed));
      }
      metrics_->bytes_out.WithLabels({}).Increment(response.sealed().size());
      if (!writer->Write(response)) return absl::CancelledError("client went away");
    }
    return absl::OkStatus();
  });
}

grpc::Status VolumeServiceImpl::GetObjectUrls(grpc::ServerContext* ctx,
                                              const api::GetObjectUrlsRequest* req,
                                              api::GetObjectUrlsResponse* resp) {
  return Handle("GetObjectUrls", ctx, [&]() -> absl::Status {
    auto* s3 = dynamic_cast<S3BlobStore*>(engine_->blobs());
    if (s3 == nullptr) {
      return absl::UnimplementedError(
          "this control plane keeps its blobs on local disk: read them with GetObjects");
    }
    CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, ResolveId(req->volume_id()));
    // Short: a URL is a bearer capability for one object's ciphertext.
    constexpr absl::Duration kUrlLifetime = absl::Minutes(5);
    const absl::Time expires = absl::Now() + kUrlLifetime;
    for (const std::string& raw : req->addresses()) {
      CAIRN_ASSIGN_OR_RETURN(Digest address, AddressFromWire(raw));
      CAIRN_ASSIGN_OR_RETURN(std::string url, s3->PresignGet(volume.id, address, kUrlLifetime));
      resp->add_urls(std::move(url));
    }
    resp->set_expires_unix_seconds(absl::ToUnixSeconds(expires));
    return absl::OkStatus();
  });
}

grpc::Status VolumeServiceImpl::MissingObjects(grpc::ServerContext* ctx,
                                               const api::MissingObjectsRequest* req,
                                               api::MissingObjectsResponse* resp) {
  return Handle("MissingObjects", ctx, [&]() -> absl::Status {
    CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, ResolveId(req->volume_id()));
    std::vector<Digest> addresses;
    addresses.reserve(req->addresses_size());
    for (const std::string& raw : req->addresses()) {
      CAIRN_ASSIGN_OR_RETURN(Digest address, AddressFromWire(raw));
      addresses.push_back(address);
    }
    CAIRN_ASSIGN_OR_RETURN(std::vector<Digest> missing,
                           engine_->MissingObjects(volume.id, addresses));
    for (const Digest& d : missing) resp->add_missing(d.RawString());
    return absl::OkStatus();
  });
}

grpc::Status VolumeServiceImpl::PutObjects(grpc::ServerContext* ctx,
                                           grpc::ServerReader<api::PutObjectsRequest>* reader,
                                           api::PutObjectsResponse* resp) {
  return Handle("PutObjects", ctx, [&]() -> absl::Status {
    // The response is the durability point: every blob of the stream is
    // durable before it is sent (Engine::Upload).
    api::PutObjectsRequest request;
    std::unique_ptr<Engine::Upload> upload;
    while (reader->Read(&request)) {
      if (upload == nullptr) {
        if (request.volume_id().empty()) {
          return absl::InvalidArgumentError("PutObjects: the first message must set volume_id");
        }
        CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, ResolveId(request.volume_id()));
        CAIRN_ASSIGN_OR_RETURN(upload, engine_->NewUpload(volume.id));
      }
      CAIRN_ASSIGN_OR_RETURN(Digest address, AddressFromWire(request.address()));
      CAIRN_RETURN_IF_ERROR(upload->Add(address, request.sealed()));
      metrics_->bytes_in.WithLabels({}).Increment(request.sealed().size());
    }
    uint64_t stored = 0;
    if (upload != nullptr) {
      CAIRN_ASSIGN_OR_RETURN(stored, upload->Finish());
    }
    resp->set_stored(stored);
    return absl::OkStatus();
  });
}

grpc::Status VolumeServiceImpl::Commit(grpc::ServerContext* ctx, const api::CommitRequest* req,
                                       api::CommitResponse* resp) {
  return Handle("Commit", ctx, [&]() -> absl::Status {
    CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, ResolveId(req->volume_id()));
    CAIRN_ASSIGN_OR_RETURN(SnapshotRecord snapshot,
                           CommitChanges(volume, req->changes(), req->idempotency_key()));
    *resp->mutable_snapshot() = ToApi(snapshot);
    return absl::OkStatus();
  });
}

}  // namespace cairn::operator_
