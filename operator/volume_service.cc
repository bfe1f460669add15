#include "operator/volume_service.h"


#include <chrono>
#include <future>
#include <type_traits>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
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

std::string_view BaseName(std::string_view normalized) {
  return SplitParent(normalized).second;
}

}  // namespace

api::Snapshot ToApi(const SnapshotRecord& s) {
  api::Snapshot out;
  out.set_volume_id(s.volume_id);
  out.set_seq(s.seq);
  out.set_root(s.root.RawString());
  out.set_parent_seq(s.parent_seq);
  out.set_created_at_ns(s.created_at_ns);
  out.set_inodes(s.inodes);
  out.set_bytes(s.bytes);
  return out;
}

api::FileEntry ToApiEntry(const std::string& path, const objects::Entry& e) {
  api::FileEntry out;
  out.set_path(path);
  out.set_type(e.type());
  out.set_size(e.type() == objects::DIRECTORY ? e.subtree_bytes() : e.size());
  out.set_mtime_ns(e.mtime_ns());
  out.set_mode(e.mode());
  out.set_symlink_target(e.symlink_target());
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
  return out;
}

void VolumeServiceImpl::SetGauges(const VolumeRecord& volume, const SnapshotRecord& head) {
  metrics_->volume_inodes.WithLabels({volume.ns, volume.name}).Set(head.inodes);
  metrics_->volume_bytes.WithLabels({volume.ns, volume.name}).Set(head.bytes);
}

void VolumeServiceImpl::DropVolume(const VolumeRecord& volume) {
  metrics_->volume_inodes.Remove({volume.ns, volume.name});
  metrics_->volume_bytes.Remove({volume.ns, volume.name});
  absl::MutexLock lock(&mu_);
  objects_.erase(volume.id);
}

absl::Status VolumeServiceImpl::RefreshVolumeGauges() {
  CAIRN_ASSIGN_OR_RETURN(std::vector<VolumeRecord> volumes, engine_->meta()->ListVolumes(""));
  for (const VolumeRecord& v : volumes) {
    CAIRN_ASSIGN_OR_RETURN(SnapshotRecord head, engine_->Head(v.id));
    SetGauges(v, head);
  }
  return absl::OkStatus();
}

absl::StatusOr<SnapshotRecord> VolumeServiceImpl::CommitChanges(
    const VolumeRecord& volume, const objects::ChangeSet& changes) {
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<SnapshotRecord> snapshot = engine_->Commit(volume.id, changes);
  if (!snapshot.ok()) return snapshot.status();
  metrics_->commit_duration.WithLabels({}).Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  metrics_->commits.WithLabels({}).Increment();
  SetGauges(volume, *snapshot);
  return snapshot;
}

// ---- Volumes ---------------------------------------------------------------

namespace {

// The version's limits, tightened by the request. Raising a limit past what
// the version allows would break C7's promise, so it is refused.
absl::StatusOr<Limits> TightenLimits(int version, const api::VolumeLimits& requested) {
  Limits limits = DefaultLimits(version);
  auto tighten = [&](auto& limit, uint64_t value, const char* what) -> absl::Status {
    if (value == 0) return absl::OkStatus();
    if (limit != 0 && value > limit) {
      return absl::InvalidArgumentError(absl::StrCat(what, " ", value, " is above version ",
                                                     version, "'s maximum of ", limit));
    }
    limit = static_cast<std::remove_reference_t<decltype(limit)>>(value);
    return absl::OkStatus();
  };
  CAIRN_RETURN_IF_ERROR(tighten(limits.max_inodes, requested.max_inodes(), "max_inodes"));
  CAIRN_RETURN_IF_ERROR(
      tighten(limits.max_dir_entries, requested.max_dir_entries(), "max_dir_entries"));
  CAIRN_RETURN_IF_ERROR(tighten(limits.max_file_size, requested.max_file_size(), "max_file_size"));
  return limits;
}

}  // namespace

grpc::Status VolumeServiceImpl::CreateVolume(grpc::ServerContext* ctx,
                                             const api::CreateVolumeRequest* req,
                                             api::Volume* resp) {
  return Handle("CreateVolume", ctx, [&]() -> absl::Status {
    CAIRN_RETURN_IF_ERROR(ValidateNamespace(req->namespace_()));
    CAIRN_RETURN_IF_ERROR(ValidateVolumeName(req->name()));
    const int version = req->version() == 0 ? 2 : static_cast<int>(req->version());
    if (version != 1 && version != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("unsupported volume version ", version, " (use 1 or 2)"));
    }
    const std::string ns = NamespaceOrDefault(req->namespace_());
    CAIRN_ASSIGN_OR_RETURN(Limits limits, TightenLimits(version, req->limits()));
    absl::StatusOr<VolumeRecord> volume = engine_->CreateVolume(ns, req->name(), version, limits);
    if (req->create_if_missing() && absl::IsAlreadyExists(volume.status())) {
      volume = engine_->GetOrCreateVolume(ns, req->name(), version);
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
    if (offset < end) next = std::async(std::launch::async, fetch, offset, block_end(offset) - offset);
    while (offset < end) {
      absl::StatusOr<std::string> data = next.get();
      if (!data.ok()) return data.status();
      const uint64_t following = offset + data->size();
      if (data->empty()) break;
      if (following < end) {
        next = std::async(std::launch::async, fetch, following, block_end(following) - following);
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
    CAIRN_ASSIGN_OR_RETURN(std::string path, NormalizePath(req->path()));
    if (path.empty()) {
      return absl::InvalidArgumentError(
          "refusing to remove the volume root (delete the volume instead)");
    }
    CAIRN_ASSIGN_OR_RETURN(std::shared_ptr<ObjectStore> objects, Objects(volume));
    CAIRN_ASSIGN_OR_RETURN(SnapshotRecord head, engine_->Head(volume.id));
    // Checked here for a clear message; the commit re-checks on the head it
    // lands on (must_exist, recursive).
    absl::StatusOr<objects::Entry> at = LookupPath(*objects, head.root, path);
    if (absl::IsNotFound(at.status())) {
      return absl::NotFoundError(
          absl::StrCat("no such file or directory: ", Quoted(path), " in volume ", volume.name));
    }
    if (!at.ok()) return at.status();
    if (at->type() == objects::DIRECTORY && !req->recursive()) {
      return WithErrno(absl::FailedPreconditionError(absl::StrCat(
                           Quoted(path), " is a directory; remove it recursively (-r)")),
                       EISDIR);
    }
    objects::ChangeSet changes;
    objects::Change* c = changes.add_changes();
    c->set_kind(objects::Change::REMOVE);
    c->set_path(path);
    c->set_must_exist(true);
    c->set_recursive(req->recursive());
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
    if (req->sources().empty()) return absl::InvalidArgumentError("cp: no source given");
    CAIRN_ASSIGN_OR_RETURN(std::string dst, NormalizePath(req->destination()));
    CAIRN_ASSIGN_OR_RETURN(std::shared_ptr<ObjectStore> objects, Objects(volume));
    CAIRN_ASSIGN_OR_RETURN(SnapshotRecord head, engine_->Head(volume.id));

    bool dst_is_dir = false;
    absl::StatusOr<objects::Entry> dst_entry = LookupPath(*objects, head.root, dst);
    if (dst_entry.ok()) {
      dst_is_dir = dst_entry->type() == objects::DIRECTORY;
    } else if (!absl::IsNotFound(dst_entry.status())) {
      return dst_entry.status();
    }
    // "cp a dir/" with dir missing: the trailing slash says "into a directory".
    const bool into_dir = dst_is_dir || absl::EndsWith(req->destination(), "/");
    if (into_dir && dst_entry.ok() && !dst_is_dir) {
      // Copying "into" an existing file would replace it with a directory.
      return WithErrno(absl::FailedPreconditionError(
                           absl::StrCat("cp: target ", Quoted(dst), " is not a directory")),
                       ENOTDIR);
    }
    if (req->sources_size() > 1 && !dst_is_dir) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cp: target ", Quoted(dst), " is not an existing directory (copying several sources)"));
    }

    objects::ChangeSet changes;
    for (const std::string& raw : req->sources()) {
      CAIRN_ASSIGN_OR_RETURN(std::string src, NormalizePath(raw));
      if (src.empty()) return absl::InvalidArgumentError("cp: cannot copy the volume root");
      absl::StatusOr<objects::Entry> entry = LookupPath(*objects, head.root, src);
      if (absl::IsNotFound(entry.status())) {
        return absl::NotFoundError(absl::StrCat("cp: no such file or directory: ", Quoted(src),
                                                " in volume ", volume.name));
      }
      if (!entry.ok()) return entry.status();
      const bool is_dir = entry->type() == objects::DIRECTORY;
      if (is_dir && !req->recursive()) {
        return WithErrno(absl::FailedPreconditionError(absl::StrCat(
                             "cp: ", Quoted(src), " is a directory; copy it recursively (-r)")),
                         EISDIR);
      }
      const std::string target = into_dir ? JoinPath(dst, BaseName(src)) : dst;
      if (target == src) {
        return absl::InvalidArgumentError(
            absl::StrCat("cp: ", Quoted(src), " and ", Quoted(target), " are the same"));
      }
      if (is_dir && absl::StartsWith(target, absl::StrCat(src, "/"))) {
        return absl::InvalidArgumentError(absl::StrCat("cp: cannot copy directory ", Quoted(src),
                                                       " into itself (", Quoted(target), ")"));
      }
      objects::Change* c = changes.add_changes();
      c->set_kind(objects::Change::PUT);
      c->set_path(target);
      objects::Entry* copied = c->mutable_entry();
      *copied = *entry;
      copied->clear_name();
      // A copy is a new inode, not another link to the source.
      copied->set_link_id(0);
      // A copied file never replaces a directory tree; a copied directory
      // replaces what was at the target, as a graft.
      c->set_keep_directories(!is_dir);
    }
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
    for (const std::string& raw : req->addresses()) {
      CAIRN_ASSIGN_OR_RETURN(Digest address, AddressFromWire(raw));
      absl::StatusOr<std::string> sealed = engine_->blobs()->Get(volume.id, address);
      if (absl::IsNotFound(sealed.status())) {
        return absl::NotFoundError(
            absl::StrCat("object ", address.ToHex(), " not found in volume ", volume.id));
      }
      if (!sealed.ok()) return sealed.status();
      api::GetObjectsResponse response;
      response.set_address(raw);
      response.set_sealed(std::move(*sealed));
      metrics_->bytes_out.WithLabels({}).Increment(response.sealed().size());
      if (!writer->Write(response)) return absl::CancelledError("client went away");
    }
    return absl::OkStatus();
  });
}

grpc::Status VolumeServiceImpl::MissingObjects(grpc::ServerContext* ctx,
                                               const api::MissingObjectsRequest* req,
                                               api::MissingObjectsResponse* resp) {
  return Handle("MissingObjects", ctx, [&]() -> absl::Status {
    CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, ResolveId(req->volume_id()));
    for (const std::string& raw : req->addresses()) {
      CAIRN_ASSIGN_OR_RETURN(Digest address, AddressFromWire(raw));
      // A present blob is touched: the caller skips uploading it and is
      // about to reference it, so GC's grace period must restart now.
      absl::Status touched = engine_->blobs()->Touch(volume.id, address);
      if (absl::IsNotFound(touched)) {
        resp->add_missing(raw);
      } else if (!touched.ok()) {
        return touched;
      }
    }
    return absl::OkStatus();
  });
}

grpc::Status VolumeServiceImpl::PutObjects(grpc::ServerContext* ctx,
                                           grpc::ServerReader<api::PutObjectsRequest>* reader,
                                           api::PutObjectsResponse* resp) {
  return Handle("PutObjects", ctx, [&]() -> absl::Status {
    // The response is the durability point: every blob of the stream is
    // durable before it is sent. Each blob is whole and durable once its
    // name appears; the directory fsyncs are shared by up to kPutBatchBlobs
    // blobs (BlobStore::Batch) instead of paid per blob.
    constexpr uint64_t kPutBatchBlobs = 64;
    api::PutObjectsRequest request;
    std::string volume_id;
    uint64_t stored = 0;
    std::unique_ptr<BlobStore::Batch> batch;
    while (reader->Read(&request)) {
      if (volume_id.empty()) {
        if (request.volume_id().empty()) {
          return absl::InvalidArgumentError("PutObjects: the first message must set volume_id");
        }
        CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, ResolveId(request.volume_id()));
        volume_id = volume.id;
      }
      CAIRN_ASSIGN_OR_RETURN(Digest address, AddressFromWire(request.address()));
      if (request.sealed().size() < kSealOverhead) {
        return absl::InvalidArgumentError(
            absl::StrCat("object ", address.ToHex(), " is too short to be sealed"));
      }
      if (batch == nullptr) batch = engine_->blobs()->NewBatch(volume_id);
      CAIRN_RETURN_IF_ERROR(batch->Add(address, request.sealed()));
      metrics_->bytes_in.WithLabels({}).Increment(request.sealed().size());
      ++stored;
      if (stored % kPutBatchBlobs == 0) {
        CAIRN_RETURN_IF_ERROR(batch->Finish());
        batch.reset();
      }
    }
    if (batch != nullptr) CAIRN_RETURN_IF_ERROR(batch->Finish());
    resp->set_stored(stored);
    return absl::OkStatus();
  });
}

grpc::Status VolumeServiceImpl::Commit(grpc::ServerContext* ctx, const api::CommitRequest* req,
                                       api::CommitResponse* resp) {
  return Handle("Commit", ctx, [&]() -> absl::Status {
    CAIRN_ASSIGN_OR_RETURN(VolumeRecord volume, ResolveId(req->volume_id()));
    CAIRN_ASSIGN_OR_RETURN(SnapshotRecord snapshot, CommitChanges(volume, req->changes()));
    *resp->mutable_snapshot() = ToApi(snapshot);
    return absl::OkStatus();
  });
}

}  // namespace cairn::operator_
